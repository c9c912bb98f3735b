"""nginxharness — Debian's nginx with a generated config on a free loopback port, for the nginx tests.

Why: resty.scout runs inside real nginx workers (balancer_by_lua, timers, shared dicts, several worker
processes); only a real nginx shows what a user gets. Test::Nginx's block style is the model: a test gives the
http-level config and the server's locations, sends requests, compares bodies, and the error log must hold no
[error], [crit], [alert] or [emerg] line except the ones the test expects (check_log(allow=...)).

    ng = Nginx(http='lua_shared_dict scout 1m;', server='location = /t { return 200 "ok"; }', workers=2)
    ng.start()
    status, body, headers = ng.get("/t")
    ng.stop()
    ng.check_log(allow=[r"connect\\(\\) failed"])

Backend(name) is a tiny HTTP server on a loopback port that answers its name and counts hits. Everything
started here is stopped at exit. stdlib only; /usr/bin/python3.
"""

import atexit
import http.client
import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from scoutharness import free_port  # noqa: E402,F401  (re-exported: below the ephemeral range)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
NGINX = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
MODULES = os.environ.get("NGINX_MODULES", "/usr/lib/nginx/modules")
LUA_CPATH = os.environ.get("LUA_CPATH_DIR", "/usr/lib/x86_64-linux-gnu/lua/5.1")
BAD_LEVELS = re.compile(r"\[(error|crit|alert|emerg)\]")

_live = set()


def _stop_all():
    for x in list(_live):
        try:
            x.stop()
        except Exception:
            pass


atexit.register(_stop_all)




def wait_until(fn, timeout=20.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError("timed out after %.0fs waiting for %s (last: %r)" % (timeout, what, last))


CONF = """\
load_module {modules}/ndk_http_module.so;
load_module {modules}/ngx_http_lua_module.so;
worker_processes {workers};
daemon on;
error_log {dir}/error.log {log_level};
pid {dir}/nginx.pid;
{main}
events {{ worker_connections 2048; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    lua_package_path "{root}/lua/?.lua;{root}/lua/?/init.lua;/usr/share/lua/5.1/?.lua;;";
    lua_package_cpath "{cpath}/?.so;;";
{http}
    server {{
        listen 127.0.0.1:{port} reuseport;
{server}
    }}
}}
"""


class Nginx:
    """One nginx master and its workers, in a temp prefix."""

    def __init__(self, http="", server="", workers=1, main="", log_level="info"):
        self.dir = tempfile.mkdtemp(prefix="scout-nginx-")
        os.chmod(self.dir, 0o755)             # workers run as nobody when the tests run as root
        os.makedirs(os.path.join(self.dir, "tmp"))
        self.port = free_port()
        self.conf_file = os.path.join(self.dir, "nginx.conf")
        self.log_file = os.path.join(self.dir, "error.log")
        self.pid_file = os.path.join(self.dir, "nginx.pid")
        self.params = dict(modules=MODULES, workers=workers, dir=self.dir, log_level=log_level, main=main,
                           root=ROOT, cpath=LUA_CPATH, http=http, server=server, port=self.port)
        self.pid = None

    def config(self):
        return CONF.format(**self.params)

    def start(self):
        with open(self.conf_file, "w") as f:
            f.write(self.config())
        _live.add(self)
        p = subprocess.run([NGINX, "-p", self.dir + "/", "-c", self.conf_file, "-e", self.log_file],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        if p.returncode != 0:
            raise AssertionError("nginx failed to start:\n%s\n%s" % (p.stdout, self.log()[-3000:]))
        self.pid = int(wait_until(lambda: open(self.pid_file).read().strip(), 10, what="nginx pid file"))
        wait_until(lambda: self._connects(), 10, what="nginx listening")
        return self

    def _connects(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def workers(self):
        """pids of the current worker processes (children of the master)."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.pid)], stdout=subprocess.PIPE,
                             universal_newlines=True).stdout
        return sorted(int(x) for x in out.split())

    def stop(self, timeout=10):
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGQUIT)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        else:
            os.kill(pid, signal.SIGKILL)
        _live.discard(self)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- requests --------------------------------------------------------------
    def request(self, path, headers=None, method="GET", timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read().decode("utf-8", "replace"), dict(r.getheaders())
        finally:
            c.close()

    def get(self, path, headers=None):
        return self.request(path, headers)

    def body(self, path, headers=None, status=200):
        st, body, _ = self.request(path, headers)
        if st != status:
            raise AssertionError("GET %s: status %d, wanted %d: %r" % (path, st, status, body[:300]))
        return body

    def per_worker(self, path, want=None, timeout=20.0):
        """Hit path (which must answer "<worker pid> <value>") on new connections until every current
        worker answered, and want(value) holds for each (when given). Returns {pid: value}."""
        # the master forks its workers after it answers: on a loaded machine the first request can come before
        # the last fork, so wait for all of them to exist before asking each
        n = self.params["workers"]
        wait_until(lambda: len(self.workers()) >= n, timeout, 0.01, "nginx's %d workers to exist" % n)
        pids = set(self.workers())
        seen = {}

        def poll():
            for _ in range(20):
                _, body, _ = self.request(path)
                pid, _, value = body.strip().partition(" ")
                pid = int(pid)
                if want is None or want(value):
                    seen[pid] = value
                else:
                    seen.pop(pid, None)
            return pids <= set(seen)
        wait_until(poll, timeout, 0.01, "every worker (%s) at %s to answer%s" % (
            sorted(pids), path, "" if want is None else " as wanted"))
        return {p: seen[p] for p in pids}

    # -- the log -----------------------------------------------------------------
    def log(self):
        try:
            with open(self.log_file, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def bad_lines(self, allow=()):
        pats = [re.compile(a) for a in allow]
        out = []
        for line in self.log().splitlines():
            if BAD_LEVELS.search(line) and not any(p.search(line) for p in pats):
                out.append(line)
        return out

    def check_log(self, allow=()):
        """No [error]/[crit]/[alert]/[emerg] line but the allowed patterns (regexes)."""
        bad = self.bad_lines(allow)
        if bad:
            raise AssertionError("nginx error log has unexpected lines:\n" + "\n".join(bad[:20]))

    def count_log(self, pattern):
        p = re.compile(pattern)
        return sum(1 for line in self.log().splitlines() if p.search(line))


class Backend:
    """An HTTP server on a free loopback port: every request gets "<name>\\n"; hits are counted."""

    def __init__(self, name, port=None):
        self.name = name
        self.port = port or free_port()
        self.hits = 0
        self.lock = threading.Lock()
        self.server = None

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with owner.lock:
                    owner.hits += 1
                body = (owner.name + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

            def handle_error(self, request, client_address):
                # nginx closing an upstream connection mid-answer (a client went away) is not news
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        _live.add(self)
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        _live.discard(self)


def shm_generation(path):
    """The generation in a snapshot file's header (docs/shm.md: u64 at offset 16), 0 if there is none."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except FileNotFoundError:
        return 0
    if len(head) < 24 or head[:8] != b"SCOUTSHM":
        return 0
    return int.from_bytes(head[16:24], "little")

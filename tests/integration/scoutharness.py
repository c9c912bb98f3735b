"""scoutharness — run build/scout from outside, the way a user does, for integration tests.

Why: every integration test starts the real agent binary with a real policy file, talks to its HTTP API and
reads its log; nothing is mocked. The binary is $SCOUT_BIN (default build/scout), so the same tests run
against the ASan+UBSan build. A test never leaks an agent: stop() is called on test teardown and at exit.
"""

import atexit
import http.client
import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SCOUT_BIN = os.environ.get("SCOUT_BIN", os.path.join(ROOT, "build", "scout"))
# SCOUT_WRAP: a command the agent runs under ("valgrind --error-exitcode=99 ...", tests/valgrind.sh); its
# waits are then SCOUT_TIMEOUT_SCALE times longer (valgrind runs the agent 20-50x slower).
SCOUT_WRAP = shlex.split(os.environ.get("SCOUT_WRAP", ""))
TIMEOUT_SCALE = float(os.environ.get("SCOUT_TIMEOUT_SCALE", "1"))

_live = set()
_dirs = []          # removed at exit: tests read logs after stopping an agent
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
VALGRIND_ERRORS = re.compile(r"^==\d+== ERROR SUMMARY: [1-9]", re.M)


def _stop_all():
    import shutil
    for s in list(_live):
        try:
            s.stop()
        except AssertionError:
            pass            # reported by the test that owned it
    if not os.environ.get("SCOUT_TEST_KEEP"):
        for d in _dirs:
            shutil.rmtree(d, ignore_errors=True)


atexit.register(_stop_all)


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def free_port():
    """A loopback port free now, for a listener started later. Taken below the kernel's ephemeral range: a port the
    kernel handed out for bind(0) and we let go can be handed again to any outgoing connection (a ZooKeeper client, a
    kazoo publisher) before the agent binds it ("bind: Address already in use", seen in a full run)."""
    low = _ephemeral_low()
    if low is not None and low > 12000:
        rng = random.SystemRandom()
        for _ in range(200):
            port = rng.randrange(10000, low)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(fn, timeout=30.0, interval=0.05, what="condition"):
    """Poll fn() until it returns a truthy value; generous timeouts, never a speed assertion."""
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (OSError, http.client.HTTPException, ValueError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError("timed out after %.0fs waiting for %s (last: %r)" % (timeout * TIMEOUT_SCALE, what, last))


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class Scout:
    """One agent process. policy is Lua text; {zk} in it is not needed: --zk is passed."""

    def __init__(self, policy, zk, api=None, log_level="info", extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="scout-it-")
        _dirs.append(self.dir)
        self.policy_file = os.path.join(self.dir, "policy.lua")
        with open(self.policy_file, "w") as f:
            f.write(policy)
        self.api = api or "127.0.0.1:%d" % free_port()
        self.zk = zk
        self.log_file = os.path.join(self.dir, "scout.log")
        self.args = SCOUT_WRAP + [SCOUT_BIN, "run", "-c", self.policy_file, "--zk", zk, "--api", self.api]
        if log_level is not None:                  # None: the policy's agent { log_level } decides
            self.args += ["--log-level", log_level]
        self.args += list(extra_args)
        self.proc = None

    def start(self, wait=True):
        self._log = open(self.log_file, "ab")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        _live.add(self)
        if wait:
            wait_until(lambda: self.request("/v1/services")[0] == 200, what="scout API up")
        return self

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stop the agent; returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.send_signal(sig)
                self.proc.wait(timeout=timeout * TIMEOUT_SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self._log.close()
        _live.discard(self)
        self.proc = None
        self.exit_code = rc
        # a sanitizer report or a crash on the way out fails the test that ran this agent
        log = self.log()
        for marker in SANITIZER_MARKERS:
            if marker in log:
                raise AssertionError("scout log has %r:\n%s" % (marker, log[-4000:]))
        if VALGRIND_ERRORS.search(log):
            raise AssertionError("valgrind reported errors:\n%s" % log[-8000:])
        if sig == signal.SIGTERM and rc not in (0, None):
            raise AssertionError("scout exited %d on SIGTERM:\n%s" % (rc, log[-2000:]))
        return rc

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        with open(self.log_file, "rb") as f:
            return f.read().decode("utf-8", "replace")

    # -- HTTP ----------------------------------------------------------------
    def _conn(self):
        if self.api.startswith("unix:"):
            return UnixHTTPConnection(self.api[5:])
        host, port = self.api.rsplit(":", 1)
        return http.client.HTTPConnection(host, int(port), timeout=10)

    def request(self, path):
        c = self._conn()
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def services(self):
        status, _, body = self.request("/v1/services")
        assert status == 200, status
        return {s["name"]: s for s in json.loads(body)}

    def endpoints(self, name):
        status, headers, body = self.request("/v1/services/" + name)
        assert status == 200, (status, body)
        return json.loads(body), headers

    def ids(self, name):
        return sorted(ep["id"] for ep in self.endpoints(name)[0])

    def state(self, name):
        return self.services()[name]["state"]

    def metrics(self):
        status, _, body = self.request("/metrics")
        assert status == 200
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def metric(self, name, service=None):
        key = name if service is None else '%s{service="%s"}' % (name, service)
        return self.metrics().get(key, 0)

    def uptime(self):
        """The agent's own clock: /v1/agent's uptime_seconds."""
        status, _, body = self.request("/v1/agent")
        assert status == 200, status
        return json.loads(body)["uptime_seconds"]

    def wait_clock(self, seconds, what="the agent's clock"):
        """Waits until the agent's own clock has moved `seconds` past what it reads now: for a test that needs time
        to have passed in the agent (a once-a-second walk, a gap before a disconnect), ordered on the agent's
        clock as it answers, not on a sleep in the test."""
        start = self.uptime()
        return wait_until(lambda: self.uptime() >= start + seconds, what=what)

    def health(self):
        status, _, body = self.request("/v1/health")
        return status, json.loads(body)

    # -- process control -------------------------------------------------------
    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)


def policy(services, session_timeout=4000, extra="", zookeeper=""):
    """A policy text: services is {name: lua-body-string}; zookeeper adds keys to the zookeeper block."""
    out = ['zookeeper { servers = "127.0.0.1:1", session_timeout = %d%s }'
           % (session_timeout, (", " + zookeeper) if zookeeper else ""), extra]
    for name, body in services.items():
        out.append('service "%s" {\n%s\n}' % (name, body))
    return "\n".join(out) + "\n"


class ZkCase(unittest.TestCase):
    """One real ZooKeeper for the whole class (cls.zk) and a kazoo client on it (cls.kz); tests use their own paths."""

    @classmethod
    def setUpClass(cls):
        from zkharness import ZooKeeper
        cls.zk = ZooKeeper().start()
        cls.kz = cls.zk.client()

    @classmethod
    def tearDownClass(cls):
        cls.zk.stop()


class OneServiceCase(ZkCase):
    """One agent per test serving one service "svc" whose children are written first.

    The protection suites share this shape: each test starts its own agent on its own path."""

    def tearDown(self):
        self.scout.stop()

    def start(self, path, n, body):
        """n children 127.0.0.1:7000.. under path, then an agent whose "svc" reads path; returns it serving all n."""
        self.kz.ensure_path(path)
        for p in range(n):
            self.kz.create("%s/127.0.0.1:%d" % (path, 7000 + p))
        self.scout = Scout(policy({"svc": 'path = "%s",\n%s' % (path, body)}), self.zk.connect).start()
        wait_until(lambda: len(self.scout.ids("svc")) == n, what="initial list")
        return self.scout

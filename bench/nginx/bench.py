"""bench.py — nginx benchmark driver (run by run.sh with /usr/bin/python3).

Why: issue 6 asks what balancer_by_lua + scout costs next to a plain nginx upstream, and what an endpoint set
that changes every second costs next to the usual alternative, rendering an upstream block and reloading nginx.

How:
- Backends are nginx too (`return 200`), so they are not the bottleneck: one instance with BACKENDS ports for
  the throughput runs; one small instance per backend for the churn runs, so a removed backend really stops.
- The front nginx (WORKERS workers) has, on one port, every variant, all with keepalive upstream connections
  (proxy_http_version 1.1): /static/ an upstream listing the backends (round robin), /swrr/ and /chash/
  balancer_by_lua + resty.scout over the same backends registered in ZooKeeper (plain children), read by the
  real agent from its shm snapshot; /churn/ scout over the churned service; /reload/ an upstream whose server
  list is an included file, rendered and `nginx -s reload`ed (SIGHUP) on each change.
- Throughput: wrk (THREADS threads, CONNS connections, SECONDS_PER_RUN each) on each variant, ROUNDS rounds in
  rotated order, after a warm-up; the median requests/s of each, and the median over rounds of its ratio to
  static in the same round (short runs, many rounds, paired: a shared machine drifts). Every request carries
  ?key= from a fixed set of 1,000 keys (one wrk Lua script for all variants), so chash spreads them over the
  backends. Also reported: the front workers' CPU time per request (/proc/PID/stat).
- Churn: DURATION seconds (60) of wrk on /churn/, then the same on /reload/, while the driver adds or removes a
  backend every second (between 2 and 5 live, from a pool of 6 ports): an add starts the backend, then
  registers it; a remove deregisters it, waits DRAIN seconds (0.5; what a deploy script waits), then stops the
  backend gracefully. Reported: requests/s, non-2xx responses and socket errors as wrk counts them, p99.
Everything runs on this machine at once (wrk, nginx, backends, agent, ZooKeeper): the ratios matter, not the
absolute numbers.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "nginx"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from nginxharness import Nginx, free_port, shm_generation, wait_until  # noqa: E402
from scoutharness import Scout  # noqa: E402
from zkharness import ZooKeeper  # noqa: E402

SECONDS = float(os.environ.get("SECONDS_PER_RUN", "2"))
ROUNDS = int(os.environ.get("ROUNDS", "9"))
CONNS = int(os.environ.get("CONNS", "32"))
THREADS = int(os.environ.get("THREADS", "1"))
BACKENDS = int(os.environ.get("BACKENDS", "4"))
WORKERS = int(os.environ.get("WORKERS", "1"))
DURATION = float(os.environ.get("DURATION", "60"))
DRAIN = float(os.environ.get("DRAIN", "0.5"))
PARTS = os.environ.get("PARTS", "throughput churn").split()
CHURN_POOL = 6
CHURN_MIN, CHURN_MAX = 2, 5
WRK = os.environ.get("WRK", "wrk")


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else 0.0


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


# -- wrk -------------------------------------------------------------------------------------------------------

# Every variant gets the same script (so wrk does the same work for each): the path is the first argument, and
# ?key= cycles over 1,000 keys (chash spreads them; the others ignore it).
KEYS_LUA = """
local paths, i = {}, 0
init = function(args)
  for k = 1, 1000 do paths[k] = args[1] .. "?key=user-" .. k end
end
request = function()
  i = i % #paths + 1
  return wrk.format(nil, paths[i])
end
"""


def wrk(url, seconds, script=None):
    """wrk on url; with script, url is split into base and path, the path going to the script."""
    cmd = [WRK, "-t%d" % THREADS, "-c%d" % CONNS, "-d%ds" % max(1, round(seconds)), "--latency", "--timeout", "5s"]
    args = [url]
    if script:
        m = re.match(r"(https?://[^/]+)(/.*)$", url)
        cmd += ["-s", script]
        args = [m.group(1), m.group(2)]
    out = subprocess.run(cmd + args[:1] + (["--"] + args[1:] if script else []), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True).stdout
    return parse_wrk(out)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(master_pid):
    """utime + stime of the nginx master's workers (/proc/PID/stat fields 14, 15)."""
    total = 0
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master_pid)], stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    for pid in out.split():
        try:
            with open("/proc/%s/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total


def _ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(out):
    r = {"raw": out, "rps": 0.0, "non2xx": 0, "sockerr": 0, "p99": None, "requests": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["sockerr"] = sum(int(x) for x in m.groups())
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if m:
        r["p99"] = _ms(m.group(1), m.group(2))
    return r


# -- processes -------------------------------------------------------------------------------------------------

def backend_nginx(ports):
    listens = "".join("        listen 127.0.0.1:%d reuseport;\n" % p for p in ports[1:])
    server = listens + '        keepalive_requests 1000000;\n        location / { return 200 "ok\\n"; }\n'
    ng = Nginx(server=server, workers=1, log_level="warn")
    ng.params["port"] = ports[0]
    ng.port = ports[0]
    return ng.start()


def front_config(shm, static_ports, reload_file):
    upstreams = "    upstream static {\n%s        keepalive 64;\n    }\n" % "".join(
        "        server 127.0.0.1:%d;\n" % p for p in static_ports)
    upstreams += "    upstream reload {\n        include %s;\n        keepalive 64;\n    }\n" % reload_file
    for name in ("orders", "carts", "churn"):
        upstreams += """
    upstream %(n)s {
        server 0.0.0.1;
        balancer_by_lua_block {
            local ok, err = require("resty.scout").balance("%(n)s")
            if not ok then
                ngx.log(ngx.ERR, "scout %(n)s: ", err)
                return ngx.exit(require("resty.scout").BUSY)
            end
        }
        keepalive 64;
    }
""" % {"n": name}
    http = """
    lua_shared_dict scout 1m;
    init_worker_by_lua_block {
        assert(require("resty.scout").init_worker{ path = "%s", dict = "scout" })
    }
    keepalive_requests 1000000;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_next_upstream error timeout http_502;
    proxy_connect_timeout 1s;
""" % shm + upstreams
    server = "".join("        location /%s/ { proxy_pass http://%s/; }\n" % (loc, up) for loc, up in (
        ("static", "static"), ("swrr", "orders"), ("chash", "carts"), ("churn", "churn"), ("reload", "reload")))
    server += """        location = /gen { content_by_lua_block { ngx.say(ngx.worker.pid(), " ",
            require("resty.scout").generation()) } }
        location = /peers { content_by_lua_block {
            local p = require("resty.scout").peers(ngx.var.arg_s)
            ngx.say(ngx.worker.pid(), " ", p and #p.endpoints or -1) } }
"""
    return http, server


class Churn:
    """Backends that come and go: each one its own nginx (so a removed one really stops)."""

    def __init__(self, kz, zpath, render=None):
        self.kz, self.zpath, self.render = kz, zpath, render
        self.ports = [free_port() for _ in range(CHURN_POOL)]
        self.live = {}        # port -> Nginx
        self.changes = 0
        self.stop_flag = threading.Event()
        self.reload_ms = []

    def publish(self):
        if self.render:
            t = time.monotonic()
            self.render(sorted(self.live))
            self.reload_ms.append((time.monotonic() - t) * 1000)

    def add(self, port):
        self.live[port] = backend_nginx([port])
        if self.render:
            self.publish()
        else:
            self.kz.create("%s/127.0.0.1:%d" % (self.zpath, port))

    def remove(self, port):
        if self.render:
            ng = self.live.pop(port)
            self.publish()
        else:
            self.kz.delete("%s/127.0.0.1:%d" % (self.zpath, port))
            ng = self.live.pop(port)
        time.sleep(DRAIN)
        ng.stop()
        ng.cleanup()

    def start(self, n=3):
        for p in self.ports[:n]:
            self.add(p)

    def loop(self):
        i = 0
        next_t = time.monotonic()
        while not self.stop_flag.is_set():
            next_t += 1.0
            free = [p for p in self.ports if p not in self.live]
            grow = (i % 2 == 0 and len(self.live) < CHURN_MAX) or len(self.live) <= CHURN_MIN
            if grow and free:
                self.add(free[0])
            else:
                port = next(iter(self.live))          # the oldest goes: a rolling deploy
                self.remove(port)
                self.ports.remove(port)
                self.ports.append(port)               # and its port is reused last
            self.changes += 1
            i += 1
            delay = next_t - time.monotonic()
            if delay > 0:
                self.stop_flag.wait(delay)

    def stop_all(self):
        for ng in self.live.values():
            ng.stop()
            ng.cleanup()
        self.live = {}


def run_churn(front, url, churn):
    churn.start()
    time.sleep(1.0)
    t = threading.Thread(target=churn.loop)
    result = {}

    def load():
        result.update(wrk(url, DURATION))
    w = threading.Thread(target=load)
    w.start()
    time.sleep(0.2)
    t.start()
    w.join()
    churn.stop_flag.set()
    t.join()
    churn.stop_all()
    result["changes"] = churn.changes
    return result


def main():
    t0 = time.monotonic()
    zk = ZooKeeper().start()
    kz = zk.client()
    shm = "/dev/shm/scout-bench-nginx-%d" % os.getpid()
    started = []
    try:
        ports = [free_port() for _ in range(BACKENDS)]
        be = backend_nginx(ports)
        started.append(be)
        for svc in ("orders", "carts", "churn"):
            kz.ensure_path("/bench/%s" % svc)
        for svc in ("orders", "carts"):
            for p in ports:
                kz.create("/bench/%s/127.0.0.1:%d" % (svc, p))
        policy = ('zookeeper { servers = "127.0.0.1:1", session_timeout = 10000 }\n'
                  'shm { path = "%s" }\n' % shm)
        for svc, sel in (("orders", "swrr"), ("carts", "chash"), ("churn", "swrr")):
            policy += 'service "%s" { path = "/bench/%s", codec = "plain", selector = "%s", protect = false }\n' % (
                svc, svc, sel)
        agent = Scout(policy, zk.connect, log_level="warn").start()
        started.append(agent)
        wait_until(lambda: shm_generation(shm) > 0, what="the agent's snapshot")

        reload_file = os.path.join("/tmp", "scout-bench-upstream-%d.conf" % os.getpid())
        with open(reload_file, "w") as f:
            f.write("server 127.0.0.1:%d;\n" % ports[0])
        http, server = front_config(shm, ports, reload_file)
        front = Nginx(http=http, server=server, workers=WORKERS, log_level="warn").start()
        started.append(front)
        front.per_worker("/peers?s=orders", lambda v: int(v) == BACKENDS)
        front.per_worker("/peers?s=carts", lambda v: int(v) == BACKENDS)
        base = "http://127.0.0.1:%d" % front.port
        script = os.path.join(front.dir, "keys.lua")
        with open(script, "w") as f:
            f.write(KEYS_LUA)

        # -- throughput ------------------------------------------------------------------------------------------
        if "throughput" in PARTS:
            variants = [("static", base + "/static/", script), ("scout swrr", base + "/swrr/", script),
                        ("scout chash", base + "/chash/", script)]
            log("warm-up")
            for _, url, s in variants:
                wrk(url, 1, s)
            rps = {name: [] for name, _, _ in variants}
            cpu = {name: [] for name, _, _ in variants}
            p99 = {name: [] for name, _, _ in variants}
            errors = {name: 0 for name, _, _ in variants}
            for r in range(ROUNDS):
                order = variants[r % len(variants):] + variants[:r % len(variants)]
                for name, url, s in order:
                    c0 = cpu_ticks(front.pid)
                    res = wrk(url, SECONDS, s)
                    us = (cpu_ticks(front.pid) - c0) * 1e6 / CLK_TCK / max(1, res["requests"])
                    cpu[name].append(us)
                    log("round %d %-12s %10.0f req/s  p99 %s ms  non-2xx %d  front cpu %.1f us/req" % (
                        r + 1, name, res["rps"], res["p99"], res["non2xx"], us))
                    rps[name].append(res["rps"])
                    p99[name].append(res["p99"] or 0)
                    errors[name] += res["non2xx"] + res["sockerr"]

            print()
            print("Throughput: wrk -t%d -c%d, %gs x %d rounds, %d backends, front nginx worker_processes %d, "
                  "keepalive upstreams" % (THREADS, CONNS, SECONDS, ROUNDS, BACKENDS, WORKERS))
            print("| variant | req/s (median) | ratio to static (median of per-round ratios) | p99 ms (median) "
                  "| front nginx CPU us/req (median) | errors |")
            print("|---|---|---|---|---|---|")
            for name, _, _ in variants:
                # each round's variants ran back to back: compare within a round, so load from elsewhere on the
                # machine (which drifts over minutes) cancels out as far as it can
                ratios = [a / b for a, b in zip(rps[name], rps["static"]) if b > 0]
                print("| %s | %.0f | %.2f | %.2f | %.1f | %d |" % (
                    name, median(rps[name]), median(ratios), median(p99[name]), median(cpu[name]), errors[name]))

        # -- churn -----------------------------------------------------------------------------------------------
        if "churn" in PARTS:
            log("churn with scout, %gs" % DURATION)
            c1 = Churn(kz, "/bench/churn")
            res_scout = run_churn(front, base + "/churn/", c1)

            def render(live):
                tmp = reload_file + ".tmp"
                with open(tmp, "w") as f:
                    for p in live:
                        f.write("server 127.0.0.1:%d;\n" % p)
                os.rename(tmp, reload_file)
                os.kill(front.pid, signal.SIGHUP)

            log("churn with render + nginx -s reload, %gs" % DURATION)
            c2 = Churn(kz, None, render=render)
            res_reload = run_churn(front, base + "/reload/", c2)
            print()
            print("Churn: a backend added or removed every second for %gs (2-5 live; removal = deregister, wait %gs, "
                  "stop), wrk -t%d -c%d" % (DURATION, DRAIN, THREADS, CONNS))
            print("| variant | changes | requests | req/s | non-2xx | socket errors | p99 ms |")
            print("|---|---|---|---|---|---|---|")
            for name, res in (("scout (shm, no reload)", res_scout), ("render + nginx -s reload", res_reload)):
                print("| %s | %d | %d | %.0f | %d | %d | %s |" % (
                    name, res["changes"], res["requests"], res["rps"], res["non2xx"], res["sockerr"],
                    "%.2f" % res["p99"] if res["p99"] is not None else "-"))
            if os.environ.get("VERBOSE"):
                print(res_scout["raw"], res_reload["raw"])
        front.stop()
        bad = front.bad_lines()
        if bad:
            log("front nginx logged %d error lines, e.g.: %s" % (len(bad), bad[0][:300]))
        log("done in %.0fs" % (time.monotonic() - t0))
    finally:
        for x in reversed(started):
            try:
                x.stop()
            except Exception as e:
                log("stop:", e)
        for x in started:
            if isinstance(x, Nginx):
                x.cleanup()
            elif isinstance(x, Scout) and not os.environ.get("KEEP"):
                shutil.rmtree(x.dir, ignore_errors=True)
        zk.stop()
        for f in (shm, "/tmp/scout-bench-upstream-%d.conf" % os.getpid()):
            if os.path.exists(f):
                os.unlink(f)


if __name__ == "__main__":
    main()

"""reload_hold.py -- what `nginx -s reload` costs while the spawned agent is slow to exit (run with /usr/bin/python3).

Why: issue 14's loop rule applies to nginx's loop running resty.scout. On a reload the old worker 0 stops the agent
it spawned; it used to busy-wait (usleep, up to 2 s) for it, serving nothing meanwhile, and the new worker 0 started
its agent at once, which refused while the old one held the snapshot file and was started again with back-off.

How: Debian's nginx, one worker, spawn_agent with a real ZooKeeper. Each round: a request is put in flight on
worker 0 (it waits for a file), the agent is stopped (SIGSTOP: slow to exit), nginx gets SIGHUP; 0.2 s later the
request is released, and at 1.0 s the agent is continued (it then acts on its SIGTERM). Measured: how long the
released request took to answer (the old worker's loop), the time from the old agent's exit to the new agent's
API answering, and how many agents the new worker 0 started to get there. ROUNDS rounds (3) of this tree's Lua and
of BASELINE_LUA's tree (default /tmp/old-main), interleaved, the same agent binary (SCOUT_BIN, build/scout); the
medians and their ratios. Nothing fails on a number.
"""

import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "nginx"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))

from nginxharness import ROOT, Nginx, free_port, wait_until  # noqa: E402
from scoutharness import SCOUT_BIN, Scout  # noqa: E402,F401
from zkharness import ZooKeeper  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
BASELINE = os.environ.get("BASELINE_LUA", "/tmp/old-main")


def state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def round_(root, zk):
    d = tempfile.mkdtemp(prefix="scout-bench-reload-hold-")
    os.chmod(d, 0o777)
    shm = os.path.join("/dev/shm", os.path.basename(d))
    policy = os.path.join(d, "policy.lua")
    with open(policy, "w") as f:
        f.write('zookeeper { servers = "127.0.0.1:1", session_timeout = 4000 }\nshm { path = "%s" }\n'
                'service "orders" { path = "/bench/reload_hold", codec = "plain" }\n' % shm)
    os.chmod(policy, 0o644)
    log = os.path.join(d, "agent.log")
    open(log, "w").close()
    os.chmod(log, 0o666)
    flag = os.path.join(d, "release")
    api_port = free_port()
    http = """
    lua_shared_dict scout 1m;
    init_worker_by_lua_block {
        assert(require("resty.scout").init_worker{ path = "%s", dict = "scout" })
        assert(require("resty.scout").spawn_agent{ bin = "%s", policy = "%s", log = "%s", backoff = { min = 0.5 },
            args = { "--zk", "%s", "--api", "127.0.0.1:%d" } })
    }
""" % (shm, SCOUT_BIN, policy, log, zk.connect, api_port)
    server = """
        location = /agent {
            content_by_lua_block {
                local a = require("resty.scout").agent()
                ngx.say(a and a.pid and (a.pid .. " " .. a.starts) or "-")
            }
        }
        location = /hold {
            content_by_lua_block {
                ngx.log(ngx.NOTICE, "hold: in flight")
                local f = io.open("%s")
                while not f do ngx.sleep(0.005) f = io.open("%s") end
                f:close()
                ngx.say("ok")
            }
        }
""" % (flag, flag)
    ng = Nginx(http=http, server=server, workers=1)
    ng.params["root"] = root
    ng.start()
    try:
        pid = int(wait_until(lambda: ng.body("/agent").split()[0] != "-" and ng.body("/agent").split()[0],
                             what="the agent"))
        api = Scout.__new__(Scout)
        api.api = "127.0.0.1:%d" % api_port
        wait_until(lambda: api.request("/v1/services")[0] == 200, what="its API")
        held = []
        t = threading.Thread(target=lambda: held.append((ng.request("/hold", timeout=60), time.monotonic())))
        t.start()
        wait_until(lambda: ng.count_log("hold: in flight") == 1, what="the request in flight")
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        os.kill(ng.pid, signal.SIGHUP)
        time.sleep(max(0, t0 + 0.2 - time.monotonic()))
        open(flag, "w").close()
        released = time.monotonic()
        time.sleep(max(0, t0 + 1.0 - time.monotonic()))
        os.kill(pid, signal.SIGCONT)
        while state(pid) not in (None, "Z"):
            time.sleep(0.002)
        gone = time.monotonic()
        while True:
            try:
                if api.request("/v1/services")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.005)
        up = time.monotonic()
        t.join()
        (st, _, _), answered = held[0]
        starts = int(wait_until(lambda: ng.body("/agent").split()[1:] and ng.body("/agent").split()[1],
                                what="the new agent"))
        return {"held_ms": (answered - released) * 1000, "gap_ms": (up - gone) * 1000, "starts": starts, "st": st}
    finally:
        ng.stop(timeout=30)
        ng.cleanup()
        shutil.rmtree(d, True)
        if os.path.exists(shm):
            os.unlink(shm)


def main():
    zk = ZooKeeper().start()
    zk.client().ensure_path("/bench/reload_hold")
    res = {"this": [], "baseline": []}
    try:
        for _ in range(ROUNDS):
            for name, root in (("this", ROOT), ("baseline", BASELINE)):
                r = round_(root, zk)
                res[name].append(r)
                print("%-8s %s" % (name, r), flush=True)
    finally:
        zk.stop()
    print("\nmedians over %d rounds (this tree's Lua / %s's; agent %s):" % (ROUNDS, BASELINE, SCOUT_BIN))
    for key, what in (("held_ms", "request in flight on the old worker, release -> answer, ms"),
                      ("gap_ms", "old agent gone -> new agent's API answers, ms"),
                      ("starts", "agents the new worker 0 started")):
        a = statistics.median(r[key] for r in res["this"])
        b = statistics.median(r[key] for r in res["baseline"])
        print("  %-60s %8.1f  %8.1f  ratio %.3f" % (what, a, b, a / b if b else float("nan")))


if __name__ == "__main__":
    main()

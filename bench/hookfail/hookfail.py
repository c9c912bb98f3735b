"""hookfail.py — what a failing filter costs the loop per change of its service (issue 14, trust).

Why: a filter that meets the Lua heap cap costs ~100-200 ms of CPU, and it was run again at every change of its
service: a publisher changing the service quickly held the loop for seconds and expired the session (the
PolicySandbox suite at load 10). This measures, per change, the agent's CPU, the time its loop was held
(scout_loop_stall_seconds_sum), the heap-cap hits and the longest iteration, for the base binary and the new one,
alternating, in one run. Nothing is asserted: the table is printed.

Setup: one ZooKeeper; per round and binary, a service with one good child, then a child whose filter builds
strings until the 64 MB cap (agent { hook_budget = 1000, lua_memory = "64MB" }, session_timeout 4000 ms), then
CHANGES (30) new children created one at a time, each waited for in the published list (a publisher paced by what
it sees). Run: `SCOUT_BASE=/path/to/old/scout /usr/bin/python3 bench/hookfail/hookfail.py` (SCOUT: the new
binary, default build/scout; ROUNDS: 2).
"""

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from scoutharness import Scout, policy, wait_until  # noqa: E402
from zkharness import ZooKeeper  # noqa: E402

CHANGES = int(os.environ.get("CHANGES", 30))
ROUNDS = int(os.environ.get("ROUNDS", 2))
NEW = os.environ.get("SCOUT", os.path.join(ROOT, "build", "scout"))
BASE = os.environ.get("SCOUT_BASE")

FILTER = '''filter = function(ep)
    if ep.meta.boom == "store" then local t = {}; for k = 1, 1000 do t[k] = string.rep("z", 4e6) .. k end end
    return true
  end,'''


def cpu_ms(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def sample(s):
    m = s.metrics()
    return {"cpu": cpu_ms(s.proc.pid), "held": m.get("scout_loop_stall_seconds_sum", 0) * 1000,
            "caps": m.get("scout_hook_memory_errors_total", 0), "expired": m.get("scout_zk_session_expirations_total", 0),
            "long": m.get("scout_loop_stalls_total", 0) + m.get("scout_loop_cpu_waits_total", 0)}


def run(zk, kz, binary, tag):
    path = "/hf/%s/svc" % tag
    kz.ensure_path(path)
    kz.create(path + "/127.0.0.1:1")
    text = policy({"svc": 'path = "%s",\n  %s' % (path, FILTER)},
                  extra='agent { hook_budget = 1000, lua_memory = "64MB" }')
    s = Scout(text, zk.connect)
    s.args[0] = binary
    s.start()
    try:
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:1"], what="initial list")
        kz.create(path + "/poison", b'{"host":"10.9.9.9","port":9,"meta":{"boom":"store"}}')
        wait_until(lambda: s.metric("scout_hook_memory_errors_total") >= 1, what="the cap met")
        a = sample(s)
        t0 = time.monotonic()
        for k in range(CHANGES):
            kz.create("%s/127.0.0.1:%d" % (path, 100 + k))
            wait_until(lambda k=k: "127.0.0.1:%d" % (100 + k) in s.ids("svc"), timeout=120, what="change %d" % k)
        wall = (time.monotonic() - t0) * 1000
        b = sample(s)
        max_held = s.metrics().get("scout_loop_stall_max_seconds", 0) * 1000
        return {"cpu": (b["cpu"] - a["cpu"]) / CHANGES, "held": (b["held"] - a["held"]) / CHANGES,
                "caps": b["caps"] - a["caps"], "wall": wall / CHANGES, "max": max_held,
                "long": b["long"] - a["long"], "expired": b["expired"]}
    finally:
        s.stop()


def main():
    if not BASE:
        sys.exit("SCOUT_BASE: the base binary to compare with")
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    zk = ZooKeeper().start()
    kz = zk.client()
    rows = {"base": [], "new": []}
    try:
        for r in range(ROUNDS):
            for name, binary in (("base", BASE), ("new", NEW)):
                rows[name].append(run(zk, kz, binary, "%s%d" % (name, r)))
    finally:
        kz.stop()
        zk.stop()
    print("hookfail: %d changes per run, %d rounds, load %s at start" % (CHANGES, ROUNDS, load))
    print("| per change | base | new | new/base |")
    print("|---|---|---|---|")
    for key, label in (("cpu", "agent CPU, ms"), ("held", "loop held (stall sum), ms"), ("wall", "change -> published, ms"),
                       ("caps", "heap-cap runs (whole run)"), ("long", "iterations past 100 ms (whole run)"),
                       ("max", "longest iteration, ms"), ("expired", "sessions expired")):
        b = [x[key] for x in rows["base"]]
        n = [x[key] for x in rows["new"]]
        ratio = "%.2fx" % (sum(n) / sum(b)) if sum(b) > 0 else "-"
        print("| %s | %s | %s | %s |" % (label, ", ".join("%.1f" % v for v in b), ", ".join("%.1f" % v for v in n),
                                          ratio))


if __name__ == "__main__":
    main()

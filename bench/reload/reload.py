"""reload.py -- how long a SIGHUP reload holds the loop at SERVICES services (issue 14's loop rule).

Why: a reload loads the new policy on the loop (the DSL, the runtime's per-service state, the C side), rebinds every
service and frees the old VM, all in one iteration; at 10,000 services that is the agent's longest hold after the
start. Method: one real ZooKeeper (tests/integration/zkharness.py), an agent on a policy of SERVICES services in
bench/scale's shape (`service "svc-NNNNN" { path = "/scale/svc-NNNNN", codec = "plain" }`, no nodes needed: each
service's path is watched whether it exists or not), started once; then ROUNDS times: SIGHUP with the same file
touched, wait for the "reloaded" log line, and read the loop's own line for that iteration ("one iteration held the
loop for X ms, Y ms on the CPU", logged past 100 ms) and the process's CPU from /proc (10 ms ticks) around it.
Prints the median and the best of each. SCOUT (binary), SCOUT_LUA_DIR (its Lua), SERVICES (10000), ROUNDS (7).
CALLGRIND=out.cg (with SERVICES=1000: a reload's load budget is at most 5 s): the agent runs under callgrind, the start dumped to out.cg.1 (the load
phase: scout_policy_new + scout_agent_load), then one SIGHUP's reload to out.cg.2 (`callgrind_annotate --inclusive=yes`).

    python3 bench/reload/reload.py
    SCOUT=/tmp/old-main/build/scout SCOUT_LUA_DIR=/tmp/old-main/lua python3 bench/reload/reload.py
"""

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from zkharness import ZooKeeper  # noqa: E402

SCOUT = os.environ.get("SCOUT", os.path.join(ROOT, "build", "scout"))
SERVICES = int(os.environ.get("SERVICES", "10000"))
ROUNDS = int(os.environ.get("ROUNDS", "7"))
CALLGRIND = os.environ.get("CALLGRIND")
# a reload's load budget is a third of the session timeout, at most 5 s: under callgrind, 1,000 services and 30 s
SESSION_TIMEOUT_MS = int(os.environ.get("SESSION_TIMEOUT_MS", "30000" if CALLGRIND else "10000"))
TICK = os.sysconf("SC_CLK_TCK")
LOG_TAIL = None     # the agent's log's last lines, for a failure
HELD = re.compile(r"one iteration (?:held the loop for|took) (\d+) ms(?:, (\d+) ms on the CPU| but ran only ([\d.]+) ms)")


def cpu_ms(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / TICK


def wait_for(fn, timeout=300, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.005)
    raise SystemExit("reload: timed out waiting for " + what + (": " + LOG_TAIL() if LOG_TAIL else ""))


def main():
    tmp = tempfile.mkdtemp(prefix="scout-reload-")
    zk = ZooKeeper().start()
    proc = None
    try:
        policy = os.path.join(tmp, "policy.lua")
        with open(policy, "w") as f:
            f.write('zookeeper { servers = "x:1", session_timeout = %d }\n' % SESSION_TIMEOUT_MS)
            for i in range(SERVICES):
                f.write('service "svc-%05d" { path = "/scale/svc-%05d", codec = "plain" }\n' % (i, i))
        log_path = os.path.join(tmp, "scout.log")
        log = open(log_path, "ab")
        wrap = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + os.path.abspath(CALLGRIND)] \
            if CALLGRIND else []
        env = dict(os.environ, SCOUT_LOAD_BUDGET="3600s") if CALLGRIND else None   # the start's budget only
        proc = subprocess.Popen(wrap + [SCOUT, "run", "-c", policy, "--zk", zk.connect, "--api", "unix:" + tmp + "/s.sock",
                                 "--log-level", "info"], stdout=log, stderr=subprocess.STDOUT, env=env)

        def text():
            with open(log_path, errors="replace") as f:
                return f.read()
        global LOG_TAIL
        LOG_TAIL = lambda: "".join(text().splitlines(True)[-3:])  # noqa: E731
        wait_for(lambda: "ready in" in text() or proc.poll() is not None, timeout=1200, what="the agent's start")
        if proc.poll() is not None:
            raise SystemExit("reload: the agent exited: " + LOG_TAIL())
        time.sleep(30 if CALLGRIND else 2)  # the first listings' replies: let the start's own iterations end
        if CALLGRIND:
            # the start (scout_policy_new + scout_agent_load: the agent's load phase) to out.cg.1, then zeroed
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
            if SERVICES > 2000:
                print("under callgrind, %d services: the start in %s.1 (a reload of this size passes its budget "
                      "under valgrind)" % (SERVICES, CALLGRIND))
                return
            before = text().count("reloaded ")
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: text().count("reloaded ") > before, timeout=120, what="the reload")
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
            print("under callgrind, %d services: the start in %s.1, the reload in %s.2" % (SERVICES, CALLGRIND, CALLGRIND))
            return
        held, cpu, proc_cpu = [], [], []
        for r in range(ROUNDS):
            before = text().count("reloaded ")
            mark = len(text())
            c0 = cpu_ms(proc.pid)
            os.utime(policy)
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: text().count("reloaded ") > before, what="reload %d" % r)
            time.sleep(0.5)        # the loop's line comes at the end of the iteration, and the reads after it
            c1 = cpu_ms(proc.pid)
            lines = [m for m in HELD.finditer(text()[mark:])]
            if lines:
                m = lines[0]
                held.append(float(m.group(1)))
                cpu.append(float(m.group(2) or m.group(3)))
            proc_cpu.append(c1 - c0)
        load = open("/proc/loadavg").read().split()[0]
        print("reload, %d services, %d rounds (load %s), %s" % (SERVICES, ROUNDS, load, SCOUT))
        if held:
            print("  the reload's iteration, wall ms: median %.0f, best %.0f (%d of %d rounds past 100 ms)"
                  % (statistics.median(held), min(held), len(held), ROUNDS))
            print("  the reload's iteration, CPU ms:  median %.0f, best %.0f" % (statistics.median(cpu), min(cpu)))
        else:
            print("  the reload's iteration: under 100 ms every round (no loop line)")
        print("  the process's CPU from SIGHUP to 0.5 s after, ms (10 ms ticks): median %.0f, best %.0f"
              % (statistics.median(proc_cpu), min(proc_cpu)))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        zk.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""reload.py -- how long a SIGHUP reload holds the loop at SERVICES services (issue 14's loop rule).

Why: a reload used to load the new policy on the loop (the DSL, the runtime's per-service state, the C side),
rebind every service and free the old VM, all in one iteration: at 10,000 services the agent's longest hold after
the start. The load now runs on a loader thread (agent_reload.c) and only the apply is the loop's. Method: one real
ZooKeeper (tests/integration/zkharness.py), an agent on a policy of SERVICES services in bench/scale's shape
(`service "svc-NNNNN" { path = "/scale/svc-NNNNN", codec = "plain" }`, no nodes needed: each service's path is
watched whether it exists or not), started once; then ROUNDS times: SIGHUP with the same file touched, wait for the
"reloaded" log line, and read, for that reload:
  - the loop's own line ("one iteration held the loop for X ms, Y ms on the CPU", logged past 100 ms), and its
    stall histogram (scout_loop_stall_seconds, /metrics): the bucket of the longest iteration meanwhile;
  - an API probe's longest answer: a client asks GET /v1/health over and over on the unix socket from the SIGHUP
    until the reload is done (what a client waits while the reload runs);
  - the whole reload's wall time, from the SIGHUP to its "reloaded" line (polled every 5 ms);
  - the process's CPU from /proc (10 ms ticks) from the SIGHUP to 0.5 s after the line.
Prints the median and the best of each. SCOUT (binary), SERVICES (10000), ROUNDS (7). BASELINE=path: the same
measures for that binary too (its Lua next to it), PAIRS times interleaved with SCOUT's (default 1), and the ratios
SCOUT / BASELINE, all in one run.
CALLGRIND=out.cg (with SERVICES=1000): the agent runs under callgrind, the start dumped to out.cg.1 (the load
phase: scout_policy_new + scout_agent_load), then one SIGHUP's reload to out.cg.2 (`callgrind_annotate --inclusive=yes`).

    python3 bench/reload/reload.py
    BASELINE=/tmp/old-main/build/scout python3 bench/reload/reload.py
"""

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import socket
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from zkharness import ZooKeeper  # noqa: E402

SCOUT = os.environ.get("SCOUT", os.path.join(ROOT, "build", "scout"))
SERVICES = int(os.environ.get("SERVICES", "10000"))
ROUNDS = int(os.environ.get("ROUNDS", "7"))
CALLGRIND = os.environ.get("CALLGRIND")
BASELINE = os.environ.get("BASELINE")
PAIRS = int(os.environ.get("PAIRS", "1"))
# an old binary's reload load budget is a third of the session timeout, at most 5 s: under callgrind 30 s
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


def get(sock_path, path):
    """One GET on the agent's unix socket: (seconds it took, body)."""
    t0 = time.monotonic()
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(sock_path)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
    chunks = []
    while True:
        b = s.recv(65536)
        if not b:
            break
        chunks.append(b)
    s.close()
    return time.monotonic() - t0, b"".join(chunks).split(b"\r\n\r\n", 1)[-1].decode()


def stall_buckets(sock_path):
    out = {}
    for line in get(sock_path, "/metrics")[1].splitlines():
        if line.startswith("scout_loop_stall_seconds_bucket{le=\""):
            le = line.split('"')[1]
            out[le] = int(float(line.rsplit(" ", 1)[1]))
    return out


def longest_bucket(before, after):
    """The smallest bound whose count grew by as much as +Inf's: every iteration meanwhile was under it."""
    grown = after["+Inf"] - before["+Inf"]
    for le in sorted((k for k in after if k != "+Inf"), key=float):
        if after[le] - before.get(le, 0) >= grown:
            return float(le)
    return float("inf")


def main():
    if CALLGRIND or not BASELINE:
        run(SCOUT)
        return
    results = {}
    for _ in range(PAIRS):
        for b in (BASELINE, SCOUT):
            for k, v in run(b).items():
                results.setdefault(b, {}).setdefault(k, []).extend(v)
    print("ratios %s / %s (medians over every round):" % (SCOUT, BASELINE))
    for k in results[SCOUT]:
        new, old = results[SCOUT][k], results[BASELINE].get(k, [])
        if new and old and statistics.median(old) > 0:
            print("  %-46s %9.1f / %9.1f = %.3f" % (k, statistics.median(new), statistics.median(old),
                                                    statistics.median(new) / statistics.median(old)))


def run(scout):
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
        sock = tmp + "/s.sock"
        proc = subprocess.Popen(wrap + [scout, "run", "-c", policy, "--zk", zk.connect, "--api", "unix:" + tmp + "/s.sock",
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
        held, cpu, proc_cpu, bucket, probe, wall = [], [], [], [], [], []
        for r in range(ROUNDS):
            before = text().count("reloaded ")
            mark = len(text())
            b0 = stall_buckets(sock)
            c0 = cpu_ms(proc.pid)
            os.utime(policy)
            done = threading.Event()
            answers = []

            def probing():
                while not done.is_set():
                    answers.append(get(sock, "/v1/health")[0])
            t0 = time.monotonic()
            proc.send_signal(signal.SIGHUP)
            prober = threading.Thread(target=probing)
            prober.start()
            wait_for(lambda: text().count("reloaded ") > before, what="reload %d" % r)
            wall.append((time.monotonic() - t0) * 1e3)
            done.set()
            prober.join()
            probe.append(max(answers) * 1e3 if answers else float("nan"))
            time.sleep(0.5)        # the loop's line comes at the end of the iteration, and the reads after it
            c1 = cpu_ms(proc.pid)
            bucket.append(longest_bucket(b0, stall_buckets(sock)) * 1e3)
            lines = [m for m in HELD.finditer(text()[mark:])]
            if lines:
                m = lines[0]
                held.append(float(m.group(1)))
                cpu.append(float(m.group(2) or m.group(3)))
            proc_cpu.append(c1 - c0)
        load = open("/proc/loadavg").read().split()[0]
        print("reload, %d services, %d rounds (load %s), %s" % (SERVICES, ROUNDS, load, scout))
        if held:
            print("  the reload's iteration, wall ms: median %.0f, best %.0f (%d of %d rounds past 100 ms)"
                  % (statistics.median(held), min(held), len(held), ROUNDS))
            print("  the reload's iteration, CPU ms:  median %.0f, best %.0f" % (statistics.median(cpu), min(cpu)))
        else:
            print("  the reload's iteration: under 100 ms every round (no loop line)")
        print("  the process's CPU from SIGHUP to 0.5 s after, ms (10 ms ticks): median %.0f, best %.0f"
              % (statistics.median(proc_cpu), min(proc_cpu)))
        print("  the longest iteration meanwhile (stall histogram), at most ms: median %g, best %g"
              % (statistics.median(bucket), min(bucket)))
        print("  an API probe's longest answer during the reload, ms: median %.1f, best %.1f"
              % (statistics.median(probe), min(probe)))
        print("  the whole reload, SIGHUP to its line, wall ms: median %.0f, best %.0f"
              % (statistics.median(wall), min(wall)))
        applied = [float(x) for x in re.findall(r"applied in ([\d.]+) ms", text())]
        if applied:
            print("  its apply on the loop (its own line), wall ms: median %.1f, best %.1f"
                  % (statistics.median(applied), min(applied)))
        return {"the loop's line for the reload, wall ms": held,
                "the loop's line for the reload, CPU ms": cpu,
                "process CPU, SIGHUP to 0.5 s after, ms": proc_cpu,
                "longest iteration (histogram bound), ms": bucket,
                "API probe's longest answer, ms": probe,
                "whole reload, SIGHUP to its line, ms": wall}
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

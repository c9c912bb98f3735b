"""coldstart.py -- cold start from the disk snapshot with ZooKeeper down (issue 14: <= 100 ms at 10,000 services),
and its phases (run by run.sh with /usr/bin/python3).

Why: bench/scale measures a cold start only after a two-minute populate and sync; this driver writes the policy
and the snapshot directly (mksnap, the agent's own snapshot writer) so that the start alone can be measured, many
rounds, in seconds, and split into the phases the agent logs ("ready in X ms: policy, services, disk snapshot").

Method: one start first, not counted, which leaves the side file an agent writes beside a snapshot it read whole
(what lets the next start serve it before its policy is loaded, issue 14; an agent without that ignores it). Then,
ROUNDS times: Popen `scout run -c policy.lua --zk 127.0.0.1:<closed port> --api unix:S --cache-dir DIR` (the same S
and DIR every round: both are part of what the side file vouches for) -> the first
GET /v1/services/svc-00000 answering 200 with ENDPOINTS endpoints and X-Scout-State stale (polled every 1 ms).
The agent's CPU (utime+stime from /proc at that moment) is printed beside the wall time: on a shared machine the
wall time includes run-queue waits, the CPU does not. Phases from the agent's log line, wall and CPU. Then `scout check` of the
same policy, CPU, best of ROUNDS: the policy load alone. Benchmarks print; only a cold start that never serves
the snapshot exits non-zero.

Then, when READSNAP names bench/coldstart/readsnap.c built, the CPU of a process that only reads the snapshot:
the floor under serving it before the policy is loaded; and of one that only maps it and checks its checksum:
the floor under a lazy reader.  After "ready in", /metrics' scout_loop_stall_max_seconds: the longest loop iteration
of the start (wall time: the hand-over's hold while early clients wait).

With a binary built by itertrace.sh and SCOUT_ITER_TRACE=1 (run.sh passes the environment on), every loop
iteration over 1 ms of the loop thread's CPU is in the log: the longest from the start to the end of the steps after
the hand-over (CPU and wall) is printed, and the last round's iterations over 2 ms of CPU, each after the log line
that preceded it (what it was doing).

Env: SERVICES (10000), ENDPOINTS (10), ROUNDS (7), SCOUT, READSNAP, SCOUT_ITER_TRACE.
"""

import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import UnixHTTP  # noqa: E402

SERVICES = int(os.environ.get("SERVICES", "10000"))
ENDPOINTS = int(os.environ.get("ENDPOINTS", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "7"))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_ms(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / TICK


def get(sock, path):
    c = UnixHTTP(sock, timeout=5)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.getheader("X-Scout-State"), r.read()
    finally:
        c.close()


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main():
    scout, tmp, zk = sys.argv[1], sys.argv[2], sys.argv[3]
    policy = os.path.join(tmp, "policy.lua")
    rows, over = [], []
    sock = os.path.join(tmp, "c.sock")
    for k in range(-1, ROUNDS):
        logf = os.path.join(tmp, "c%d.log" % k)
        with open(logf, "wb") as lf:
            t0 = time.monotonic()
            p = subprocess.Popen([scout, "run", "-c", policy, "--zk", zk, "--api", "unix:" + sock,
                                  "--cache-dir", os.path.join(tmp, "cache"), "--log-level", "info"],
                                 stdin=subprocess.DEVNULL, stdout=lf, stderr=lf)
        try:
            ok = None
            while time.monotonic() - t0 < 30 and p.poll() is None:
                try:
                    st, state, body = get(sock, "/v1/services/svc-00000")
                    if st == 200 and len(json.loads(body)) == ENDPOINTS:
                        ok = (time.monotonic() - t0, cpu_ms(p.pid), state)
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.001)
            # then the whole start, for its phases (an early answer comes before the policy is loaded)
            # and, for an agent that has them, the steps after the hand-over (one per later iteration; an agent
            # without them, 3343ce2 and older, is given 2 s)
            t_ready = None
            while ok is not None and time.monotonic() - t0 < 60 and p.poll() is None:
                with open(logf, errors="replace") as f:
                    text = f.read()
                if "ready in" in text:
                    t_ready = t_ready or time.monotonic()
                    if ("the hand-over decoded" not in text or "after the hand-over:" in text
                            or time.monotonic() - t_ready > 2):
                        break
                time.sleep(0.01)
            # the longest loop iteration so far (wall): the hand-over's hold, for any binary
            stall = 0.0
            try:
                st, _, body = get(sock, "/metrics")
                m = re.search(rb"^scout_loop_stall_max_seconds ([\d.]+)", body, re.M)
                stall = float(m.group(1)) * 1000 if st == 200 and m else 0.0
            except OSError:
                pass
        finally:
            p.terminate()
            p.wait(timeout=30)
        with open(logf, errors="replace") as f:
            text = f.read()
        if ok is None or ok[2] != "stale":
            raise SystemExit("coldstart: round %d did not serve the snapshot (stale): %s\n%s"
                             % (k, ok, text[-2000:]))
        m = re.search(r"ready in (\d+) ms: policy (\d+) ms, services (\d+) ms, disk snapshot (\d+) ms"
                      r"(?:; CPU (\d+) ms before the agent, then (\d+) ms: policy (\d+) ms, services (\d+) ms, "
                      r"disk snapshot (\d+) ms)?", text)
        phases = tuple(int(x or 0) for x in m.groups()) if m else (0,) * 9
        # the hand-over's own account (an agent that seeds in slices): its longest slice, then the one iteration
        h = re.search(r"in \d+ slices \(longest ([\d.]+) ms.*?in \d+ \(longest ([\d.]+) ms.*?held the loop "
                      r"([\d.]+) ms \(([\d.]+) ms of CPU\)", text)
        hand = tuple(float(x) for x in h.groups()) if h else (0.0,) * 4
        # after it (agent_side.c): its longest later step, and the name index's sort in an iteration of its own
        a = re.search(r"after the hand-over: \d+ steps in later iterations, the longest ([\d.]+) ms of CPU.*?"
                      r"sorted (?:in an iteration of its own|by the loader thread) in ([\d.]+) ms", text)
        hand += tuple(float(x) for x in a.groups()) if a else (0.0,) * 2
        # the hand-over's first iteration (the lists staged) and its sessions (an agent that says them)
        b = re.search(r"its first iteration ([\d.]+) ms of CPU \(the lists staged\), the sessions' ([\d.]+) ms", text)
        hand += tuple(float(x) for x in b.groups()) if b else (0.0,) * 2
        # itertrace.sh's lines: every iteration over 1 ms of CPU, up to the end of the steps after the hand-over
        end = text.find("after the hand-over:")
        traced = [(float(c), float(w_)) for w_, c in
                  re.findall(r"trace: iteration wall ([\d.]+) ms cpu ([\d.]+) ms", text[:end if end >= 0 else None])]
        hand += max(traced) if traced else (0.0, 0.0)
        hand += (float(sum(1 for c, _ in traced if c > 2.0)),)
        if k == ROUNDS - 1 and traced:
            over = []
            before = ""
            for line in text[:end if end >= 0 else None].splitlines():
                t = re.search(r"trace: iteration wall ([\d.]+) ms cpu ([\d.]+) ms", line)
                if t is None:
                    before = line[25:110]
                elif float(t.group(2)) > 2.0:
                    over.append("  cpu %6s ms, wall %6s ms, after: %s" % (t.group(2), t.group(1), before))
        if k >= 0:
            rows.append((ok[0] * 1000, ok[1]) + phases + (stall,) + hand)
    checks = []
    for _ in range(ROUNDS):
        t = time.monotonic()
        r = subprocess.run(["/usr/bin/time", "-f", "%U %S", scout, "check", policy], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit("coldstart: scout check failed: %s%s" % (r.stdout, r.stderr))
        u, s = r.stderr.strip().splitlines()[-1].split()
        checks.append(((float(u) + float(s)) * 1000, (time.monotonic() - t) * 1000))
    # the floor under serving the snapshot before the policy: a process that only reads it (readsnap.c)
    # and under a lazy one: a process that only maps it and checks its checksum (readsnap -c)
    reads, checks_only = [], []
    if os.environ.get("READSNAP"):
        for _ in range(ROUNDS):
            for args, out in (([], reads), (["-c"], checks_only)):
                r = subprocess.run([os.environ["READSNAP"]] + args + [os.path.join(tmp, "cache", "scout.snapshot")],
                                   capture_output=True, text=True)
                m = re.search(r"CPU ([\d.]+) ms", r.stdout)
                if r.returncode != 0 or not m:
                    raise SystemExit("coldstart: readsnap failed: %s%s" % (r.stdout, r.stderr))
                out.append(float(m.group(1)))
    print("cold start, %d services x %d endpoints, ZooKeeper down, %d rounds (load %s)"
          % (SERVICES, ENDPOINTS, ROUNDS, open("/proc/loadavg").read().split()[0]))
    print("%-52s %10s %10s" % ("", "median", "best"))
    names = ["start -> svc-00000 answered (wall ms)", "  agent CPU at that moment (ms)",
             "  agent log: ready in (ms)", "    policy load (ms)", "    services built (ms)",
             "    disk snapshot read + served (ms)",
             "  agent CPU: process start to the agent (ms)", "  agent CPU: the agent's start (ms)",
             "    policy: Lua VM, scout's library, the policy (ms)", "    services built (ms)",
             "    disk snapshot read + served (ms)",
             "longest loop iteration by then (wall ms, /metrics)",
             "  hand-over: longest decoding slice (wall ms)", "  hand-over: longest building slice (wall ms)",
             "  hand-over: the finishing iteration (wall ms)",
             "  hand-over: the finishing iteration (CPU ms)",
             "  after it: the longest later step (CPU ms)",
             "  name sort (own iteration wall, or loader CPU, ms)",
             "  hand-over: first iteration, lists staged (CPU ms)", "  hand-over: the sessions made (CPU ms)",
             "longest iteration to the later steps (CPU, trace)", "  its wall time (ms)",
             "  iterations over 2 ms of CPU (trace)"]
    for i, name in enumerate(names):
        col = [r[i] for r in rows]
        print("%-52s %10.1f %10.1f" % (name, median(col), min(col)))
    print("%-52s %10.0f %10.0f" % ("scout check of the same policy (CPU ms)", median([c[0] for c in checks]),
                                   min(c[0] for c in checks)))
    print("%-52s %10.0f %10.0f" % ("scout check of the same policy (wall ms)", median([c[1] for c in checks]),
                                   min(c[1] for c in checks)))
    if rows and rows[-1][-1] > 0 and over:
        print("the last round's iterations over 2 ms of CPU (SCOUT_ITER_TRACE), each after the log line before it:")
        print("\n".join(over))
    if reads:
        print("%-52s %10.0f %10.0f" % ("a process that only reads the snapshot (CPU ms)", median(reads), min(reads)))
        print("%-52s %10.0f %10.0f" % ("  only maps it and checks its checksum (CPU ms)", median(checks_only),
                                       min(checks_only)))


if __name__ == "__main__":
    main()

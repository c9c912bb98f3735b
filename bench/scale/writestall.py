"""writestall.py — what holds the loop while the outputs are written, and how long SIGTERM takes, at one size, for
two agent binaries side by side (run by run.sh with WRITESTALL=1, /usr/bin/python3).

Why: issue 14 asks that the worst API stall during a snapshot write stay within 5 ms whatever the size, that the
service table (GET /v1/services) not hold the loop, and that SIGTERM at a big registry exit fast. Earlier figures came
from runs minutes apart on a shared 2-core machine; this driver alternates the base binary (SCOUT_BASE, e.g. one
built from main) and the new one (SCOUT) on the same ZooKeeper tree in one run, so the ratios share one load.
Nothing is asserted; only an agent that cannot be started exits non-zero.

Method: SERVICES (10000) x ENDPOINTS (10) under /ws (data as scale.py's), populated once. Then ROUNDS (2) times, for
each binary in turn: an agent with a cache dir and an shm file (both snapshots written on every change) syncs
(health 200) and settles SETTLE_S (10) s (the first writes, every service encoded once); then
  1. writes: a prober thread GETs /v1/health back-to-back on its own connection while CHANGES (40) single data
     changes, 100-200 ms apart, each wait for its blocking query (each is one shm generation; the 1 s snapshot timer
     writes about every 6th). Worst and p99 probe answer time; the longest loop iteration in the window (the
     highest scout_loop_stall_seconds bucket that moved, printed as "<= X ms"); disk snapshot writes in the window.
  2. table: TABLES (5) GET /v1/services while the prober runs: the prober's worst answer and the longest loop
     iteration, as above.
  3. SIGTERM -> exit, wall clock (the agent flushes the snapshot and closes its sessions first).
"past 100 ms" counts the iterations over the stall threshold the agent spent on the CPU (scout_loop_stalls_total) and
those it mostly spent waiting for a CPU (scout_loop_cpu_waits_total; binaries before it count all as the first).
FULL_FREE=1 adds a third agent: SCOUT with SCOUT_FREE_AT_EXIT=1 (it frees everything at exit, as leak-checking builds
do), so the exit's freeing shows against the same binary; each agent logs what its exit spent ("agent: exit: ...").
Env: SERVICES, ENDPOINTS, ROUNDS, CHANGES, TABLES, SETTLE_S, SYNC_TIMEOUT_S (900), SCOUT, SCOUT_BASE (unset: SCOUT
alone), FULL_FREE.
"""

import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import pct  # noqa: E402
import perchange  # noqa: E402  (it sets the endpoints per service the data helpers write)
from perchange import kazoo, log, populate, prober, start_synced, write_policy  # noqa: E402

SERVICES = int(os.environ.get("SERVICES", "10000"))
ROUNDS = int(os.environ.get("ROUNDS", "2"))
CHANGES = int(os.environ.get("CHANGES", "40"))
TABLES = int(os.environ.get("TABLES", "5"))
SETTLE_S = float(os.environ.get("SETTLE_S", "10"))
SYNC_TIMEOUT_S = float(os.environ.get("SYNC_TIMEOUT_S", "900"))
BUCKETS = ["0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]


def buckets(a):
    m = a.metrics()
    return [m.get('scout_loop_stall_seconds_bucket{le="%s"}' % b, 0) for b in BUCKETS]


def longest(b0, b1):
    """The upper bound of the highest bucket that moved between two readings (cumulative buckets)."""
    moved = [i for i in range(len(BUCKETS)) if (b1[i] - (b1[i - 1] if i else 0)) > (b0[i] - (b0[i - 1] if i else 0))]
    return "<= %s ms" % ("%g" % (float(BUCKETS[moved[-1]]) * 1000) if BUCKETS[moved[-1]] != "+Inf" else "inf") \
        if moved else "-"


def stalls(a):
    m = a.metrics()
    return m.get("scout_loop_stalls_total", 0), m.get("scout_loop_cpu_waits_total", float("nan"))


def probed(a, work):
    """Runs work() while a prober GETs /v1/health; (worst ms, p99 ms, probes, longest loop iteration,
    "H/W": iterations past 100 ms the agent held on the CPU / spent waiting for one (binaries before the
    distinction count every one as held))."""
    probes, stop = [], threading.Event()
    th = threading.Thread(target=prober, args=(a.sock, probes, stop))
    b0, s0 = buckets(a), stalls(a)
    th.start()
    work()
    stop.set()
    th.join()
    s1 = stalls(a)
    return (max(probes), pct(probes, .99), len(probes), longest(b0, buckets(a)),
            "%d/%s" % (s1[0] - s0[0], "-" if s1[1] != s1[1] else "%d" % (s1[1] - s0[1])))


def one_round(scout, tag, zk, tmp, kz, policy, cache, rnd):
    perchange.wait_synced.__defaults__ = (SYNC_TIMEOUT_S,)
    a, sync_s = start_synced(scout, policy, zk, tmp, tag, cache_dir=cache)
    time.sleep(SETTLE_S)
    w0 = a.metrics().get("scout_snapshot_writes_total", 0)

    def changes():
        for k in range(CHANGES):
            perchange.one_change(a, kz, "/ws", SERVICES, rnd, rnd.randrange(1 << 30))
            time.sleep(rnd.uniform(0.1, 0.2))
    wr = probed(a, changes)
    writes = a.metrics().get("scout_snapshot_writes_total", 0) - w0

    def tables():
        for _ in range(TABLES):
            a.get("/v1/services")
    tb = probed(a, tables)
    exit_s = a.stop()
    for ln in a.log_lines()[-5:]:
        if "agent: exit:" in ln:
            log("writestall: %s: %s" % (tag, ln.split("agent: ", 1)[1]))
    return {"sync": sync_s, "write": wr, "writes": writes, "table": tb, "exit": exit_s}


def main():
    zk, _zkdir, tmp, _root = sys.argv[1:5]
    scout = os.environ["SCOUT"]
    base = os.environ.get("SCOUT_BASE")
    bins = ([("base", base)] if base else []) + [("new", scout)]
    if os.environ.get("FULL_FREE") == "1":       # the new binary freeing everything at exit, as leak checks need
        wrap = os.path.join(tmp, "scout-full-free")
        with open(wrap, "w") as f:
            f.write('#!/bin/sh\nSCOUT_FREE_AT_EXIT=1 exec "%s" "$@"\n' % scout)
        os.chmod(wrap, 0o755)
        bins.insert(len(bins) - 1, ("full-free", wrap))
    kz = kazoo(zk)
    t = time.monotonic()
    populate(kz, "/ws", SERVICES)
    log("writestall: %d x %d populated in %.0f s" % (SERVICES, perchange.ENDPOINTS, time.monotonic() - t))
    rows = {tag: [] for tag, _ in bins}
    for r in range(ROUNDS):
        for tag, binary in bins:
            cache, shm = os.path.join(tmp, "cache-%s" % tag), os.path.join(tmp, "shm-%s" % tag)
            policy = os.path.join(tmp, "policy-%s.lua" % tag)
            write_policy(policy, "/ws", SERVICES, cache, shm)
            row = one_round(binary, "%s-%d" % (tag, r), zk, tmp, kz, policy, cache, random.Random(r))
            log("writestall: %s round %d: %r (load %.1f)" % (tag, r, row, os.getloadavg()[0]))
            rows[tag].append(row)
    print("\n%d services x %d endpoints, %d rounds per binary, alternating; load average now %.1f\n"
          % (SERVICES, perchange.ENDPOINTS, ROUNDS, os.getloadavg()[0]))
    print("| binary | API worst / p99 during %d changes (snapshot writes) | longest loop iteration | past 100 ms: "
          "held / waited for a CPU | API worst during %d GET /v1/services | longest loop iteration | past 100 ms | "
          "SIGTERM -> exit |" % (CHANGES, TABLES))
    print("|---|---|---|---|---|---|---|---|")
    for tag, _ in bins:
        for x in rows[tag]:
            print("| %s | %.1f / %.1f ms (%d writes, %d probes) | %s | %s | %.1f ms | %s | %s | %.2f s |"
                  % (tag, x["write"][0], x["write"][1], x["writes"], x["write"][2], x["write"][3], x["write"][4],
                     x["table"][0], x["table"][3], x["table"][4], x["exit"]))
    if base:
        def med(tag, f):
            v = sorted(f(x) for x in rows[tag])
            return v[len(v) // 2]
        for what, f in (("API worst during writes", lambda x: x["write"][0]),
                        ("API p99 during writes", lambda x: x["write"][1]),
                        ("API worst during tables", lambda x: x["table"][0]),
                        ("SIGTERM -> exit", lambda x: x["exit"])):
            b, n = med("base", f), med("new", f)
            print("- %s: base %.3g -> new %.3g (%.2fx)" % (what, b, n, n / b if b else float("nan")))
    if perchange.FAILED:
        print("FAILED: %s" % perchange.FAILED)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

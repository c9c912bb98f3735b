"""sync.py — the initial sync, the agent against the raw ZooKeeper C client, with the same number of sessions (run by
run.sh with SYNC=1, /usr/bin/python3).

Why: issue 14 asks that an agent's initial sync of a registry cost no more than 1.05x what a bare libzookeeper_st
client pays for the same reads (rawsync.c: every child list and every child's data, each read with its watch set,
nothing decoded or kept). On a shared machine the wall clock includes waiting for a CPU, so both are printed, and
the CPU (utime + stime of every thread, at the moment each is done) is the figure to compare.

Method: one ZooKeeper, /scale/svc-NNNNN/ep-E as scale.py writes it (SERVICES x ENDPOINTS, codec "plain", JSON
data). The policy is scale.py's, with anti-entropy at its default. First a warm-up agent (the number of ZooKeeper
sessions it opened, scout_zk_sessions_created_total, base and pool, is what rawsync is then given, so both spread
the same reads over the same sessions; SESSIONS overrides both) and a warm-up rawsync (the server's JIT). Then
ROUNDS rounds, each running in a rotated order: rawsync; rawsync parsing every child's JSON (raw+json,
RAWSYNC_PARSE=1: the agent decodes what it reads, so this is the fairer baseline for it); the agent (SCOUT); and,
with SCOUT_BASE=path/to/old/scout, that agent too (its Lua from SCOUT_BASE_LUA_DIR, default the lua/ beside its
build/). An agent is measured from Popen (its policy load included) to the first 200 from GET /v1/health (polled
every 20 ms over the unix socket), every service then checked synced with ENDPOINTS endpoints; its CPU is read at
that moment from /proc/PID/stat, then it is stopped (SIGTERM) and its cache dir removed, so every round starts cold.
rawsync is measured from its exec to its last read (its own clock) and its CPU from wait4's rusage. Printed: each
round, then the median per contender and the ratio of medians to rawsync's and to raw+json's (wall and CPU; and CPU
without the agent's start and policy load, from its "ready in" log line), and ratios of the agents to each other.
PERF=1: one more agent run under `perf record --call-graph dwarf` (perf-sync-new.data with KEEP=1) and under
`perf stat` (printed).
CALLGRIND=1: instead of the timed rounds, each contender once under `valgrind --tool=callgrind`, its instructions
counted to the same moment (an agent's counters dumped at its first health 200, `callgrind_control -d`; rawsync's
at its exit): work, which this VM's CPU time (20% from round to round) cannot show; with the inclusive cost of
each function in CG_FUNCS (a default list of the sync's phases). Run it at SERVICES=1000 (minutes, not hours).
The agent's count includes its answers to the health polls, as many as its wall time under valgrind allows (25-42 M
of a 1,000-service sync on a loaded machine): a second total leaves them out (accept_cb, conn_read_cb); what else
depends on the wall time (loop iterations, the disk snapshot's timer) stays in both.

Env: SERVICES (10000), ENDPOINTS (10), ROUNDS (3), SESSIONS (unset: the agent's own count), SESSION_TIMEOUT_MS
     (30000: a loaded machine must not expire sessions mid-sync, which adds a re-read to one contender only),
     SYNC_TIMEOUT_S (300), SCOUT, SCOUT_BASE, SCOUT_BASE_LUA_DIR, PERF.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import scale  # noqa: E402
import perchange  # noqa: E402  (it sets the endpoints per service the data helpers write)
from scale import Agent, LIVE, cpu_s, kazoo, log, schedstat, loadavg  # noqa: E402
from common import callgrind_dump, callgrind_file  # noqa: E402

SERVICES = int(os.environ.get("SERVICES", "10000"))
ENDPOINTS = int(os.environ.get("ENDPOINTS", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SESSIONS = os.environ.get("SESSIONS", "")
SESSION_TIMEOUT_MS = int(os.environ.get("SESSION_TIMEOUT_MS", "30000"))
SYNC_TIMEOUT_S = float(os.environ.get("SYNC_TIMEOUT_S", "300"))
PERF = os.environ.get("PERF", "0") == "1"
CALLGRIND = os.environ.get("CALLGRIND") == "1"
CG_FUNCS = os.environ.get("CG_FUNCS", "scout_policy_new,scout_agent_load,scout_policy_update,children_done,"
                          "issue_data_reads,accept_cb,conn_read_cb").split(",")
# The API's work answering the health polls (every 20 ms: as many as the run's wall time under valgrind allows,
# 25-42 M instructions of a 1,000-service sync on a loaded machine): printed apart, and taken out of a second total.
CG_POLLS = ("accept_cb", "conn_read_cb")
ROOT_PATH = "/scale"


def populate(kz):
    perchange.populate(kz, ROOT_PATH, SERVICES)     # one multi per service, 1000 in flight


def write_policy(path, cache):
    with open(path, "w") as f:
        f.write('zookeeper { servers = "x:1", session_timeout = %d%s }\ncache { dir = "%s" }\n'
                % (SESSION_TIMEOUT_MS, ", sessions = %d" % int(SESSIONS) if SESSIONS else "", cache))
        for i in range(SERVICES):
            f.write('service "%s" { path = "%s/%s", codec = "plain" }\n'
                    % (scale.svc_name(i), ROOT_PATH, scale.svc_name(i)))


def cg_wrap(tmp, tag):
    return ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/cg-%s.%%p" % (tmp, tag)]


def run_agent(scout, lua_dir, policy, zk, tmp, cache, tag, perf=None, cg=None):
    """(wall s, CPU s all threads, main thread on-CPU s, sessions created, perf stat text, CPU s of the start
    and policy load, from the agent's "ready in" line). cg: a list the callgrind counts at health 200 are
    appended to, the agent running under callgrind."""
    shutil.rmtree(cache, ignore_errors=True)
    os.environ["SCOUT_LUA_DIR"] = lua_dir
    a = Agent(scout, policy, zk, tmp, tag, cache_dir=cache, wrap=cg_wrap(tmp, tag) if cg is not None else ())
    rec = stat = None
    if perf == "record":
        rec = subprocess.Popen(["perf", "record", "-F", "999", "--call-graph", "dwarf,16384",
                                "-o", os.path.join(tmp, "perf-sync-%s.data" % tag), "-p", str(a.pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elif perf == "stat":
        stat = subprocess.Popen(["perf", "stat", "-e", "task-clock,context-switches,page-faults,"
                                 "instructions,cycles", "-p", str(a.pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for p in (rec, stat):
        if p is not None:
            with open(os.path.join(tmp, "pids"), "a") as f:
                f.write("%d\n" % p.pid)
    wall = None
    while time.monotonic() - a.t0 < SYNC_TIMEOUT_S:
        if not a.alive():
            raise SystemExit("sync: agent %s exited:\n%s" % (tag, a.log_tail()))
        try:
            if a.get("/v1/health", timeout=10)[0] == 200:
                wall = time.monotonic() - a.t0
                break
        except OSError:
            pass
        time.sleep(0.02)
    cpu = cpu_s(a.pid)
    main_cpu = schedstat(a.pid)[0]
    if cg is not None and wall is not None:
        cg.append(callgrind_dump(a.pid, tmp, CG_FUNCS))
    stat_txt = ""
    for p in (rec, stat):
        if p is not None:
            p.send_signal(signal.SIGINT)
            out = p.communicate(timeout=120)[1]
            if p is stat:
                stat_txt = out
    if wall is None:
        raise SystemExit("sync: agent %s not synced in %.0f s:\n%s" % (tag, SYNC_TIMEOUT_S, a.log_tail()))
    st, _, body = a.get("/v1/services")
    bad = [s for s in json.loads(body) if s["state"] != "synced" or s["endpoints"] != ENDPOINTS]
    if bad:     # noted, not fatal: a build from before that fix answers health 200 with services partial
        log("agent %s: %d services not whole when health said 200, e.g. %r" % (tag, len(bad), bad[:2]))
    load_cpu = 0.0
    for ln in a.log_lines():
        mm = re.search(r"ready in .*CPU (\d+) ms before the agent, then (\d+) ms", ln)
        if mm:
            load_cpu = (int(mm.group(1)) + int(mm.group(2))) / 1000.0
            break
    m = a.metrics()
    sessions = int(m.get("scout_zk_sessions_created_total", 0))
    expired = int(m.get("scout_zk_session_expirations_total", 0))
    if expired:
        log("agent %s: %d sessions expired during the sync (its figures include the re-reads)" % (tag, expired))
    a.stop()
    shutil.rmtree(cache, ignore_errors=True)
    if cg is not None:      # the dump at exit, past the moment measured
        for path in glob.glob(os.path.join(tmp, "cg-%s.%d*" % (tag, a.pid))):
            os.unlink(path)
    return wall, cpu, main_cpu, sessions, stat_txt, load_cpu


def run_raw(rawsync, zk, nsess, parse=False, cg=None, tmp=None):
    """(wall s, CPU s): rawsync's own clock from exec to its last read, and wait4's rusage. parse: it also parses
    every child's JSON (RAWSYNC_PARSE=1), the baseline that decodes what it reads. cg: as run_agent's."""
    tag = "raw-json" if parse else "raw"
    wrap = cg_wrap(tmp, tag) if cg is not None else []
    p = subprocess.Popen(wrap + [rawsync, zk, ROOT_PATH, str(SERVICES), str(nsess)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, RAWSYNC_TIMEOUT_S=str(int(SYNC_TIMEOUT_S)),
                                  SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS),
                                  RAWSYNC_PARSE="1" if parse else "0"))
    out, err = p.communicate(timeout=SYNC_TIMEOUT_S + 60)
    # communicate() reaped it: its rusage is in RUSAGE_CHILDREN's delta, taken by the caller
    if p.returncode != 0 or not out.startswith("done"):
        raise SystemExit("sync: rawsync failed: %s%s" % (out, err))
    f = out.split()
    if int(f[4]) != SERVICES * ENDPOINTS:
        raise SystemExit("sync: rawsync read %s data nodes" % f[4])
    if cg is not None:
        cg.append(callgrind_file(os.path.join(tmp, "cg-%s.%d" % (tag, p.pid)), CG_FUNCS))
    return int(f[1]) / 1e9


def children_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def callgrind_sync(contenders, rawsync, zk, nsess, policy, tmp, cache):
    counts = {}
    for tag, binary, lua in contenders:
        cg = []
        if binary is None:
            run_raw(rawsync, zk, nsess, parse=lua == "parse", cg=cg, tmp=tmp)
        else:
            run_agent(binary, lua, policy, zk, tmp, cache, tag, cg=cg)
        counts[tag] = cg[0]
        log("callgrind %s: %.1f M instructions" % (tag, cg[0][0] / 1e6))
    print()
    print("sync under callgrind: %d services x %d endpoints, %d sessions; instructions, millions (an agent to its "
          "first health 200, rawsync to its exit)" % (SERVICES, ENDPOINTS, nsess))
    tags = [c[0] for c in contenders]
    print("| | " + " | ".join(tags) + " |")
    print("|---|" + "---|" * len(tags))
    print("| whole sync | " + " | ".join("%.1f" % (counts[t][0] / 1e6) for t in tags) + " |")
    for base in ("raw", "raw+json"):
        print("| ratio to %s | " % base
              + " | ".join("%.2fx" % (counts[t][0] / counts[base][0]) for t in tags) + " |")

    def less_polls(t):
        return counts[t][0] - sum(counts[t][1].get(f, [0])[0] for f in CG_POLLS)
    print("| whole sync less the health polls (`%s`) | " % " + ".join(CG_POLLS)
          + " | ".join("%.1f" % (less_polls(t) / 1e6) for t in tags) + " |")
    print("| ... its ratio to raw+json | "
          + " | ".join("%.2fx" % (less_polls(t) / counts["raw+json"][0]) for t in tags) + " |")
    for f in CG_FUNCS:
        print("| `%s` (inclusive) | " % f + " | ".join(
            "%.1f" % (counts[t][1][f][0] / 1e6) if f in counts[t][1] else "" for t in tags) + " |")
    if "base" in counts:
        print("new / base: %.3fx, less the health polls %.3fx"
              % (counts["new"][0] / counts["base"][0], less_polls("new") / less_polls("base")))
    return 0


def main():
    zk, zkdir, tmp, root, rawsync = sys.argv[1:6]
    scout = os.environ.get("SCOUT") or os.path.join(root, "build", "scout")
    lua_new = os.environ.get("SCOUT_LUA_DIR") or os.path.join(root, "lua")
    base = os.environ.get("SCOUT_BASE", "")
    lua_base = os.environ.get("SCOUT_BASE_LUA_DIR") or (
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(base))), "lua") if base else "")
    cache = os.path.join(tmp, "cache")
    policy = os.path.join(tmp, "policy.lua")
    write_policy(policy, cache)
    kz = kazoo(zk)
    t = time.monotonic()
    populate(kz)
    kz.stop()
    kz.close()
    log("populated %d services x %d endpoints in %.1f s" % (SERVICES, ENDPOINTS, time.monotonic() - t))

    # warm-up: the agent's session count, the server's JIT
    w = run_agent(scout, lua_new, policy, zk, tmp, cache, "warm")
    nsess = int(SESSIONS) if SESSIONS else w[3]
    log("warm-up agent: %.2f s, CPU %.2f s, %d sessions" % (w[0], w[1], w[3]))
    run_raw(rawsync, zk, nsess)

    # "raw+json" is the raw client that also parses each child's JSON: the agent's decode is work a user needs
    # and rawsync does not do, so its share is printed apart (the agent's work is never lowered to match)
    contenders = [("raw", None, None), ("raw+json", None, "parse"), ("new", scout, lua_new)]
    if base:
        contenders.append(("base", base, lua_base))
    if CALLGRIND:
        return callgrind_sync(contenders, rawsync, zk, nsess, policy, tmp, cache)
    res = {c[0]: [] for c in contenders}
    for r in range(ROUNDS):
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for tag, binary, lua in order:
            load = loadavg()
            if binary is None:
                c0 = children_cpu()
                wall = run_raw(rawsync, zk, nsess, parse=lua == "parse")
                cpu = children_cpu() - c0
                res[tag].append((wall, cpu, 0.0))
                log("round %d %s: %.2f s, CPU %.2f s (%d sessions; load %s)" % (r + 1, tag, wall, cpu, nsess, load))
            else:
                wall, cpu, main_cpu, s, _, load_cpu = run_agent(binary, lua, policy, zk, tmp, cache, tag)
                res[tag].append((wall, cpu, load_cpu))
                log("round %d %s: %.2f s, CPU %.2f s (loop thread %.2f s; start and policy load %.2f s; "
                    "%d sessions; load %s)" % (r + 1, tag, wall, cpu, main_cpu, load_cpu, s, load))
                if s != nsess:
                    log("  %s opened %d sessions, rawsync %d" % (tag, s, nsess))
    perf_txt = ""
    if PERF:
        run_agent(scout, lua_new, policy, zk, tmp, cache, "new", perf="record")
        perf_txt = run_agent(scout, lua_new, policy, zk, tmp, cache, "new", perf="stat")[4]

    print()
    print("sync: %d services x %d endpoints, %d sessions, %d rounds (medians); %d CPUs, load avg %s"
          % (SERVICES, ENDPOINTS, nsess, ROUNDS, os.cpu_count(), loadavg()))
    rw, rc = med([x[0] for x in res["raw"]]), med([x[1] for x in res["raw"]])
    rjc = med([x[1] for x in res["raw+json"]])
    print("| contender | wall to synced | CPU to synced | wall / raw | CPU / raw | CPU after the policy load / raw "
          "| CPU after the policy load / raw+json |")
    print("|---|---|---|---|---|---|---|")
    for tag, _, _ in contenders:
        w_, c_ = med([x[0] for x in res[tag]]), med([x[1] for x in res[tag]])
        l_ = med([x[1] - x[2] for x in res[tag]])
        print("| %s | %.2f s | %.2f s | %.2fx | %.2fx | %.2fx | %.2fx |"
              % (tag, w_, c_, w_ / rw, c_ / rc, l_ / rc, l_ / rjc))
    if base:
        print("new / base: wall %.2fx, CPU %.2fx (medians); per round CPU: %s"
              % (med([x[0] for x in res["new"]]) / med([x[0] for x in res["base"]]),
                 med([x[1] for x in res["new"]]) / med([x[1] for x in res["base"]]),
                 ", ".join("%.2fx" % (n[1] / b[1]) for n, b in zip(res["new"], res["base"]))))
    if perf_txt:
        print(perf_txt)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        for a in list(LIVE):
            a.stop()

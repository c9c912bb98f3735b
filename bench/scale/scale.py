"""scale.py — 10,000 services x 10 endpoints benchmark driver (run by run.sh with /usr/bin/python3).

Why: issue 4 asks whether one agent holds a large registry: 10,000 services of 10 endpoints each
(100k znodes, every one with a data watch), synced fast, in little memory, publishing and
snapshotting quickly, surviving a ZooKeeper restart without a reconnect loop, and answering
from its disk snapshot at once on a cold start. Targets (issue 4): sync <= 5 s, RSS <= 150 MB,
publish <= 20 ms, cold start <= 100 ms, sessions reconnect cleanly. Benchmarks print; only
functional failures (not synced in 120 s, a wrong list, a session that never comes back, no
answer from the snapshot) exit non-zero.

Data: /scale/svc-NNNNN/ep-E, persistent, codec "plain" with JSON data named by id
({"host":"10.a.b.c","port":N,"weight":1}), so every endpoint costs a data read and a data
watch. Created with kazoo, one multi (parent + its 10 children) per service, pipelined
POPULATE_WINDOW transactions in flight. The policy (10,000 `service` blocks, cache dir in the
temp dir) is generated into the temp dir.

Phases, one agent at a time (each started by this driver, its pid recorded for run.sh):
  0. baseline: rawsync.c does the same 10k children + 100k data reads with watches over the
     same number of sessions with a bare libzookeeper_st client (after one warm-up run that
     also warms the server's JIT). Ratios in the table are scout / raw.
  1. sync (agent A, --log-level info, empty cache dir): Popen -> first 200 from GET /v1/health
     (polled every 20 ms); then every service must be "synced" with ENDPOINTS endpoints.
     The agent's on-CPU and run-queue wait (/proc/PID/schedstat) and the server's CPU over the
     same window are printed: this machine is shared, and run-queue wait says how much of the
     wall time was other processes. RSS: VmRSS/VmHWM right after sync and 3 s later (after
     the first snapshot write); from /proc/PID/smaps, [heap] (malloc's main arena) vs all
     anonymous mappings, the largest of which is LuaJIT's GC arena. PERF=1 attaches
     `perf record --call-graph dwarf` to the agent during the sync and again during the
     restart (phase 3) and prints the top symbols.
  2. publish (agent A): CHANGES single data changes, each on a random service, 50-400 ms
     apart (random phase against the agent's 1 s snapshot timer): a blocking query
     GET /v1/services/NAME?index=I&wait=30s is parked first, the clock starts just before the
     kazoo set, stops when the query returns with a larger X-Scout-Index. The kazoo set's own
     acknowledgement time is printed next to it. Then the loop stall a snapshot write causes:
     one change, then back-to-back GET /v1/services/svc-00000 for 1.5 s; the slowest answer.
  3. reconnect (agent A): a poller GETs /v1/services/svc-00001 every 20 ms throughout
     (never an empty or partial list; the slowest answer = how long the loop stalled).
     zk.sh stop-node; start-node while polling 4lw srvr every 10 ms (t_serving = first
     "Mode:"); then /v1/health polled until 200; then a fresh change (new kazoo client) and the
     blocking query that sees it. After RECOVER_S (5 s) of quiet: every session connected,
     scout_zk_reconnects_total moved by exactly the number of sessions, no new session, no
     expiry (a reconnect loop shows up as many more), the server log free of "Len error".
     Max scout_session_watch_bytes is printed with the SetWatches packet it implies
     (+4 bytes of length prefix per path).
  4. SIGTERM agent A: time to exit (it flushes the snapshot, closes the sessions).
  5. warm restart (agent B, same cache dir, ZooKeeper up): first answer of svc-00000 (from
     the snapshot, polled every 2 ms), first health 200, and every service "synced" in
     /v1/services (polled every 200 ms); how many services published again although nothing
     changed (sum of scout_service_publishes_total) and whether svc-00000's body changed.
     Then agent D, the same at --log-level debug, for the snapshot write times:
     PERSIST_SAMPLES changes 1.3 s apart, each makes the agent write the whole snapshot once
     ("persist: wrote N services to F in X ms (... encoded in E ms on the loop, K services re-encoded, committed in C
     ms by the writer thread)"); E is what the loop is blocked for. Debug is not used elsewhere: the ZooKeeper
     client then logs every request, which slows a re-read 2-3x.
     Then 20 more data changes while no agent runs: the snapshot no longer holds the truth.
  6. cold start (agents C1..Cn, ZooKeeper stopped, same cache dir): COLD_ROUNDS times: Popen
     -> first GET /v1/services/svc-00000 answering 200 with ENDPOINTS endpoints, state
     "stale" (polled every 1 ms). From the agent's log: Popen (wall clock) -> "persist:
     serving N services" -> "http: listening". `scout check` of the same policy (3 runs, the
     fastest) is printed as what loading the policy alone costs.
  7. ZooKeeper back (last cold agent kept): start-node, t_serving -> every service synced,
     and every endpoint changed in phases 2-5 (the last 20 unknown to the snapshot) must be
     what ZooKeeper holds.

Memory (issue 14): before the populate, an agent on the same policy with none of its paths
(MEM_EMPTY=1, the default) gives the services' own cost; after the sync (phase 1), bytes per
endpoint: VmRSS, malloc's [heap], LuaJIT's count (scout_lua_memory_bytes), each over
SERVICES x ENDPOINTS, against rawsync's VmHWM at the same size, and with the services' cost
taken out; then malloc's own count (MALLOC_STATS=1, the default: glibc's malloc_stats() called
in the agent by gdb, measure.py says why not a metric): the bytes handed out, which do not move
with where the sync's garbage left holes, as VmRSS does. LISTS=1: then every service's list is asked once and the growth per endpoint printed
(what a list keeps: each endpoint's JSON and the service's joined list for its index).

Env: SERVICES (10000), ENDPOINTS (10), SESSIONS (unset: the agent's default, 1 per 2,000
     services), SESSION_TIMEOUT_MS (10000), CHANGES (100), MEM_EMPTY (1), STOP_AFTER (unset; "reconnect": phases 0-4; "memory": 0-1), PERSIST_SAMPLES (5), COLD_ROUNDS (3), RECOVER_S (5),
     MALLOC_STATS (1), POPULATE_WINDOW (1000), SYNC_TIMEOUT_S (120), PERF (0; "restart": phase 3 only), RAW_WARMUP (1;
     0 skips the raw client's warm-up run), SCOUT, SCOUT_LUA_DIR.
"""

import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import pct, UnixHTTP  # noqa: E402
from config import (CHANGES, COLD_ROUNDS, ENDPOINTS, FAILURES, PERF, PERF_SYNC, PERSIST_SAMPLES,  # noqa: E402,F401
                    POPULATE_WINDOW, RECOVER_S, ROOT_PATH, SERVICES, SESSIONS, SESSION_TIMEOUT_MS,
                    SYNC_TIMEOUT_S, ep_data, fail, log, svc_name)
from measure import (cpu_s, loadavg, malloc_stats, memory_probe, perf_start, perf_stop,  # noqa: E402,F401
                     schedstat, smaps_split, status_kb)
from zkutil import kazoo, mntr, serving  # noqa: E402,F401
from agent import (LIVE, LOAD_RETRIES, Agent, log_ts, memory_empty, on_signal,  # noqa: E402,F401
                   start_agent, warnings_of)
from report import malloc_row, memory_rows, print_rows_so_far  # noqa: E402


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    zk, zkdir, tmp, root, rawsync = sys.argv[1:6]
    zk_port = int(zk.split(",")[0].rsplit(":", 1)[1])
    zk_pid = int(open(os.path.join(zkdir, "node1", "pid")).read())
    zksh = os.path.join(root, "scripts", "zk.sh")
    scout = os.environ.get("SCOUT") or os.path.join(root, "build", "scout")
    cache = os.path.join(tmp, "cache")
    rows = []          # (measure, value, target, ratio)
    notes = []
    t_run = time.monotonic()

    # -- policy ------------------------------------------------------------------
    policy = os.path.join(tmp, "policy.lua")
    with open(policy, "w") as f:
        f.write("-- generated by bench/scale/scale.py: %d services x %d endpoints\n"
                % (SERVICES, ENDPOINTS))
        f.write('zookeeper { servers = "x:1"%s%s }  -- --zk overrides servers\n'
                % (", sessions = %d" % int(SESSIONS) if SESSIONS else "",
                   ", session_timeout = %d" % int(SESSION_TIMEOUT_MS) if SESSION_TIMEOUT_MS else ""))
        f.write('cache { dir = "%s" }\n' % cache)
        if SERVICES <= 20000:
            for i in range(SERVICES):
                f.write('service "%s" { path = "%s/%s", codec = "plain" }\n'
                        % (svc_name(i), ROOT_PATH, svc_name(i)))
        else:
            # a chunk holds at most 65,536 constants (LuaJIT): 100,000 literal service blocks
            # do not load; a generated registry is written as a loop
            f.write('for i = 0, %d do\n  local n = string.format("svc-%%05d", i)\n'
                    '  service(n) { path = "%s/" .. n, codec = "plain" }\nend\n'
                    % (SERVICES - 1, ROOT_PATH))
    checks, over = [], 0
    for _ in range(3 + LOAD_RETRIES):
        t = time.monotonic()
        r = subprocess.run([scout, "check", policy], capture_output=True, text=True)
        if r.returncode != 0 and "budget" in r.stdout + r.stderr:
            over += 1               # the wall-clock load budget on a loaded machine: see start_agent
            continue
        if r.returncode != 0:
            raise SystemExit("scale: scout check failed: %s%s" % (r.stdout, r.stderr))
        checks.append(time.monotonic() - t)
        if len(checks) == 3:
            break
    if not checks:
        raise SystemExit("scale: scout check passed its load budget %d times (load average %s)"
                         % (over, loadavg()))
    log("policy: %d services, %d bytes; scout check %.0f ms (fastest of %d; %d over the load budget)"
        % (SERVICES, os.path.getsize(policy), min(checks) * 1000, len(checks), over))

    # ZK_DATA (run.sh): a kept dataDir may already hold this registry; its last service
    # with every endpoint says the populate finished (they are created in order)
    kz = kazoo(zk)
    last = "%s/%s" % (ROOT_PATH, svc_name(SERVICES - 1))
    reused = (kz.exists(last) is not None and len(kz.get_children(last)) == ENDPOINTS
              and kz.exists("%s/%s" % (ROOT_PATH, svc_name(SERVICES))) is None)
    mem_empty = None
    if not reused and os.environ.get("MEM_EMPTY", "1") == "1":
        mem_empty = memory_empty(scout, policy, zk, tmp)

    # -- populate ------------------------------------------------------------------
    kz.ensure_path(ROOT_PATH)
    t = time.monotonic()
    if reused:
        to_create = 0
        log("ZK_DATA: the registry is already there (%s has %d children): no populate, no "
            "services-only memory probe" % (last, ENDPOINTS))
    else:
        to_create = SERVICES
    inflight = []
    for s in range(to_create):
        tx = kz.transaction()
        p = "%s/%s" % (ROOT_PATH, svc_name(s))
        tx.create(p)
        for e in range(ENDPOINTS):
            tx.create("%s/ep-%d" % (p, e), ep_data(s, e))
        inflight.append(tx.commit_async())
        if len(inflight) >= POPULATE_WINDOW:
            for a in inflight[:POPULATE_WINDOW // 2]:
                res = a.get(timeout=60)
                if any(isinstance(x, Exception) for x in res):
                    raise SystemExit("scale: populate failed: %r" % res)
            inflight = inflight[POPULATE_WINDOW // 2:]
    for a in inflight:
        res = a.get(timeout=60)
        if any(isinstance(x, Exception) for x in res):
            raise SystemExit("scale: populate failed: %r" % res)
    populate_s = time.monotonic() - t
    znodes = int(mntr(zk_port).get("zk_znode_count", "0"))
    log("populated %d znodes (%d services x (1 + %d)) in %.2f s: kazoo, one multi per service, "
        "%d in flight; server znode count %d"
        % (SERVICES * (ENDPOINTS + 1), SERVICES, ENDPOINTS, populate_s, POPULATE_WINDOW, znodes))
    if znodes < SERVICES * (ENDPOINTS + 1):
        raise SystemExit("scale: the server holds only %d znodes" % znodes)

    # -- 0. baseline -----------------------------------------------------------------
    nsess = int(SESSIONS) if SESSIONS else 1 + SERVICES // 2000
    raw = None
    for run in (("warm-up", "measured") if os.environ.get("RAW_WARMUP", "1") == "1" else ("measured",)):
        t = time.monotonic()
        r = subprocess.run([rawsync, zk, ROOT_PATH, str(SERVICES), str(nsess)],
                           capture_output=True, text=True, timeout=SYNC_TIMEOUT_S + 60,
                           env=dict(os.environ, RAWSYNC_TIMEOUT_S=str(int(SYNC_TIMEOUT_S))))
        if r.returncode != 0 or not r.stdout.startswith("done"):
            raise SystemExit("scale: rawsync failed: %s%s" % (r.stdout, r.stderr))
        f = r.stdout.split()
        raw = {"total_s": int(f[1]) / 1e9, "reads_s": int(f[2]) / 1e9, "children": int(f[3]),
               "data": int(f[4]), "hwm_kb": int(f[6])}
        log("rawsync %s: %.2f s (%d children + %d data reads over %d sessions), VmHWM %.1f MB"
            % (run, raw["total_s"], raw["children"], raw["data"], nsess, raw["hwm_kb"] / 1024))
        if raw["data"] != SERVICES * ENDPOINTS:
            raise SystemExit("scale: rawsync read %d data nodes" % raw["data"])
    time.sleep(1)

    # -- 1. sync ---------------------------------------------------------------------
    load0 = loadavg()
    zk_cpu0 = cpu_s(zk_pid)
    a = start_agent(scout, policy, zk, tmp, "a", notes)
    perf = None
    if PERF_SYNC:                   # attach at once: the policy load is part of the sync
        perf = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", "dwarf,16384",
                                 "-o", os.path.join(tmp, "perf-sync.data"), "-p", str(a.pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(tmp, "pids"), "a") as f:
            f.write("%d\n" % perf.pid)
    deadline = a.t0 + SYNC_TIMEOUT_S
    first_answer = None
    sync_s = None
    while time.monotonic() < deadline:
        if not a.alive():
            raise SystemExit("scale: agent exited during sync:\n" + a.log_tail())
        try:
            st, _, _ = a.get("/v1/health", timeout=10)
            if first_answer is None:
                first_answer = time.monotonic() - a.t0
            if st == 200:
                sync_s = time.monotonic() - a.t0
                break
        except OSError:
            pass
        time.sleep(0.02)
    run_s, wait_s = schedstat(a.pid)
    zk_cpu = cpu_s(zk_pid) - zk_cpu0
    perf_note = perf_stop(perf, tmp, "sync", "agent A from start to health 200")
    if sync_s is None:
        fail("not every service synced within %.0f s" % SYNC_TIMEOUT_S)
        raise SystemExit(1)
    rss_sync, hwm_sync = status_kb(a.pid, "VmRSS"), status_kb(a.pid, "VmHWM")
    st, _, body = a.get("/v1/services")
    svcs = json.loads(body)
    bad = [s for s in svcs if s["state"] != "synced" or s["endpoints"] != ENDPOINTS]
    if len(svcs) != SERVICES or bad:
        fail("after health 200: %d services listed, %d not synced with %d endpoints (e.g. %r)"
             % (len(svcs), len(bad), ENDPOINTS, bad[:2]))
    m_sync = a.metrics()
    log("sync: health 200 after %.2f s (first answer %.3f s); agent on-CPU %.2f s, run-queue "
        "wait %.2f s; server CPU %.2f s; load average %s at start"
        % (sync_s, first_answer or -1, run_s, wait_s, zk_cpu, load0))
    time.sleep(3)
    rss_after, hwm_after = status_kb(a.pid, "VmRSS"), status_kb(a.pid, "VmHWM")
    heap_kb, anon_kb, arena_kb = smaps_split(a.pid)
    rows.append(("initial sync (start -> health 200)", "%.2f s" % sync_s, "<= 5 s",
                 "%.2fx target; %.2fx raw client (%.2f s)" % (sync_s / 5.0, sync_s / raw["total_s"],
                                                             raw["total_s"])))
    rows.append(("  agent CPU during sync", "%.2f s on-CPU, %.2f s run-queue wait" % (run_s, wait_s),
                 "", "server CPU %.2f s, load avg %s" % (zk_cpu, load0)))
    rows.append(("RSS after sync (VmRSS / VmHWM)", "%.1f / %.1f MB" % (rss_after / 1024, hwm_after / 1024),
                 "<= 150 MB", "%.2fx target; raw client %.1f MB" % (hwm_after / 1024 / 150.0,
                                                                  raw["hwm_kb"] / 1024)))
    rows.append(("  of which [heap] / anonymous maps", "%.1f / %.1f MB" % (heap_kb / 1024, anon_kb / 1024),
                 "", "largest anonymous map (LuaJIT arena) %.1f MB; RSS right at sync %.1f MB"
                 % (arena_kb / 1024, rss_sync / 1024)))
    if perf_note:
        notes.append(perf_note)
    mem = memory_probe(a)
    rows.extend(memory_rows(mem, mem_empty, raw["hwm_kb"]))
    if os.environ.get("MALLOC_STATS", "1") == "1":
        ms = malloc_stats(a)         # stops the agent ~1 s: after the other figures
        rows.append(malloc_row(ms))
    if os.environ.get("LISTS") == "1":
        # what a list asked once keeps: each endpoint's JSON (endpoint.c) and the service's
        # joined list for its index (service.c), until the endpoint or the index changes
        for k in range(SERVICES):
            st, _, _ = a.get("/v1/services/svc-%05d" % k)
            if st != 200:
                fail("GET /v1/services/svc-%05d: %d" % (k, st))
                break
        time.sleep(3)
        after = memory_probe(a)
        n = float(SERVICES * ENDPOINTS)
        rows.append(("  after every service's list asked once (LISTS=1)",
                     "%.1f MB RSS, [heap] %.1f MB" % (after["rss"] / 1024.0, after["heap"] / 1024.0), "",
                     "+%.0f B per endpoint RSS, +%.0f B [heap]" % ((after["rss"] - mem["rss"]) * 1024.0 / n,
                                                                   (after["heap"] - mem["heap"]) * 1024.0 / n)))
    if os.environ.get("STOP_AFTER") == "memory":     # phases 0-1 only: the memory rows
        wa = warnings_of(a)
        a.stop()
        return print_rows_so_far(rows, notes, wa, populate_s, raw, nsess, t_run)

    # -- 2. publish ------------------------------------------------------------------
    lat, acks = [], []
    changed = {}            # path -> data, to check at the end
    rnd = random.Random(42)
    for k in range(CHANGES):
        s, e = rnd.randrange(SERVICES), rnd.randrange(ENDPOINTS)
        name = svc_name(s)
        st, h, _ = a.get("/v1/services/" + name)
        idx = int(h["x-scout-index"])
        c = UnixHTTP(a.sock, 60)
        c.request("GET", "/v1/services/%s?index=%d&wait=30s" % (name, idx))
        time.sleep(0.002)                   # parked before the write (either way correct)
        path = "%s/%s/ep-%d" % (ROOT_PATH, name, e)
        data = ep_data(s, e, gen=k + 1)
        t0 = time.monotonic()
        kz.set(path, data)
        t1 = time.monotonic()
        r = c.getresponse()
        body = r.read()
        t2 = time.monotonic()
        c.close()
        changed[path] = data
        if int(r.getheader("X-Scout-Index")) <= idx:
            fail("blocking query on %s returned without a new index" % name)
            continue
        ep = [x for x in json.loads(body) if x["id"] == "ep-%d" % e]
        if not ep or ep[0]["port"] != json.loads(data)["port"]:
            fail("%s: the change is not in the answer" % path)
        lat.append((t2 - t0) * 1000)
        acks.append((t1 - t0) * 1000)
        time.sleep(rnd.uniform(0.05, 0.4))
    over = sum(1 for x in lat if x > 20)
    rows.append(("change -> API publication (blocking query)",
                 "p50 %.1f / p90 %.1f / p99 %.1f / max %.1f ms" % (pct(lat, .5), pct(lat, .9),
                                                                  pct(lat, .99), max(lat)),
                 "<= 20 ms", "p50 %.2fx target; %d of %d over 20 ms; kazoo write ack p50 %.1f ms"
                 % (pct(lat, .5) / 20, over, len(lat), pct(acks, .5))))
    # the loop stall of one snapshot write
    s = 1
    path = "%s/%s/ep-0" % (ROOT_PATH, svc_name(s))
    data = ep_data(s, 0, gen=9999)
    kz.set(path, data)
    changed[path] = data
    worst, n, t_end = 0.0, 0, time.monotonic() + 1.5
    c = UnixHTTP(a.sock, 10)
    while time.monotonic() < t_end:
        t = time.monotonic()
        c.request("GET", "/v1/services/svc-00000")
        c.getresponse().read()
        worst = max(worst, time.monotonic() - t)
        n += 1
    c.close()
    rows.append(("API stall while a snapshot is written", "%.1f ms (slowest of %d GETs in 1.5 s)"
                 % (worst * 1000, n), "", "the encoding runs on the loop, the commit in a thread"))

    # -- 3. reconnect ------------------------------------------------------------------
    kz.stop()
    kz.close()
    m0 = a.metrics()
    log_mark = len(a.log_lines())
    poll = {"n": 0, "worst": 0.0, "bad": [], "states": {}, "errors": 0, "stop": False}

    def poller():
        c = None
        while not poll["stop"]:
            t = time.monotonic()
            try:
                if c is None:
                    c = UnixHTTP(a.sock, 30)
                c.request("GET", "/v1/services/svc-00001")
                r = c.getresponse()
                body = r.read()
                dt = time.monotonic() - t
                poll["n"] += 1
                poll["worst"] = max(poll["worst"], dt)
                stt = r.getheader("X-Scout-State")
                poll["states"][stt] = poll["states"].get(stt, 0) + 1
                eps = json.loads(body)
                if r.status != 200 or len(eps) != ENDPOINTS:
                    poll["bad"].append((r.status, len(eps)))
            except (OSError, http.client.HTTPException, ValueError):
                poll["errors"] += 1
                if c is not None:
                    c.close()
                c = None
            time.sleep(0.02)
        if c is not None:
            c.close()

    th = threading.Thread(target=poller, daemon=True)
    th.start()
    perf = perf_start(a.pid, tmp, "restart")
    time.sleep(0.5)
    t_stop = time.monotonic()
    subprocess.run([zksh, "stop-node", zkdir, "1"], check=True)
    t_stopped = time.monotonic()
    time.sleep(0.5)
    h = a.get("/v1/health")
    down_health = (h[0], json.loads(h[2]).get("reason", ""))
    zk_start = subprocess.Popen([zksh, "start-node", zkdir, "1"], stdout=subprocess.DEVNULL)
    t_launch = time.monotonic()
    t_serving = None
    while time.monotonic() - t_launch < 120:
        if serving(zk_port):
            t_serving = time.monotonic()
            break
        time.sleep(0.01)
    if t_serving is None:
        raise SystemExit("scale: ZooKeeper did not come back")
    zk_pid = int(open(os.path.join(zkdir, "node1", "pid")).read())
    t_health = None
    while time.monotonic() - t_serving < 60:
        try:
            if a.get("/v1/health", timeout=10)[0] == 200:
                t_health = time.monotonic()
                break
        except OSError:
            pass
        time.sleep(0.02)
    if t_health is None:
        fail("health not 200 within 60 s of ZooKeeper serving again:\n" + a.log_tail())
    kz = kazoo(zk)
    s, e = 4242 % SERVICES, 3
    name = svc_name(s)
    st, hd, _ = a.get("/v1/services/" + name)
    idx = int(hd["x-scout-index"])
    c = UnixHTTP(a.sock, 60)
    c.request("GET", "/v1/services/%s?index=%d&wait=30s" % (name, idx))
    time.sleep(0.002)
    path = "%s/%s/ep-%d" % (ROOT_PATH, name, e)
    data = ep_data(s, e, gen=7777)
    t_w = time.monotonic()
    kz.set(path, data)
    r = c.getresponse()
    r.read()
    t_seen = time.monotonic()
    c.close()
    changed[path] = data
    if int(r.getheader("X-Scout-Index")) <= idx:
        fail("the change after the restart was not published")
    zk_start.wait(timeout=60)
    time.sleep(RECOVER_S)
    poll["stop"] = True
    th.join(timeout=10)
    perf_note = perf_stop(perf, tmp, "restart", "agent A from ZK stop to %.0f s after the change" % RECOVER_S)
    if perf_note:
        notes.append(perf_note)
    m1 = a.metrics()
    d = lambda k: m1.get(k, 0) - m0.get(k, 0)
    # every session the agent has: the base ones and the pool sessions for data watches
    # (zk/spread.c), which /metrics lists after them; each must reconnect exactly once
    nall = sum(1 for k in m1 if k.startswith("scout_session_connected{"))
    connected = [m1.get('scout_session_connected{session="%d"}' % i, 0) for i in range(nall)]
    wbytes = [int(m1.get('scout_session_watch_bytes{session="%d"}' % i, 0)) for i in range(nall)]
    lines = a.log_lines()[log_mark:]
    reconnected = sum(1 for ln in lines if "session: reconnected to session" in ln)
    established = sum(1 for ln in lines if "session: established session" in ln)
    lost = sum(1 for ln in lines if "connection lost" in ln)
    deadline_lines = [int(x) for ln in lines for x in re.findall(r"Exceeded deadline by (\d+)ms", ln)]
    zklog = open(os.path.join(zkdir, "node1", "server.log"), errors="replace").read()
    len_errors = zklog.count("Len error")
    if not all(connected):
        fail("sessions not connected %.0f s after the restart: %r" % (RECOVER_S, connected))
    if d("scout_zk_reconnects_total") != nall or d("scout_zk_sessions_created_total") != 0 \
            or d("scout_zk_session_expirations_total") != 0:
        fail("reconnect not clean: reconnects +%d (want %d), sessions created +%d, expirations +%d"
             % (d("scout_zk_reconnects_total"), nall, d("scout_zk_sessions_created_total"),
                d("scout_zk_session_expirations_total")))
    if len_errors:
        fail("the server refused %d packets (Len error: SetWatches over jute.maxbuffer)" % len_errors)
    if poll["bad"]:
        fail("%d empty or partial answers during the restart: %r" % (len(poll["bad"]), poll["bad"][:3]))
    rows.append(("reconnect: ZK serving -> health 200",
                 "%.2f s" % (t_health - t_serving) if t_health is not None else "not within 60 s", "",
                 "ZK down %.2f s (stop %.2f s), restart to serving %.2f s"
                 % (t_serving - t_stop, t_stopped - t_stop, t_serving - t_launch)))
    rows.append(("reconnect: ZK serving -> fresh change visible", "%.2f s" % (t_seen - t_serving), "",
                 "the change itself %.1f ms (written at health 200 + new kazoo session)"
                 % ((t_seen - t_w) * 1000)))
    rows.append(("reconnect: sessions", "%d/%d connected, %d reconnects, %d new, %d expired"
                 % (sum(1 for x in connected if x), nall, d("scout_zk_reconnects_total"),
                    d("scout_zk_sessions_created_total"), d("scout_zk_session_expirations_total")),
                 "clean", "log: %d 'connection lost', %d 'reconnected', %d 'established'; server "
                 "'Len error' %d" % (lost, reconnected, established, len_errors)))
    rows.append(("max watch bytes per session", "%.0f KB (metric)" % (max(wbytes) / 1024.0),
                 "well under 1 MB", "%.2fx 1 MB (the metric counts each path's 4-byte length "
                 "prefix: it is the SetWatches size); %d sessions, %d of them pool"
                 % (max(wbytes) / 1048576.0, nall, nall - nsess)))
    rows.append(("API during the restart (poll every 20 ms)",
                 "slowest answer %.0f ms" % (poll["worst"] * 1000), "never empty",
                 "%d answers, %d empty/partial, %d errors, states %s; health while down: %d %s"
                 % (poll["n"], len(poll["bad"]), poll["errors"],
                    ",".join("%s=%d" % kv for kv in sorted(poll["states"].items())),
                    down_health[0], down_health[1][:40])))
    if deadline_lines:
        notes.append("zookeeper client 'Exceeded deadline by N ms' during the restart (the loop was "
                     "blocked that long): %s" % ", ".join(map(str, deadline_lines)))
    notes.append("after the reconnect: %+d children reads, %+d data reads (anti-entropy re-lists every "
                 "service within ~1 s of a reconnect), %+d anti-entropy repairs"
                 % (d("scout_zk_requests_total{op=\"children\"}"), d("scout_zk_requests_total{op=\"data\"}"),
                    sum(v for k, v in m1.items() if k == "scout_anti_entropy_repairs_total")
                    - sum(v for k, v in m0.items() if k == "scout_anti_entropy_repairs_total")))
    wa = warnings_of(a)

    # -- 4. SIGTERM ---------------------------------------------------------------------
    exit_a = a.stop()
    snap = os.path.join(cache, "scout.snapshot")
    snap_size = os.path.getsize(snap) if os.path.exists(snap) else 0
    if not snap_size:
        fail("no snapshot in %s after SIGTERM" % cache)
    lines = a.log_lines()
    t_sig = next((log_ts(ln) for ln in lines if "signal 15" in ln), None)
    t_stp = next((log_ts(ln) for ln in lines if "main: stopped" in ln), None)
    rows.append(("SIGTERM -> exit (agent A)", "%.2f s" % exit_a, "",
                 "log 'signal' -> 'stopped' %s; snapshot %.1f MB"
                 % ("%.0f ms" % ((t_stp - t_sig) * 1000) if t_sig and t_stp else "n/a",
                    snap_size / 1048576.0)))

    if os.environ.get("STOP_AFTER") == "reconnect":
        return print_rows_so_far(rows, notes, wa, populate_s, raw, nsess, t_run)

    # -- 5. warm restart (info), then snapshot write times (debug) --------------------
    def warm(tag, level):
        """Start an agent on the snapshot with ZooKeeper up; (agent, first answer (s, state,
        index, body) of svc-00000, health 200 s, every service synced s)."""
        b = Agent(scout, policy, zk, tmp, tag, level=level)
        first = None
        t_h = t_all = None
        while time.monotonic() - b.t0 < SYNC_TIMEOUT_S and t_all is None:
            if not b.alive():
                raise SystemExit("scale: agent %s exited:\n%s" % (tag, b.log_tail()))
            try:
                if first is None:
                    st, hd, body = b.get("/v1/services/svc-00000", timeout=10)
                    if st == 200 and len(json.loads(body)) == ENDPOINTS:
                        first = (time.monotonic() - b.t0, hd.get("x-scout-state"),
                                 int(hd["x-scout-index"]), body)
                    time.sleep(0.002)
                    continue
                if t_h is None and b.get("/v1/health", timeout=10)[0] == 200:
                    t_h = time.monotonic() - b.t0
                if b.all_synced():      # 10k-entry JSON: not too often
                    t_all = time.monotonic() - b.t0
            except OSError:
                pass
            time.sleep(0.2)
        if t_all is None:
            fail("%s: not every service synced within %.0f s of a restart" % (tag, SYNC_TIMEOUT_S))
        return b, first, t_h, t_all

    b, first, t_h, t_all = warm("b", "info")
    republished = b.service_metric_sum("scout_service_publishes_total")
    st, hd, body = b.get("/v1/services/svc-00000")
    same_body = first is not None and body == first[3]
    rows.append(("restart on the snapshot, ZK up: first answer", "%.0f ms (%s)" % (first[0] * 1000, first[1])
                 if first else "none", "", "every service synced after %.2f s" % (t_all or -1)))
    rows.append(("  health 200 vs every service synced", "%.2f s vs %.2f s" % (t_h or -1, t_all or -1),
                 "", "health says 200 while services still serve the snapshot as stale"
                 if t_h is not None and t_all is not None and t_h < t_all - 0.3 else ""))
    rows.append(("  publishes while re-reading unchanged data", "%d of %d services" % (republished, SERVICES),
                 "0 (real diff)", "svc-00000: index %d -> %s, body %s" % (
                     first[2] if first else -1, hd.get("x-scout-index"),
                     "identical" if same_body else "different")))
    wb = warnings_of(b)
    exit_b = b.stop()

    # debug level for "persist: wrote N services ... in X ms"; its ZooKeeper client logs every
    # request then, so its own re-read is slow and not measured
    b, _, _, t_all_d = warm("d", "debug")
    mark = len(b.log_lines())
    for k in range(PERSIST_SAMPLES):
        s = rnd.randrange(SERVICES)
        path = "%s/%s/ep-0" % (ROOT_PATH, svc_name(s))
        data = ep_data(s, 0, gen=5000 + k)
        kz.set(path, data)
        changed[path] = data
        time.sleep(1.3)
    writes = []
    for ln in b.log_lines()[mark:]:
        m = re.search(r"persist: wrote (\d+) services to \S+ in ([\d.]+) ms .*encoded in "
                      r"([\d.]+) ms on the loop, (?:\d+ services? re-encoded, )?committed in ([\d.]+) ms", ln)
        if m:
            writes.append((int(m.group(1)), float(m.group(2)), float(m.group(3)),
                           float(m.group(4))))
    full = [w for w in writes if w[0] == SERVICES]
    if full:
        on_loop = [w[2] for w in full]
        commit = [w[3] for w in full]
        rows.append(("snapshot write: time on the loop (%d services)" % SERVICES,
                     "p50 %.1f / max %.1f ms (%d writes)" % (pct(on_loop, .5), max(on_loop), len(full)),
                     "<= 20 ms", "%.2fx target (p50); encoding the published state"
                     % (pct(on_loop, .5) / 20)))
        rows.append(("  commit in the writer thread (%d endpoints)" % (SERVICES * ENDPOINTS),
                     "p50 %.1f / max %.1f ms" % (pct(commit, .5), max(commit)), "",
                     "temp file + fsync + rename + dir fsync, off the loop"))
    else:
        fail("no 'persist: wrote %d services' line after %d changes" % (SERVICES, PERSIST_SAMPLES))
    exit_d = b.stop()
    # a different truth: changes the snapshot does not have (cold agents serve the old data;
    # after ZooKeeper is back they must converge to these)
    for k in range(20):
        s = 2 + rnd.randrange(SERVICES - 2)
        path = "%s/%s/ep-%d" % (ROOT_PATH, svc_name(s), rnd.randrange(ENDPOINTS))
        data = ep_data(s, 0, gen=6000 + k)
        kz.set(path, data)
        changed[path] = data
    kz.stop()
    kz.close()

    # -- 6. cold start -------------------------------------------------------------------
    subprocess.run([zksh, "stop-node", zkdir, "1"], check=True)
    colds = []
    c_agent = None
    # Every round on the same command line (the same API socket), as a user's restart: the side file that lets a
    # start answer from the disk snapshot before its policy is loaded names the command line it was made for.
    # Round 0 only makes it (the agents before ran on other sockets) and is not counted.
    for k in range(COLD_ROUNDS + 1):
        if c_agent is not None:
            c_agent.stop()
        c_agent = Agent(scout, policy, zk, tmp, "cold")
        ok = None
        while time.monotonic() - c_agent.t0 < 10:
            try:
                st, hd, body = c_agent.get("/v1/services/svc-00000", timeout=5)
                if st == 200 and len(json.loads(body)) == ENDPOINTS:
                    ok = (time.monotonic() - c_agent.t0, hd.get("x-scout-state"))
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.001)
        if ok is None:
            fail("cold start %d: no answer with %d endpoints within 10 s:\n%s"
                 % (k, ENDPOINTS, c_agent.log_tail()))
            break
        if ok[1] != "stale":
            fail("cold start %d: state %s, want stale" % (k, ok[1]))
        time.sleep(0.2)
        lines = c_agent.log_lines()
        # an early start serves (and listens) before its policy is loaded: its own line says when
        t_early = next((log_ts(ln) for ln in lines if "serving the disk snapshot of" in ln), None)
        t_serve = t_early or next((log_ts(ln) for ln in lines if "persist: serving" in ln), None)
        t_listen = t_early or next((log_ts(ln) for ln in lines if "http: listening" in ln), None)
        served = next((ln.split("serving ", 1)[1].split(" ", 1)[0] for ln in lines
                       if "persist: serving" in ln), "?")
        if k == 0:
            continue
        colds.append((ok[0], (t_serve - c_agent.wall0) if t_serve else None,
                      (t_listen - c_agent.wall0) if t_listen else None, served))
    if colds:
        best = min(colds)
        med = sorted(colds)[len(colds) // 2]
        rows.append(("cold start (ZK down): start -> svc-00000 answered",
                     "median %.0f ms, best %.0f ms (%d runs)" % (med[0] * 1000, best[0] * 1000, len(colds)),
                     "<= 100 ms", "%.2fx target (median); state stale, %s services served"
                     % (med[0] / 0.1, med[3])))
        rows.append(("  agent log: start -> 'serving N services' / 'listening'",
                     "%s / %s ms" % ("%.0f" % (med[1] * 1000) if med[1] is not None else "n/a",
                                     "%.0f" % (med[2] * 1000) if med[2] is not None else "n/a"),
                     "", "scout check of the same policy alone: %.0f ms" % (min(checks) * 1000)))
        h = c_agent.get("/v1/health")
        notes.append("cold start with ZooKeeper down: health %d %s" % (h[0], h[2].decode()[:120]))

    # -- 7. ZooKeeper back ---------------------------------------------------------------
    if c_agent is not None and c_agent.alive():
        zk_start = subprocess.Popen([zksh, "start-node", zkdir, "1"], stdout=subprocess.DEVNULL)
        t_launch = time.monotonic()
        t_serving = None
        while time.monotonic() - t_launch < 120:
            if serving(zk_port):
                t_serving = time.monotonic()
                break
            time.sleep(0.01)
        zk_start.wait(timeout=60)
        t_h = t_all = None
        while t_serving and time.monotonic() - t_serving < SYNC_TIMEOUT_S and t_all is None:
            try:
                if t_h is None and c_agent.get("/v1/health", timeout=10)[0] == 200:
                    t_h = time.monotonic()
                if c_agent.all_synced():
                    t_all = time.monotonic()
            except OSError:
                pass
            time.sleep(0.05)
        if t_all is None:
            fail("after the cold start, not synced within %.0f s of ZooKeeper serving" % SYNC_TIMEOUT_S)
        else:
            rows.append(("cold start, then ZK back: serving -> all synced", "%.2f s" % (t_all - t_serving),
                         "", "health 200 after %.2f s; new sessions re-read everything (1 s jitter)"
                         % ((t_h or t_all) - t_serving)))
            kz = kazoo(zk)
            wrong = 0
            for path, data in changed.items():
                name, ep = path.split("/")[2], path.split("/")[3]
                st, _, body = c_agent.get("/v1/services/" + name)
                got = [x for x in json.loads(body) if x["id"] == ep]
                want = json.loads(kz.get(path)[0])
                if not got or got[0]["port"] != want["port"] or got[0]["host"] != want["host"]:
                    wrong += 1
            kz.stop()
            kz.close()
            if wrong:
                fail("%d of %d changed endpoints differ from ZooKeeper after convergence"
                     % (wrong, len(changed)))
            notes.append("after convergence: %d changed endpoints checked against ZooKeeper, %d differ"
                         % (len(changed), wrong))
        wc = warnings_of(c_agent)
        c_agent.stop()
    else:
        wc = {}

    # -- report --------------------------------------------------------------------------
    print()
    print("scale: %d services x %d endpoints = %d data znodes under %s (codec plain, JSON data, "
          "data watches), %d sessions; ZooKeeper standalone on loopback; %d CPUs, load avg %s"
          % (SERVICES, ENDPOINTS, SERVICES * ENDPOINTS, ROOT_PATH, nsess, os.cpu_count(), loadavg()))
    print("populate: %d znodes in %.2f s (kazoo, one multi of 1 + %d creates per service, %d "
          "multis in flight, %.0f znodes/s)" % (SERVICES * (ENDPOINTS + 1), populate_s, ENDPOINTS,
                                                 POPULATE_WINDOW, SERVICES * (ENDPOINTS + 1) / populate_s))
    print("baseline: rawsync (bare libzookeeper_st, same reads and watches, nothing decoded or "
          "kept) %.2f s, VmHWM %.1f MB" % (raw["total_s"], raw["hwm_kb"] / 1024.0))
    print()
    hdr = ("measure", "result", "target", "ratio / detail")
    widths = [max(len(hdr[i]), *(len(r[i]) for r in rows)) for i in range(3)]
    fmt = lambda r: " | ".join([r[i].ljust(widths[i]) for i in range(3)] + [r[3]])
    print(fmt(hdr))
    print("-+-".join("-" * w for w in widths) + "-+-" + "-" * 20)
    for r in rows:
        print(fmt(r))
    print()
    for n in notes:
        print("- " + n)
    for tag, w in (("agent A (sync, publish, reconnect)", wa), ("agent B (warm restart)", wb),
                   ("cold agents", wc)):
        if w:
            print("- WARN/ERROR lines, %s:" % tag)
            for shape, cnt in sorted(w.items(), key=lambda kv: -kv[1])[:8]:
                print("    %5d  %s" % (cnt, shape[:120]))
    print("- SIGTERM -> exit: agent B %.2f s, agent D %.2f s; wall %.0f s"
          % (exit_b, exit_d, time.monotonic() - t_run))
    if FAILURES:
        print()
        for f in FAILURES:
            print("FAILED: " + f.splitlines()[0])
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        for a in list(LIVE):
            a.stop()

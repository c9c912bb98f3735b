"""perchange.py — what one change costs the agent at 100, 1,000 and 10,000 services (run by run.sh with
PERCHANGE=1, /usr/bin/python3).

Why: issue 14 item 1 asks that a change to one endpoint of one service cost the loop the same whatever the
registry's size: no re-encoding of every service for the disk snapshot or the shared-memory snapshot on each
publication. This driver shows it side by side, as ratios to the 100-service row of the same run; issue 10 item 6
asks that the outputs' file work stay off the loop, which shows as the API's worst stall while snapshots are
written. Benchmarks print; only functional failures (a change never published) exit non-zero.

Method, for each size N in SIZES (one ZooKeeper, one tree per size: /pc<N>/svc-NNNNN/ep-E, data as scale.py's):
  1. agent (--log-level info, its own cache dir and shm file, so both snapshots are written on every change)
     syncs; health 200.
  2. CHANGES single data changes, each on a random service, 100-200 ms apart (so each one is its own
     publication, its own shm generation, and the 1 s snapshot timer writes about every 6th): a blocking query is
     parked, kazoo sets, the query returns with the new index. Measured over these changes only:
       - agent CPU per change: utime+stime of every thread (/proc/PID/stat) / CHANGES;
       - loop time per change: scout_loop_stall_seconds_sum (every iteration's callback time) / CHANGES, which
         includes the prober's and the blocking queries' API work (the same at every size);
       - the loop's own CPU (main thread's /proc/PID/task/PID/stat) per change: the threads' work left out.
     The driver's own /metrics scrapes are kept out of these windows: a scrape renders a line per service and
     series, ~N work (its loop time and CPU get a column of their own); earlier versions of this driver counted
     three scrapes per size in the change window, which at 10,000 services was most of the growth they showed.
     Background work is not a change's: the policy sets anti-entropy to 1 h (at its 60 s default it re-checks
     ~1,700 data children a second at 10,000 services), and IDLE_S (20) s with no change, after the changes, give
     the loop time and CPU per second the agent spends anyway; that rate times the change phase's duration is
     subtracted (the raw totals are printed too). On a loaded machine the loop's wall time includes preemption;
     the loop thread's CPU does not.
     Then PROBE_CHANGES (40) more changes the same way while a prober thread GETs /v1/health back-to-back over
     its own connection: its worst and p99 answer time is the API stall while snapshots are written (any loop
     hold in the window shows in some probe). The prober is kept out of the per-change figures above.
  3. agent again at --log-level debug on the same cache dir, SNAPSHOT_SAMPLES changes 1.3 s apart: each makes
     one snapshot write, whose log line says how long the loop spent on it ("encoded in E ms on the loop"); the
     first write after the start (every service encoded once) is left out.
Then, for the largest size, cold start from disk with ZooKeeper stopped: COLD_ROUNDS times Popen -> the first
/v1/services/svc-00000 answer with its endpoints (polled every 1 ms); the median. Every start has the same command
line, as a user's restart does, after one uncounted start that makes the side file for it (the early answer).

Each size's table has a second part, CPU per change by thread (the loop, the disk snapshot's writer, the
shared-memory writer, the rest), raw (no idle correction), and the bytes the agent made the disk write per change
(/proc/PID/io write_bytes: the disk snapshot's and the shared-memory file's, which this driver keeps in its temp
dir). SCOUT_BASE=old/build/scout measures that binary too, on the same registry, before this
tree's at every size (its Lua from SCOUT_BASE_LUA_DIR, default old/lua), and prints its tables first.

Env: SIZES (100,1000,10000), ENDPOINTS (10), CHANGES (150), PROBE_CHANGES (40), IDLE_S (20), SNAPSHOT_SAMPLES
     (5), COLD_ROUNDS (3), LOAD_TRIES (10), LOAD_PAUSE_S (10), SCOUT, PERF=1 (perf record the loop's thread, at PERF_FREQ (4999) Hz, during step 2's
     changes at each size: perf-change-N.* in the temp dir with KEEP=1; PERF_THREADS=all: every thread).
"""

import json
import os
import random
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import pct, UnixHTTP  # noqa: E402
import config  # noqa: E402
import scale  # noqa: E402
from scale import Agent, LIVE, cpu_s, kazoo, log  # noqa: E402

SIZES = [int(x) for x in os.environ.get("SIZES", "100,1000,10000").split(",")]
ENDPOINTS = int(os.environ.get("ENDPOINTS", "10"))
CHANGES = int(os.environ.get("CHANGES", "150"))
SNAPSHOT_SAMPLES = int(os.environ.get("SNAPSHOT_SAMPLES", "5"))
PROBE_CHANGES = int(os.environ.get("PROBE_CHANGES", "40"))
IDLE_S = float(os.environ.get("IDLE_S", "20"))
COLD_ROUNDS = int(os.environ.get("COLD_ROUNDS", "3"))
LOAD_TRIES = int(os.environ.get("LOAD_TRIES", "10"))
LOAD_PAUSE_S = float(os.environ.get("LOAD_PAUSE_S", "10"))
config.ENDPOINTS = ENDPOINTS      # what scale.ep_data (config.ep_data) writes
FAILED = []


def thread_cpu_s(pid, tid):
    """utime + stime of one thread, seconds."""
    try:
        with open("/proc/%d/task/%d/stat" % (pid, tid)) as f:
            p = f.read().rsplit(")", 1)[1].split()
        return (int(p[11]) + int(p[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def threads(pid):
    """{tid: (comm, cpu seconds, write syscalls)} of every thread of pid."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for t in tids:
        tid = int(t)
        try:
            with open("/proc/%d/task/%d/comm" % (pid, tid)) as f:
                comm = f.read().strip()
            wb = 0
            with open("/proc/%d/task/%d/io" % (pid, tid)) as f:
                for ln in f:
                    if ln.startswith("syscw:"):
                        wb = int(ln.split()[1])
        except OSError:
            continue
        out[tid] = (comm, thread_cpu_s(pid, tid), wb)
    return out


def thread_split(pid, t0, t1):
    """CPU seconds per role between two threads() readings.  The two writer threads share a name (writer.c), so
    they are told apart by how they write: the disk snapshot's thread makes write syscalls (writev, pwritev), the
    shared-memory writer copies into its mapping and makes none (the file is in the temp dir here, on disk, so
    write_bytes would not tell them apart)."""
    split = {"loop": 0.0, "disk writer": 0.0, "shm writer": 0.0, "other": 0.0}
    writers = []
    for tid, (comm, cpu, wb) in t1.items():
        c0, cpu0, wb0 = t0.get(tid, (comm, 0.0, 0))
        d = cpu - cpu0
        if tid == pid:
            split["loop"] += d
        elif comm == "scout-writer":
            writers.append((wb - wb0, d))
        else:
            split["other"] += d
    writers.sort(reverse=True)
    for k, (wb, d) in enumerate(writers):
        if k == 0 and wb > 0:
            split["disk writer"] += d
        elif k <= 1 and split["shm writer"] == 0.0:
            split["shm writer"] += d
        else:
            split["other"] += d
    return split


def disk_bytes(pid):
    """write_bytes of the whole process (/proc/PID/io): what it made the disk write."""
    try:
        with open("/proc/%d/io" % pid) as f:
            for ln in f:
                if ln.startswith("write_bytes:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


def perf_start(pid, tmp, tag):
    """scale.perf_start on the loop's thread only (its tid is the pid), often enough to see a change's ~1 ms."""
    if not scale.PERF:
        return None
    p = subprocess.Popen(["perf", "record", "-F", os.environ.get("PERF_FREQ", "4999"),
                          "--call-graph", "dwarf,16384", "-o", os.path.join(tmp, "perf-%s.data" % tag),
                          "-p" if os.environ.get("PERF_THREADS") == "all" else "-t", str(pid)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(tmp, "pids"), "a") as f:
        f.write("%d\n" % p.pid)
    time.sleep(0.3)                 # attached before what it should see
    return p


def svc(i):
    return "svc-%05d" % i


def populate(kz, root, n):
    kz.ensure_path(root)
    inflight = []
    for s in range(n):
        tx = kz.transaction()
        p = "%s/%s" % (root, svc(s))
        tx.create(p)
        for e in range(ENDPOINTS):
            tx.create("%s/ep-%d" % (p, e), scale.ep_data(s, e))
        inflight.append(tx.commit_async())
        if len(inflight) >= 1000:
            for a in inflight[:500]:
                a.get(timeout=60)
            inflight = inflight[500:]
    for a in inflight:
        a.get(timeout=60)


def write_policy(path, root, n, cache, shm):
    with open(path, "w") as f:
        # anti-entropy (one exists per data child per period: ~1,700 a second at 10,000 x 10) is background,
        # not a change's cost; an hour's period keeps it out of the few minutes measured
        f.write('zookeeper { servers = "x:1" }\ncache { dir = "%s" }\nshm { path = "%s" }\n'
                'agent { anti_entropy = "1h" }\n' % (cache, shm))
        for i in range(n):
            f.write('service "%s" { path = "%s/%s", codec = "plain" }\n' % (svc(i), root, svc(i)))


class LoadBudget(Exception):
    pass


def wait_synced(a, timeout=180):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if not a.alive():
            tail = a.log_tail()
            if "ms budget" in tail:
                raise LoadBudget(tail)
            raise SystemExit("perchange: agent exited:\n" + tail)
        try:
            if a.get("/v1/health", timeout=10)[0] == 200:
                return time.monotonic() - a.t0
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("perchange: not synced in %d s" % timeout)


def one_change(a, kz, root, n, rnd, k):
    """Set one endpoint's data and wait for the blocking query that sees it."""
    s, e = rnd.randrange(n), rnd.randrange(ENDPOINTS)
    name = svc(s)
    st, h, _ = a.get("/v1/services/" + name)
    idx = int(h["x-scout-index"])
    c = UnixHTTP(a.sock, 60)
    c.request("GET", "/v1/services/%s?index=%d&wait=30s" % (name, idx))
    time.sleep(0.002)
    kz.set("%s/%s/ep-%d" % (root, name, e), scale.ep_data(s, e, gen=k + 1))
    r = c.getresponse()
    r.read()
    c.close()
    if int(r.getheader("X-Scout-Index")) <= idx:
        FAILED.append("%s: change %d not published" % (name, k))


def prober(sock, out, stop):
    """/v1/health back-to-back on one connection: answer times in ms."""
    c = UnixHTTP(sock, 30)
    while not stop.is_set():
        t = time.monotonic()
        try:
            c.request("GET", "/v1/health")
            c.getresponse().read()
        except OSError:
            c.close()
            c = UnixHTTP(sock, 30)
            continue
        out.append((time.monotonic() - t) * 1000)
    c.close()


def loop_sum(m):
    return m.get("scout_loop_stall_seconds_sum", 0.0), m.get("scout_loop_stall_seconds_count", 0.0)


def scrape_cost(a):
    """What one /metrics answer costs the loop and the agent's CPU: two scrapes back to back, the second's loop
    sum holds the first's iteration.  The agent renders a line per service and series, so at 10,000 services a
    scrape is far more than a change: the windows below keep the driver's own scrapes out (CPU read after the
    first scrape and before the last) and take this off the loop sums, where the first scrape's iteration lands."""
    c0 = cpu_s(a.pid)
    l0, _ = loop_sum(a.metrics())
    l1, _ = loop_sum(a.metrics())
    return {"loop": l1 - l0, "cpu": (cpu_s(a.pid) - c0) / 2}


def idle_rates(a, scrape):
    """Background work per second with no change (anti-entropy re-lists every data child once a period, pings,
    timers): what the change phase's totals carry besides the changes, subtracted from them."""
    l0, _ = loop_sum(a.metrics())
    cpu0, main0 = cpu_s(a.pid), thread_cpu_s(a.pid, a.pid)
    t0 = time.monotonic()
    time.sleep(IDLE_S)
    dur = time.monotonic() - t0
    cpu1, main1 = cpu_s(a.pid), thread_cpu_s(a.pid, a.pid)
    l1, _ = loop_sum(a.metrics())
    return {"cpu": (cpu1 - cpu0) / dur, "main": (main1 - main0) / dur,
            "loop": max(0.0, l1 - l0 - scrape["loop"]) / dur}


def start_synced(scout, policy, zk, tmp, tag, **kw):
    """An agent, synced: (agent, seconds).  Loading 10,000 service blocks has a 5 s wall-clock budget, which a
    machine at load 15 can exceed; that start is tried again (LOAD_TRIES times, LOAD_PAUSE_S apart), not a change's
    cost."""
    for attempt in range(LOAD_TRIES):
        a = Agent(scout, policy, zk, tmp, tag, **kw)
        try:
            return a, wait_synced(a)
        except LoadBudget as e:
            a.stop()
            if attempt == LOAD_TRIES - 1:
                raise SystemExit("perchange: policy load over its budget %d times:\n%s" % (LOAD_TRIES, e))
            log("%s: policy load over its budget (machine busy, load %s), starting again in %.0f s"
                % (tag, os.getloadavg()[0], LOAD_PAUSE_S))
            time.sleep(LOAD_PAUSE_S)


def measure_size(scout, zk, tmp, kz, n, tag=""):
    root = "/pc%d" % n
    cache = os.path.join(tmp, "cache-%d%s" % (n, tag))
    shm = os.path.join(tmp, "shm-%d%s" % (n, tag))
    policy = os.path.join(tmp, "policy-%d%s.lua" % (n, tag))
    write_policy(policy, root, n, cache, shm)
    a, sync_s = start_synced(scout, policy, zk, tmp, "pc%d%s" % (n, tag), cache_dir=cache)
    time.sleep(10)          # the first snapshot write and shm generation (every service encoded once) are done
    rnd = random.Random(n)
    scrape = scrape_cost(a)
    m0 = a.metrics()
    l0, c0 = loop_sum(m0)
    writes0 = m0.get("scout_snapshot_writes_total", 0)
    cpu0, main0 = cpu_s(a.pid), thread_cpu_s(a.pid, a.pid)
    th0, wb0 = threads(a.pid), disk_bytes(a.pid)
    perf = perf_start(a.pid, tmp, "change-%d" % n)
    t0 = time.monotonic()
    for k in range(CHANGES):
        one_change(a, kz, root, n, rnd, k)
        time.sleep(rnd.uniform(0.1, 0.2))
    dur = time.monotonic() - t0
    note = scale.perf_stop(perf, tmp, "change-%d" % n, "agent pid %d, %d changes at %d services"
                           % (a.pid, CHANGES, n))
    if note:
        log(note)
    cpu = cpu_s(a.pid) - cpu0
    main = thread_cpu_s(a.pid, a.pid) - main0
    split = thread_split(a.pid, th0, threads(a.pid))
    wbytes = disk_bytes(a.pid) - wb0
    m1 = a.metrics()
    l1, c1 = loop_sum(m1)
    l1 -= scrape["loop"]    # m0's own iteration
    writes = m1.get("scout_snapshot_writes_total", 0) - writes0
    idle = idle_rates(a, scrape)    # after the changes: right after a big sync the agent is still settling
    # the API stall while snapshots are written: a prober on /v1/health during PROBE_CHANGES more changes
    probes, stop = [], threading.Event()
    th = threading.Thread(target=prober, args=(a.sock, probes, stop))
    pw0 = a.metrics().get("scout_snapshot_writes_total", 0)
    th.start()
    for k in range(PROBE_CHANGES):
        one_change(a, kz, root, n, rnd, CHANGES + SNAPSHOT_SAMPLES + 1 + k)
        time.sleep(rnd.uniform(0.1, 0.2))
    stop.set()
    th.join()
    pwrites = a.metrics().get("scout_snapshot_writes_total", 0) - pw0
    a.stop()
    row = {"n": n, "sync_s": sync_s, "cpu_ms": (cpu - idle["cpu"] * dur) * 1000 / CHANGES,
           "main_ms": (main - idle["main"] * dur) * 1000 / CHANGES,
           "loop_ms": (l1 - l0 - idle["loop"] * dur) * 1000 / CHANGES,
           "raw_cpu_ms": cpu * 1000 / CHANGES, "raw_loop_ms": (l1 - l0) * 1000 / CHANGES,
           "idle_loop_ms_s": idle["loop"] * 1000, "idle_cpu_ms_s": idle["cpu"] * 1000,
           "iters": (c1 - c0) / CHANGES, "writes": writes,
           "probe_worst": max(probes) if probes else 0, "probe_p99": pct(probes, .99) if probes else 0,
           "probes": len(probes), "probe_writes": pwrites,
           "scrape_loop_ms": scrape["loop"] * 1000, "scrape_cpu_ms": scrape["cpu"] * 1000,
           "split": {k: v * 1000 / CHANGES for k, v in split.items()}, "disk_kb": wbytes / 1024 / CHANGES}
    # the loop's part of one disk-snapshot write (debug log line), warm start on the same cache
    d, _ = start_synced(scout, policy, zk, tmp, "pcd%d%s" % (n, tag), level="debug", cache_dir=cache)
    time.sleep(1.5)
    mark = len(d.log_lines())
    for k in range(SNAPSHOT_SAMPLES + 1):
        one_change(d, kz, root, n, rnd, CHANGES + k)
        time.sleep(1.3)
    enc = []
    for ln in d.log_lines()[mark:]:
        m = re.search(r"persist: wrote (\d+) services .* encoded in ([0-9.]+) ms on the loop", ln)
        if m:
            enc.append(float(m.group(2)))
    enc = enc[1:]       # the first write after a start encodes every service (once); the rest are the steady state
    d.stop()
    row["snap_loop_ms"] = pct(enc, .5) if enc else float("nan")
    row["snap_loop_max"] = max(enc) if enc else float("nan")
    row["snap_samples"] = len(enc)
    log("size %d: %r" % (n, row))
    return row, policy, cache


def cold_start(scout, zk, tmp, zkdir, root_dir, policy, cache, n, stop_zk=True):
    if stop_zk:
        subprocess.run([os.path.join(root_dir, "scripts", "zk.sh"), "stop-node", zkdir, "1"], check=True)
    times = []
    # Every round on the same command line (the same API socket): the side file that lets a start answer from the
    # disk snapshot before its policy is loaded names the command line it was made for, and a user restarts with
    # the same one. Round 0 only makes that side file (the agents before ran on other sockets) and is not counted.
    for k in range(COLD_ROUNDS + 1):
        c = Agent(scout, policy, zk, tmp, "pccold", cache_dir=cache)
        ok = None
        while time.monotonic() - c.t0 < 10:
            try:
                st, _, body = c.get("/v1/services/svc-00000", timeout=5)
                if st == 200 and len(json.loads(body)) == ENDPOINTS:
                    ok = time.monotonic() - c.t0
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.001)
        c.stop()
        if ok is None:
            FAILED.append("cold start %d at %d services: no answer" % (k, n))
        elif k > 0:
            times.append(ok * 1000)
    return times


def binaries(root_dir):
    """(label, scout, lua dir): SCOUT_BASE (with SCOUT_BASE_LUA_DIR, default its tree's lua/) first when set, so
    a before/after pair is measured in the same run on the same registry."""
    scout = os.environ.get("SCOUT") or os.path.join(root_dir, "build", "scout")
    lua = os.environ.get("SCOUT_LUA_DIR") or os.path.join(root_dir, "lua")
    out = []
    base = os.environ.get("SCOUT_BASE")
    if base:
        blua = os.environ.get("SCOUT_BASE_LUA_DIR") or os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(base))), "lua")
        out.append(("base", base, blua))
    out.append(("", scout, lua))
    return out


def print_rows(scout, rows, colds, n_cold):
    base = rows[0]
    print()
    print("per change, %s (%d changes per size, %d endpoints per service; ratio to the %d row)"
          % (scout, CHANGES, ENDPOINTS, base["n"]))
    hdr = ("services", "agent CPU/change", "loop time/change", "loop thread CPU/change", "raw CPU / loop per change",
           "idle loop / CPU per s",
           "snapshot write: loop ms p50 (max)", "API stall during writes: worst / p99",
           "one /metrics scrape: loop / CPU")
    print(" | ".join(hdr))
    print("-|-".join("-" * len(h) for h in hdr))
    for r in rows:
        print(" | ".join([
            "%d" % r["n"],
            "%.2f ms (%.2fx)" % (r["cpu_ms"], r["cpu_ms"] / base["cpu_ms"] if base["cpu_ms"] else 0),
            "%.2f ms (%.2fx)" % (r["loop_ms"], r["loop_ms"] / base["loop_ms"] if base["loop_ms"] else 0),
            "%.2f ms (%.2fx)" % (r["main_ms"], r["main_ms"] / base["main_ms"] if base["main_ms"] else 0),
            "%.2f / %.2f ms" % (r["raw_cpu_ms"], r["raw_loop_ms"]),
            "%.1f / %.1f ms" % (r["idle_loop_ms_s"], r["idle_cpu_ms_s"]),
            "%.2f (%.2f), %d writes" % (r["snap_loop_ms"], r["snap_loop_max"], r["snap_samples"]),
            "%.1f / %.1f ms (%d probes, %d writes)" % (r["probe_worst"], r["probe_p99"], r["probes"],
                                                       r["probe_writes"]),
            "%.1f / %.1f ms" % (r["scrape_loop_ms"], r["scrape_cpu_ms"])]))
    print()
    print("per change, by thread (raw CPU in the change window / changes; the disk writer is the writer thread that "
          "made write syscalls), and what the disk was made to write (/proc/PID/io write_bytes: both snapshots)")
    hdr = ("services", "loop", "disk snapshot writer", "shm writer", "other threads", "disk written/change")
    print(" | ".join(hdr))
    print("-|-".join("-" * len(h) for h in hdr))
    for r in rows:
        sp = r["split"]
        print(" | ".join(["%d" % r["n"]] + ["%.2f ms" % sp[k] for k in ("loop", "disk writer", "shm writer",
                                                                         "other")]
                         + ["%.1f KB (%d snapshot writes)" % (r["disk_kb"], r["writes"])]))
    if colds:
        print("cold start from disk, ZooKeeper down, %d services: median %.0f ms (%s)"
              % (n_cold, sorted(colds)[len(colds) // 2], ", ".join("%.0f" % x for x in colds)))


def main():
    zk, zkdir, tmp, root_dir = sys.argv[1:5]
    bins = binaries(root_dir)
    kz = kazoo(zk)
    rows = {b[0]: [] for b in bins}
    last = {}
    for n in SIZES:
        t = time.monotonic()
        populate(kz, "/pc%d" % n, n)
        log("size %d: populated in %.1f s" % (n, time.monotonic() - t))
        for tag, scout, lua in bins:
            os.environ["SCOUT_LUA_DIR"] = lua
            row, policy, cache = measure_size(scout, zk, tmp, kz, n, tag)
            rows[tag].append(row)
            last[tag] = (policy, cache, n)
    kz.stop()
    colds = {}
    for k, (tag, scout, lua) in enumerate(bins):
        os.environ["SCOUT_LUA_DIR"] = lua
        colds[tag] = cold_start(scout, zk, tmp, zkdir, root_dir, *last[tag], stop_zk=k == 0)
    for tag, scout, lua in bins:
        print_rows(scout, rows[tag], colds[tag], last[tag][2])
    for f in FAILED:
        print("FAILED: " + f)
    return 1 if FAILED else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        for a in list(LIVE):
            a.stop()

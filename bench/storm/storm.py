"""storm.py — rolling-deploy read-storm benchmark driver (run by run.sh with /usr/bin/python3).

Why: issue 4 ("staying right through faults") claims delayed, incremental pulls remove the
M x N storm a rolling deploy causes when every consumer re-reads every provider on every
event. This measures it on a real server: M consumers of one service of N providers, one
rolling deploy per phase, ZooKeeper read requests counted on the server, and the time
until every consumer holds exactly the new set.

Strategies (phases, one at a time, M processes each, the same deploy every phase):
  rpcx-style   M x rpcxwatch (libkv WatchTree pattern: per child event, list + Get every
               child, one at a time; see rpcxwatch.c)
  scout d=0    M x scout, policy.lua with delay = 0
  scout d=500  M x scout, policy.lua with delay = 500 (ms)
ROUNDS rounds, the order rotated per round, so drift and server warm-up spread evenly.
M = 50 fits this 2-core, 24 GiB machine: a scout agent holding 200 providers is ~4.5 MB
RSS (last column of the table), an rpcxwatch ~2 MB; CPU, not memory, is the limit.

Providers: N ephemeral children /storm/svc/<id> with JSON data {"host","port","weight"}
(codec "plain"). Ids rather than host:port names so the consumers must read data: the
plain/Curator shape, where a data read per new child is part of any correct client's
bill (with name-encoded codecs scout reads no data at all and only children reads would
be measured).

Deploy (the same for every phase): BATCH_PCT of N per batch; a batch deletes its old
providers, then creates their replacements, each write synchronous (sent when the
previous one was acknowledged: 50 hosts leaving, then 50 registering, as fast as
ZooKeeper takes them, like an orchestrator replacing a quarter of the pods at once);
PACE_MS (1000) of quiet after a batch's last write before the next batch starts (the
orchestrator waiting for readiness). The same writer session owns every provider.
WRITE_GAP_MS (0) spreads a batch's writes (a sleep after each one) to see what slower
registrations do; with it above ~4 ms a batch outlasts a 500 ms window and the
"one children read per batch" minimum is no longer reachable by any client.

Reads, counted on the server: 4lw `cons` lists each connection with `recved` (packets
the server read: requests, pings and the connect) and `lcxid` (the last client xid it
answered). The C client numbers every request with xid+1 and sends pings (xid -2) and
SetWatches/auth (negative xids) outside that sequence, and the server keeps negative
xids out of lcxid, so d(lcxid) over the window = requests answered, and
d(recved) - d(lcxid) = pings (reported as subtracted). Consumers here only read, so
d(lcxid) is the read count. Each consumer's connection is found from its own socket
(/proc/PID/fd -> /proc/net/tcp local port -> cons line). Window: from "every consumer
holds the initial set and the counters stopped moving" to "every consumer holds the
final set and the counters stopped moving" (so nothing the deploy caused is missed and
the start-up reads are excluded). Cross-checks: scout's own /metrics request counters and
rpcxwatch's own counts must match the server's number (printed in the details).

Minimum: per consumer, one children read per batch (a batch is one coalesced window:
its 2 x BATCH writes are one burst, ~130 ms when the server is not itself under a storm,
and no client can know the new set without one list after the burst) plus one data read
per created provider (deleted ones need none); min = M x (batches + created), from what
the deploy actually did. The storms of the other strategies slow the writes (a batch
takes 0.5-1 s under rpcx-style or delay=0 load; "batch writes" in the details).

Convergence: from CLOCK_MONOTONIC just before the deploy's last write until a consumer
holds exactly the final id set. rpcxwatch stamps its own lines (exact); scout agents are
polled (GET /v1/services/svc over their unix sockets, round-robin over those not yet
converged, starting at the last write), so scout times are upper bounds by at most one
poll round (mean round time printed).

Env: M (50), N (200), BATCH_PCT (25), PACE_MS (1000), WRITE_GAP_MS (0), ROUNDS (3),
     DELAYS ("0 500"), SESSION_MS (10000, rpcxwatch; scout keeps its policy default, also
     10 s), CONVERGE_S (60), SCOUT (build/scout), STAGGER_MS (20:
     consumers start this far apart; 50 agents decoding 200 providers at the same instant
     on 2 cores can push one past its Lua hook budget, which counts wall-clock time),
     STUCK_S (10: a scout still without the initial set this long after its start is
     replaced, outside the window, and counted in the details),
     STRATEGIES ("rpcx scout0 scout500" subset by name prefix, default all).
"""

import http.client
import json
import os
import selectors
import signal
import subprocess
import sys
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import four, pct, UnixHTTP  # noqa: E402

M = int(os.environ.get("M", "50"))
N = int(os.environ.get("N", "200"))
BATCH_PCT = float(os.environ.get("BATCH_PCT", "25"))
PACE_MS = int(os.environ.get("PACE_MS", "1000"))
WRITE_GAP_MS = int(os.environ.get("WRITE_GAP_MS", "0"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DELAYS = [int(x) for x in os.environ.get("DELAYS", "0 500").split()]
SESSION_MS = int(os.environ.get("SESSION_MS", "10000"))
CONVERGE_S = float(os.environ.get("CONVERGE_S", "60"))
READY_S = float(os.environ.get("READY_S", "60"))
STAGGER_MS = int(os.environ.get("STAGGER_MS", "20"))
STUCK_S = float(os.environ.get("STUCK_S", "10"))
PATH = "/storm/svc"


def log(msg):
    sys.stderr.write("storm: %s\n" % msg)
    sys.stderr.flush()


def fnv(names):
    h = 1469598103934665603
    for n in sorted(names):
        for b in n.encode() + b"\n":
            h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def cons(zk_ports):
    """{local port: (recved, lcxid or None)} for every client connection."""
    out = {}
    for zp in zk_ports:
        for ln in four(zp, "cons").splitlines():
            ln = ln.strip()
            if not ln.startswith("/127.0.0.1:") or "(" not in ln:
                continue
            lport = int(ln[len("/127.0.0.1:"):].split("[", 1)[0])
            kv = dict(x.split("=", 1)
                      for x in ln.split("(", 1)[1].rstrip(")").split(",") if "=" in x)
            out[lport] = (int(kv["recved"]), int(kv["lcxid"], 16) if "lcxid" in kv else None)
    return out


def zk_local_ports(pids, zk_ports):
    """{pid: local port of its one established connection to ZooKeeper}."""
    inode_pid = {}
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                if t.startswith("socket:["):
                    inode_pid[t[8:-1]] = pid
        except OSError:
            pass
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for ln in f:
                p = ln.split()
                rport = int(p[2].rsplit(":", 1)[1], 16)
                if p[3] == "01" and p[9] in inode_pid and rport in zk_ports:
                    pid = inode_pid[p[9]]
                    if pid in out:
                        raise SystemExit("storm: pid %d has two ZooKeeper connections" % pid)
                    out[pid] = int(p[1].rsplit(":", 1)[1], 16)
    return out


def proc_kb(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith(key + ":"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


# -- consumers -----------------------------------------------------------------

LIVE = []  # every consumer started and not yet reaped: phase() stops these, whatever happened
_launching = [False, None]  # inside Popen..record; a signal that came meanwhile


def on_signal(signum, frame):
    """SIGTERM/SIGINT -> SystemExit (so every finally runs), but never between a child's
    fork and its record in LIVE: that would leak a running agent. (Blocking the signal
    instead would be inherited by the child as its signal mask.)"""
    if _launching[0]:
        _launching[1] = signum
        return
    sys.exit(128 + signum)


class Consumer:
    def __init__(self, argv, env, logfile, pidfile):
        self.logfile = logfile
        self.converged_ns = None
        lf = open(logfile, "ab")
        e = dict(os.environ)
        e.update(env)
        # on record (LIVE, and the pid file run.sh reads if we die anyway) before any signal
        _launching[0] = True
        try:
            self.p = subprocess.Popen(argv, env=e, stdin=subprocess.DEVNULL,
                                      stdout=self.stdout_target(lf), stderr=lf)
            LIVE.append(self)
            with open(pidfile, "a") as f:
                f.write("%d\n" % self.p.pid)
        finally:
            _launching[0] = False
            lf.close()
        if _launching[1]:
            sys.exit(128 + _launching[1])

    def stdout_target(self, lf):
        return lf

    def alive(self):
        return self.p.poll() is None

    def log_tail(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()[-1500:]
        except OSError:
            return ""

    def terminate(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)

    def reap(self):
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


class Scout(Consumer):
    def __init__(self, scout, policy, zk, sock, delay, logfile, pidfile):
        self.sock = sock
        self.http = None
        if os.path.exists(sock):
            os.unlink(sock)
        super().__init__([scout, "run", "-c", policy, "--zk", zk, "--api", "unix:" + sock,
                          "--log-level", "warn"], {"STORM_DELAY": str(delay)}, logfile, pidfile)

    def get(self, path):
        """(status, body) or None when the agent does not answer (yet)."""
        for _ in range(2):
            try:
                if self.http is None:
                    self.http = UnixHTTP(self.sock)
                self.http.request("GET", path)
                r = self.http.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                if self.http is not None:
                    self.http.close()
                self.http = None
        return None

    def ids(self):
        r = self.get("/v1/services/svc")
        if r is None or r[0] != 200:
            return None
        return frozenset(ep["id"] for ep in json.loads(r[1]))

    def metrics(self):
        r = self.get("/metrics")
        out = {}
        if r is None or r[0] != 200:
            return out
        for ln in r[1].decode().splitlines():
            if ln and not ln.startswith("#"):
                k, v = ln.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def terminate(self):
        if self.http is not None:
            self.http.close()
            self.http = None
        super().terminate()


class Rpcx(Consumer):
    def __init__(self, exe, zk, logfile, pidfile):
        super().__init__([exe, zk, PATH, str(SESSION_MS)], {}, logfile, pidfile)
        self.fd = self.p.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.last = None        # (ns, count, hash)
        self.stats = None
        self.hist = []

    def stdout_target(self, lf):
        return subprocess.PIPE

    def pump(self):
        while True:
            try:
                b = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not b:
                break
            self.buf += b
        *lines, self.buf = self.buf.split(b"\n")
        for ln in lines:
            ln = ln.decode()
            if ln.startswith("stats "):
                self.stats = dict((k, int(v)) for k, v in (x.split("=") for x in ln.split()[1:]))
                continue
            ns, cnt, h = ln.split()
            self.last = (int(ns), int(cnt), h)
            self.hist.append(self.last)

    def reap(self):
        super().reap()
        self.pump()
        self.p.stdout.close()


# -- the run -------------------------------------------------------------------

class Strategy:
    def __init__(self, name, kind, delay=None):
        self.name, self.kind, self.delay = name, kind, delay
        self.reads = self.pings = self.minimum = 0
        self.self_count = 0
        self.self_ok = True
        self.conv = []          # ms, every consumer of every phase
        self.unconverged = 0
        self.rss = []           # kB at the end of each phase, per consumer
        self.hwm = []
        self.deploy_ms = []
        self.write_ms = []
        self.poll_round_ms = []
        self.extra = {}         # summed counters for the details
        self.restarts = 0       # scouts stuck unsynced at start-up, replaced
        self.restart_logs = []
        self.phases = 0


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    zk, bindir, root, tmp = sys.argv[1:5]
    zk_ports = {int(h.rsplit(":", 1)[1]) for h in zk.split("/")[0].split(",")}
    pidfile = os.path.join(tmp, "pids")
    scout = os.environ.get("SCOUT") or os.path.join(root, "build", "scout")
    policy = os.path.join(root, "bench", "storm", "policy.lua")
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs, exist_ok=True)

    from kazoo.client import KazooClient
    kz = KazooClient(hosts=zk, timeout=30.0)
    kz.start(timeout=30)
    kz.ensure_path(PATH)

    strategies = [Strategy("rpcx-style", "rpcx")]
    if os.access(scout, os.X_OK):
        strategies += [Strategy("scout delay=%d" % d, "scout", d) for d in DELAYS]
    else:
        log("skipping scout: %s not found (make, or set SCOUT=path)" % scout)
    only = os.environ.get("STRATEGIES")
    if only:
        keep = only.split()
        strategies = [s for s in strategies
                      if any((s.kind + (str(s.delay) if s.delay is not None else "")).startswith(k)
                             for k in keep)]
    per = max(1, int(round(N * BATCH_PCT / 100.0)))
    batches = [list(range(i, min(N, i + per))) for i in range(0, N, per)]

    def data(gen, k):
        return json.dumps({"host": "10.%d.%d.%d" % (gen % 250, k // 250, k % 250 + 1),
                           "port": 20000 + k, "weight": 1 + k % 5}).encode()

    def reset(tag):
        """Remove whatever is there, create the N initial providers (no consumer runs)."""
        for c in kz.get_children(PATH):
            kz.delete("%s/%s" % (PATH, c))
        ids = ["%s-a%04d" % (tag, k) for k in range(N)]
        ops = [kz.create_async("%s/%s" % (PATH, i), data(0, k), ephemeral=True)
               for k, i in enumerate(ids)]
        for op in ops:
            op.get(timeout=30)
        return ids

    def counters(agents):
        """{pid: (recved, lcxid)} for the consumers; raises if a connection is missing."""
        ports = zk_local_ports([a.p.pid for a in agents], zk_ports)
        c = cons(zk_ports)
        out = {}
        for a in agents:
            lp = ports.get(a.p.pid)
            if lp is None or lp not in c or c[lp][1] is None:
                raise SystemExit("storm: no ZooKeeper connection/cons line for pid %d" % a.p.pid)
            out[a.p.pid] = c[lp]
        return out

    def quiet(agents, min_s=0.3):
        """Wait until no consumer sends requests (lcxid stable for min_s); return counters."""
        prev = counters(agents)
        deadline = time.monotonic() + 30
        while True:
            time.sleep(min_s)
            cur = counters(agents)
            if all(cur[p][1] == prev[p][1] for p in cur) or time.monotonic() > deadline:
                return cur
            prev = cur

    def phase(s, tag):
        old = reset(tag)
        new = ["%s-b%04d" % (tag, k) for k in range(N)]
        want0, want1 = frozenset(old), frozenset(new)
        h0, h1 = fnv(old), fnv(new)
        agents = []
        sel = selectors.DefaultSelector()
        try:
            t = time.monotonic()

            def launch(i):
                lf = os.path.join(logs, "%s-%d.log" % (tag, i))
                if s.kind == "rpcx":
                    a = Rpcx(os.path.join(bindir, "rpcxwatch"), zk, lf, pidfile)
                    sel.register(a.fd, selectors.EVENT_READ, a)
                else:
                    a = Scout(scout, policy, zk, os.path.join(tmp, "a%d.sock" % i), s.delay,
                              lf, pidfile)
                a.idx, a.t_start = i, time.monotonic()
                return a

            for i in range(M):
                agents.append(launch(i))
                time.sleep(STAGGER_MS / 1000.0)
            # every consumer holds the initial set
            pending = set(agents)
            while pending:
                if s.kind == "rpcx":
                    for key, _ in sel.select(0.05):
                        key.data.pump()
                    done = {a for a in pending if a.last and a.last[1:] == (N, h0)}
                else:
                    time.sleep(0.02)
                    done = {a for a in pending if a.ids() == want0}
                pending -= done
                dead = [a for a in pending if not a.alive()]
                if dead or time.monotonic() - t > READY_S:
                    a = (dead or list(pending))[0]
                    raise SystemExit("storm: %s consumer %s; log tail:\n%s" % (
                        s.name, "exited" if dead else "not synced in %.0fs" % READY_S,
                        a.log_tail()))
                # A scout whose first update was stopped by its hook budget keeps an empty
                # list until the next ZooKeeper event, which never comes here: replace it
                # (outside the measured window) and count it.
                for a in [a for a in pending if s.kind == "scout"
                          and time.monotonic() - a.t_start > STUCK_S]:
                    s.restarts += 1
                    s.restart_logs.append(a.log_tail().strip().splitlines()[-1:] or ["(no log)"])
                    log("%s: agent %d not synced after %.0fs, restarting it: %s" % (
                        s.name, a.idx, STUCK_S, s.restart_logs[-1][0]))
                    a.terminate()
                    a.reap()
                    LIVE.remove(a)
                    pending.discard(a)
                    b = launch(a.idx)
                    agents[agents.index(a)] = b
                    pending.add(b)
            log("%s: %d consumers synced in %.1fs" % (s.name, M, time.monotonic() - t))
            c0 = quiet(agents)
            m0 = [a.metrics() for a in agents] if s.kind == "scout" else None

            # -- the deploy --
            t_first = time.monotonic_ns()
            t_last = None
            for b, ks in enumerate(batches):
                if b:
                    time.sleep(PACE_MS / 1000.0)
                tb = time.monotonic_ns()
                for k in ks:
                    kz.delete("%s/%s" % (PATH, old[k]))
                    if WRITE_GAP_MS:
                        time.sleep(WRITE_GAP_MS / 1000.0)
                for j, k in enumerate(ks):
                    if b == len(batches) - 1 and j == len(ks) - 1:
                        t_last = time.monotonic_ns()
                    kz.create("%s/%s" % (PATH, new[k]), data(1, k), ephemeral=True)
                    if WRITE_GAP_MS and j < len(ks) - 1:
                        time.sleep(WRITE_GAP_MS / 1000.0)
                s.write_ms.append((time.monotonic_ns() - tb) / 1e6)
            s.deploy_ms.append((t_last - t_first) / 1e6)

            # -- convergence --
            pending = set(agents)
            deadline = time.monotonic() + CONVERGE_S
            rounds = 0
            t_poll = time.monotonic()
            while pending and time.monotonic() < deadline:
                if s.kind == "rpcx":
                    for key, _ in sel.select(0.05):
                        key.data.pump()
                    for a in list(pending):
                        for ns, cnt, h in a.hist:
                            if (cnt, h) == (N, h1) and ns >= t_last:
                                a.converged_ns = ns
                                pending.discard(a)
                                break
                else:
                    rounds += 1
                    for a in list(pending):
                        if a.ids() == want1:
                            a.converged_ns = time.monotonic_ns()
                            pending.discard(a)
                if any(not a.alive() for a in agents):
                    raise SystemExit("storm: a %s consumer exited during the deploy" % s.name)
            if s.kind == "scout" and rounds:
                s.poll_round_ms.append((time.monotonic() - t_poll) * 1000.0 / rounds)
            s.unconverged += len(pending)
            s.conv += [(a.converged_ns - t_last) / 1e6 for a in agents if a.converged_ns]
            time.sleep(max(0.5, (s.delay or 0) / 1000.0 + 0.2))
            c1 = quiet(agents)

            # -- counts --
            reads = sum(c1[p][1] - c0[p][1] for p in c1)
            recv = sum(c1[p][0] - c0[p][0] for p in c1)
            s.reads += reads
            s.pings += recv - reads
            s.minimum += M * (len(batches) + sum(len(ks) for ks in batches))
            s.rss += [proc_kb(a.p.pid, "VmRSS") for a in agents]
            s.hwm += [proc_kb(a.p.pid, "VmHWM") for a in agents]
            if s.kind == "scout":
                m1 = [a.metrics() for a in agents]
                keys = ["scout_zk_requests_total{op=\"children\"}", "scout_zk_requests_total{op=\"data\"}",
                        "scout_zk_requests_total{op=\"exists\"}", "scout_zk_watch_events_total",
                        'scout_service_publishes_total{service="svc"}',
                        'scout_service_stale_results_dropped_total{service="svc"}',
                        "scout_zk_reconnects_total"]
                for k in keys:
                    d = sum(b.get(k, 0) - a.get(k, 0) for a, b in zip(m0, m1))
                    s.extra[k] = s.extra.get(k, 0) + d
                sc = sum(s.extra.get(k, 0) for k in keys[:3])
                s.self_count = sc
            s.phases += 1
            log("%s: deploy %.0f ms, %d reads (%.2fx min), converged %d/%d, max %.0f ms" % (
                s.name, s.deploy_ms[-1], reads,
                reads / (M * (len(batches) + sum(len(ks) for ks in batches))),
                M - len(pending), M, max(s.conv[-M:] or [0])))
        finally:
            for a in LIVE:
                a.terminate()
            for a in LIVE:
                a.reap()
            del LIVE[:]
            if s.kind == "rpcx":
                for a in agents:
                    if a.stats is None:
                        s.self_ok = False
                        continue
                    # minus the initial list (1 children + N data reads)
                    s.self_count += a.stats["children"] + a.stats["data"] - (1 + N)
                    for k in ("cycles", "nonode"):
                        s.extra[k] = s.extra.get(k, 0) + a.stats[k] - (1 if k == "cycles" else 0)
                sel.close()

    t_start = time.monotonic()
    for r in range(ROUNDS):
        order = strategies[r % len(strategies):] + strategies[:r % len(strategies)]
        for s in order:
            log("round %d/%d: %s, M=%d N=%d" % (r + 1, ROUNDS, s.name, M, N))
            phase(s, "r%d%s" % (r, s.kind[0] + str(s.delay if s.delay is not None else "")))
    for c in kz.get_children(PATH):
        kz.delete("%s/%s" % (PATH, c))
    kz.stop()
    kz.close()
    elapsed = time.monotonic() - t_start

    # -- report ------------------------------------------------------------------
    rpcx = next((s for s in strategies if s.kind == "rpcx" and s.phases), None)
    print()
    print("storm: M=%d consumers, N=%d providers under %s, rolling deploy in %d batches of %d "
          "(delete %d old, create %d new, synchronous writes, %d ms apart), %d ms between batches, "
          "%d round(s), rotated phases" % (M, N, PATH, len(batches), per, per, per, WRITE_GAP_MS,
                                           PACE_MS, ROUNDS))
    print("read requests = server-side d(lcxid) per consumer connection (4lw cons), summed, "
          "mean per deploy; minimum = M x (batches + created) = %d x (%d + %d) = %d per deploy"
          % (M, len(batches), N, M * (len(batches) + N)))
    print()
    hdr = ("strategy", "agents", "read requests", "ratio to minimum", "ratio to rpcx",
           "converge ms (p50/max)", "scout RSS MB")
    rows = []
    for s in strategies:
        if not s.phases:
            rows.append((s.name, "no data"))
            continue
        per_deploy = s.reads / s.phases
        conv = ("%.0f / %.0f" % (pct(s.conv, 0.5), max(s.conv))) if s.conv else "n/a"
        if s.unconverged:
            conv += " (%d never)" % s.unconverged
        rss = ("%.1f (peak %.1f)" % (sum(s.rss) / len(s.rss) / 1024.0, max(s.hwm) / 1024.0)
               if s.kind == "scout" else "-")
        rows.append((s.name, str(M), "%.0f" % per_deploy, "%.3f" % (s.reads / s.minimum),
                     "%.3f" % (s.reads / rpcx.reads) if rpcx else "n/a", conv, rss))
    full = [r for r in rows if len(r) == len(hdr)]
    widths = [max([len(hdr[i])] + [len(r[i]) for r in full]) for i in range(len(hdr))]
    fmt = lambda r: " | ".join(c.ljust(widths[i]) for i, c in enumerate(r))
    print(fmt(hdr))
    print("-+-".join("-" * x for x in widths))
    for r in rows:
        print(fmt(r) if len(r) == len(hdr) else "%s | %s" % (r[0].ljust(widths[0]), r[1]))
    print()
    print("details (per deploy, means over %d round(s)):" % ROUNDS)
    for s in strategies:
        if not s.phases:
            continue
        n = s.phases
        line = "  %s: pings subtracted %.0f; deploy first->last write %.0f ms (batch writes %.0f ms " \
               "mean); self-count %s" % (
                   s.name, s.pings / n, sum(s.deploy_ms) / n, sum(s.write_ms) / len(s.write_ms),
                   ("%.0f (%s server)" % (s.self_count / n, "=" if s.self_count == s.reads
                                          else "!= %.0f" % (s.reads / n)))
                   if s.self_ok else "n/a")
        if s.kind == "rpcx":
            line += "; list cycles per consumer %.1f; gets of deleted children %.0f" % (
                s.extra.get("cycles", 0) / n / M, s.extra.get("nonode", 0) / n)
            line += "; watcher RSS %.1f MB" % (sum(s.rss) / len(s.rss) / 1024.0)
        else:
            e = s.extra
            line += ("; per consumer: children reads %.2f (min %d), data reads %.2f (min %d), "
                     "exists %.2f, watch events %.1f, publishes %.2f, stale dropped %.0f, "
                     "reconnects %.0f; poll round %.1f ms" % (
                         e["scout_zk_requests_total{op=\"children\"}"] / n / M, len(batches),
                         e["scout_zk_requests_total{op=\"data\"}"] / n / M, N,
                         e["scout_zk_requests_total{op=\"exists\"}"] / n / M,
                         e["scout_zk_watch_events_total"] / n / M,
                         e['scout_service_publishes_total{service="svc"}'] / n / M,
                         e['scout_service_stale_results_dropped_total{service="svc"}'],
                         e["scout_zk_reconnects_total"],
                         sum(s.poll_round_ms) / max(1, len(s.poll_round_ms))))
            line += "; agents stuck unsynced at start-up and replaced: %d" % s.restarts
        print(line)
    print("targets (issue 4): scout with delay <= 1.1x minimum and <= 0.1x rpcx-style; wall %.1fs"
          % elapsed)
    bad = [s.name for s in strategies if s.unconverged or not s.phases]
    if bad:
        log("FAILED (never converged or no data): %s" % ", ".join(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

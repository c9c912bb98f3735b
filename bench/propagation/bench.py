"""bench.py — propagation benchmark driver (run by run.sh with /usr/bin/python3).

Why: the core agent issue asks what scout costs, per change, next to a bare
ZooKeeper C client and kazoo: latency from just before a write to the
observer's publication (all processes stamp CLOCK_MONOTONIC, so the clocks
are the same), CPU, peak RSS and ZooKeeper requests per change.  scout is
measured twice: with a hook observer (policy.lua), and serving a consumer
that reads it through blocking queries (blockwatch.c, or blockwatch.py with
CONSUMER=py; issue 14 item 2: CPU, RSS and requests are the agent's, latency
the consumer's, including its own wakeup and parse of the answer's head).

How:
- One writer (writer.c) keeps ~CHILDREN persistent children "127.0.0.1:<port>"
  under /bench/svc, alternating create / delete-oldest. Ports only go up, so
  every (op, name) pair is unique and an observer line names exactly one change.
  The writer stamps the time just before it sends; the driver then waits until
  the active observer printed that change (or TIMEOUT_MS) before the next
  write, so latencies never queue behind each other.
- Observers run in rotated phases, one at a time: ROUNDS rounds, each giving
  every observer CHANGES/ROUNDS changes, the order rotated per round (so server
  warm-up, GC and drift are spread over all of them). Not concurrently because
  (1) on 2 cores three observers would steal CPU from each other and the one the
  server notifies first would win, and (2) per-observer CPU and request counts
  stay exact. A WARMUP phase (raw watcher, not measured) warms the server JIT.
- Requests per change are counted on the server, identically for all three:
  4lw `cons` lists every connection with `recved` (packets the server read on
  it: requests + pings). The observer's connection is found from its own
  socket (/proc/PID/fd inode -> /proc/net/tcp local port -> cons line). The
  count is the delta between "initial list reported" and "last change
  reported", divided by the changes; pings are included but are ~0 because
  every observer is busy the whole phase (a ping goes out only after
  session_timeout/3 of send silence). The observer's connect handshake and
  initial reads are outside the window.
- CPU: on-CPU time of all the observer's threads (/proc/PID/task/*/schedstat,
  ns) over the same window, so interpreter/VM start-up is excluded (reported
  separately as "start cpu s"). Peak RSS: VmHWM at the end of the phase.
- Wakeups: voluntary context switches of the observer's threads over the same
  window (/proc/PID/task/*/status): how often it blocked and was woken. On a
  loaded machine CPU per change moves by tens of percent from run to run;
  this count does not, and each wakeup is a large part of a change's cost.
- GAP_MS (0): a pause after each change is seen, before the next write: the pace of a quiet registry, where
  whatever a change leaves behind (a timer firing later, a thread's wakeup) is paid per change rather than shared.
  SHM=1: both scout policies also write a shared-memory snapshot (/dev/shm, removed at the end), as an agent
  feeding nginx does.
- STRACE=1: `strace -f -c` is attached to each observer for its measured changes and the syscalls per change are
  printed (the busiest ones by name): a count that, unlike CPU, does not depend on the load. strace slows every
  syscall, so the CPU and latency columns of such a run mean nothing.
- CALLGRIND=1: the raw client and every scout observer run under `valgrind --tool=callgrind` (kazoo is skipped:
  an interpreter's instructions say nothing here); the counters are zeroed when a measured window starts
  (`callgrind_control -z`) and dumped when it ends (`-d`), and the instructions per change are printed with the
  inclusive cost of the functions named in CG_FUNCS (comma-separated; a default list of the consumer's path):
  instructions, unlike CPU, do not move with the machine's load. CPU, latency and wakeups of such a run mean
  nothing; use GAP_MS=50 or more so that each change is one update. The agents' hook budget is 1 s in such a run
  (valgrind's slowdown made the default 50 ms stop the observer's hook now and then: a failed update and its retry).
  A scout observer's window starts once its agent has done the one Lua collection that follows its initial sync
  (`scout_lua_gc_settles_total`): it used to land in some windows and not others, up to 13k a change.
"""

import atexit
import os
import selectors
import signal
import subprocess
import sys
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import UnixHTTP, callgrind_dump as cg_dump, four, pct  # noqa: E402

CHANGES = int(os.environ.get("CHANGES", "2000"))
CHILDREN = int(os.environ.get("CHILDREN", "50"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
WARMUP = int(os.environ.get("WARMUP", "1000"))
TIMEOUT_MS = int(os.environ.get("TIMEOUT_MS", "5000"))
READY_S = float(os.environ.get("READY_S", "30"))
GAP_S = float(os.environ.get("GAP_MS", "0")) / 1000.0
STRACE = os.environ.get("STRACE") == "1"
CALLGRIND = os.environ.get("CALLGRIND") == "1"
CG_FUNCS = os.environ.get("CG_FUNCS", "scout_shm_slice_new,scout_shmpub_service,scout_service_json,"
                          "scout_epset_json,scout_rcbuf_adopt,malloc_consolidate,calloc,json_dumps").split(",")
if CALLGRIND:
    READY_S = max(READY_S, 180.0)
PATH = "/bench/svc"


def consumer_argv(bindir, sock):
    """The blocking-query consumer: blockwatch.c (libcurl, as a C app would write it; run.sh builds it) unless
    CONSUMER=py picks blockwatch.py. Both stamp an answer when it has arrived, before parsing it; the Python one
    adds its interpreter's wakeup and http.client's header parse to the latency (docs/performance/change.md)."""
    if os.environ.get("CONSUMER") == "py":
        return ["/usr/bin/python3", os.path.join(os.path.dirname(os.path.abspath(__file__)), "blockwatch.py"),
                sock, "svc"]
    return [os.path.join(bindir, "blockwatch"), sock, "svc"]


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


class Lines:
    """Non-blocking line reader over a fd."""

    def __init__(self, fd):
        self.fd, self.buf, self.eof = fd, b"", False
        os.set_blocking(fd, False)

    def read(self):
        out = []
        while True:
            try:
                b = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not b:
                self.eof = True
                break
            self.buf += b
        *lines, self.buf = self.buf.split(b"\n")
        for ln in lines:
            out.append(ln.decode("utf-8", "replace"))
        return out


# -- /proc helpers -------------------------------------------------------------

def cpu_ns(pid):
    total = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError):
                pass
    except OSError:
        return None
    return total


def wakeups(pid):
    """Voluntary context switches of all pid's threads: how often it slept (blocked) and was woken. Unlike CPU
    time it does not depend on the machine's load: a structural count (the raw client sleeps twice per change,
    for the watch event and for the read's answer)."""
    total = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                    for ln in f:
                        if ln.startswith("voluntary_ctxt_switches:"):
                            total += int(ln.split()[1])
            except (OSError, ValueError):
                pass
    except OSError:
        return None
    return total


def vm_hwm_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("VmHWM:"):
                    return int(ln.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def local_ports(pid, zk_ports):
    """Local ports of pid's established TCP connections to one of zk_ports."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if t.startswith("socket:["):
                inodes.add(t[8:-1])
    except OSError:
        return []
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for ln in f:
                    p = ln.split()
                    lport = int(p[1].rsplit(":", 1)[1], 16)
                    rport = int(p[2].rsplit(":", 1)[1], 16)
                    if p[3] == "01" and p[9] in inodes and rport in zk_ports:
                        ports.append(lport)
        except OSError:
            pass
    return ports


def recved(zk_ports, lport):
    """Server-side `recved` for the connection from 127.0.0.1:lport."""
    key = "/127.0.0.1:%d[" % lport
    for zp in zk_ports:
        for ln in four(zp, "cons").splitlines():
            if key in ln:
                for kv in ln.split("(", 1)[1].rstrip(")").split(","):
                    if kv.startswith("recved="):
                        return int(kv[7:])
    return None


# -- processes -----------------------------------------------------------------

class Writer:
    def __init__(self, exe, zk):
        self.p = subprocess.Popen([exe, zk], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lines = Lines(self.p.stdout.fileno())
        self.pending = []
        deadline = time.monotonic() + READY_S
        while True:
            for ln in self.lines.read():
                if ln == "ready":
                    return
            if self.lines.eof or time.monotonic() > deadline:
                raise SystemExit("bench: writer did not connect")
            time.sleep(0.01)

    def send(self, op, path):
        self.p.stdin.write(("%s %s\n" % (op, path)).encode())
        self.p.stdin.flush()

    def stop(self):
        self.p.stdin.close()
        self.p.wait(timeout=10)


class Observer:
    def __init__(self, name, argv, env=None, fifo=None, logfile=None):
        self.name, self.argv, self.env, self.fifo, self.logfile = name, argv, env, fifo, logfile
        self.lat = []          # ns
        self.misses = 0
        self.unexpected = 0
        self.cpu = 0           # ns, measured windows
        self.start_cpu = 0     # ns, start-up to ready
        self.hwm = 0.0
        self.reqs = 0
        self.wakes = 0
        self.req_ok = True
        self.skipped = None
        self.phases = 0
        self.sys = {}          # syscall -> calls, measured windows (STRACE=1)

    def launch(self):
        env = dict(os.environ)
        env.update(self.env or {})
        lf = open(self.logfile, "ab") if self.logfile else subprocess.DEVNULL
        if self.fifo:
            # an anonymous pipe, like the raw client's stdout, opened by the hook as /dev/fd/N: a FIFO on the
            # temp dir's file system cost every write an mtime update of its inode (ext4: a journalled dirty
            # inode, ~2% of the hook observer's CPU in perf), which the raw client never pays
            r, w = os.pipe()
            env["SCOUT_BENCH_OUT"] = "/dev/fd/%d" % w
            self.p = subprocess.Popen(self.argv, env=env, stdout=lf, stderr=lf,
                                      stdin=subprocess.DEVNULL, pass_fds=(w,))
            os.close(w)
            self.fd = r
        else:
            self.p = subprocess.Popen(self.argv, env=env, stdout=subprocess.PIPE,
                                      stderr=lf, stdin=subprocess.DEVNULL)
            self.fd = self.p.stdout.fileno()
        self.lines = Lines(self.fd)
        self.seen = {}         # (op, name) -> ns
        self.view = set()

    def pump(self):
        for ln in self.lines.read():
            try:
                ts, ev = ln.split(" ", 1)
                ts = int(ts)
            except ValueError:
                continue
            op, name = ev[0], ev[1:]
            if op == "+":
                self.view.add(name)
            elif op == "-":
                self.view.discard(name)
            self.seen[(op, name)] = ts

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self.fifo:
            os.close(self.fd)
        elif self.p.stdout:
            self.p.stdout.close()


class ApiObserver(Observer):
    """scout with a blocking-query consumer (consumer_argv): CPU, RSS and requests are scout's (self.p), the
    lines the consumer's, so latency is what an app reading the API sees."""

    def __init__(self, name, argv, consumer, logfile=None, parkers=None):
        super().__init__(name, argv, logfile=logfile)
        self.consumer_argv = consumer
        self.parkers_argv = parkers     # more parked clients beside the consumer (parkers.py), or None
        self.k = None

    def launch(self):
        lf = open(self.logfile, "ab") if self.logfile else subprocess.DEVNULL
        self.p = subprocess.Popen(self.argv, stdout=lf, stderr=lf, stdin=subprocess.DEVNULL)
        self.c = subprocess.Popen(self.consumer_argv, stdout=subprocess.PIPE, stderr=lf,
                                  stdin=subprocess.DEVNULL)
        if self.parkers_argv:
            self.k = subprocess.Popen(self.parkers_argv, stdout=lf, stderr=lf, stdin=subprocess.DEVNULL)
        self.fd = self.c.stdout.fileno()
        self.lines = Lines(self.fd)
        self.seen = {}
        self.view = set()

    def alive(self):
        return self.p.poll() is None and self.c.poll() is None and (self.k is None or self.k.poll() is None)

    def stop(self):
        for p in (self.c, self.k, self.p):
            if p is None:
                continue
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.c.stdout.close()


def strace_start(pid, tmp):
    """strace -f -c attached to pid (all its threads); returns once it is attached."""
    out = os.path.join(tmp, "strace-%d.txt" % pid)
    st = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-p", str(pid)], stderr=subprocess.PIPE,
                          universal_newlines=True)
    st.stderr.readline()    # "strace: Process N attached ..."
    st.out = out
    return st


def strace_stop(st):
    """Detaches; returns {syscall: calls} from strace's summary."""
    st.send_signal(signal.SIGINT)
    st.wait(timeout=30)
    st.stderr.close()
    calls = {}
    with open(st.out) as f:
        for ln in f:
            parts = ln.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3])
    os.unlink(st.out)
    return calls


def settled(sock, obs, timeout=120):
    """Wait until a scout observer's agent (the one whose API is at sock) has done the Lua collection after its
    initial sync, so that no measured window holds it; other observers have no sock."""
    if not os.path.exists(sock):
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            c = UnixHTTP(sock, timeout=10)
            c.request("GET", "/metrics")
            body = c.getresponse().read().decode()
            c.close()
            for ln in body.splitlines():
                if ln.startswith("scout_lua_gc_settles_total ") and float(ln.split()[1]) >= 1:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    log("%s: no collection after the sync in %ds; measuring anyway" % (obs.name, timeout))


def callgrind_zero(pid):
    subprocess.run(["callgrind_control", "-z", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)


def main():
    # SIGTERM -> SystemExit, so phase()'s finally still stops the observer
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    zk, bindir, root, tmp = sys.argv[1:5]
    if os.environ.get("SHM") == "1":
        shm = os.environ["SCOUT_BENCH_SHM"] = "/dev/shm/scout-bench-prop-%d" % os.getpid()
        atexit.register(lambda: os.path.exists(shm) and os.unlink(shm))
    if CALLGRIND:
        os.environ["SCOUT_BENCH_HOOK_BUDGET"] = "1s"    # policy.lua says why
    zk_ports = {int(h.rsplit(":", 1)[1]) for h in zk.split("/")[0].split(",")}
    sel = selectors.DefaultSelector()

    w = Writer(os.path.join(bindir, "writer"), zk)
    sel.register(w.lines.fd, selectors.EVENT_READ, "writer")

    def write_sync(op, path, obs=None, expect=None):
        """One write; returns (t0, rc). With obs/expect also waits for the observer."""
        w.send(op, path)
        got = None
        deadline = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if got is None:
                timeout = 10.0
            events = sel.select(timeout)
            for key, _ in events:
                if key.data == "writer":
                    for ln in w.lines.read():
                        t0, rc = ln.split()
                        got = (int(t0), int(rc))
                        deadline = time.monotonic() + TIMEOUT_MS / 1000.0
                    if w.lines.eof:
                        raise SystemExit("bench: writer exited")
                else:
                    key.data.pump()
            if got is None and not events:
                raise SystemExit("bench: writer did not answer %s %s" % (op, path))
            if got is not None:
                if obs is None or expect in obs.seen:
                    return got
                if time.monotonic() >= deadline or not obs.alive():
                    return got

    # service directory with CHILDREN children
    for p in ("/bench", PATH):
        t0, rc = write_sync("c", p)
        if rc not in (0, -110):  # ZNODEEXISTS
            raise SystemExit("bench: create %s: rc %d" % (p, rc))
    next_port = [10000]
    live = []

    def new_name():
        n = "127.0.0.1:%d" % next_port[0]
        next_port[0] += 1
        if next_port[0] > 65535:
            raise SystemExit("bench: ran out of unique ports; lower CHANGES")
        return n

    for _ in range(CHILDREN):
        n = new_name()
        t0, rc = write_sync("c", "%s/%s" % (PATH, n))
        assert rc == 0, rc
        live.append(n)

    change_no = [0]

    def one_change(obs):
        """Alternate create / delete-oldest; returns latency ns or None."""
        if change_no[0] % 2 == 0 or not live:
            name, op, wop = new_name(), "+", "c"
            live.append(name)
        else:
            name, op, wop = live.pop(0), "-", "d"
        change_no[0] += 1
        t0, rc = write_sync(wop, "%s/%s" % (PATH, name), obs, (op, name))
        if rc != 0:
            raise SystemExit("bench: %s %s: rc %d" % (wop, name, rc))
        ts = obs.seen.pop((op, name), None)
        return None if ts is None else ts - t0

    scout = os.environ.get("SCOUT") or os.path.join(root, "build", "scout")
    raw = Observer("raw C client", [os.path.join(bindir, "rawwatch"), zk, PATH, "10000"],
                   logfile=os.path.join(tmp, "rawwatch.log"))
    kaz = Observer("kazoo ChildrenWatch",
                   ["/usr/bin/python3", os.path.join(root, "bench", "propagation", "kazoowatch.py"),
                    zk, PATH, "10000"], logfile=os.path.join(tmp, "kazoowatch.log"))
    observers = [raw, kaz]
    sc = Observer("scout", [scout, "run", "-c", os.path.join(root, "bench", "propagation", "policy.lua"),
                            "--zk", zk, "--api", "unix:" + os.path.join(tmp, "scout.sock"),
                            "--log-level", "warn"],
                  env={"SCOUT_BENCH_OUT": os.path.join(tmp, "scout.fifo"),
                       "LUA_PATH": os.path.join(root, "bench", "propagation", "?.lua") + ";;"},
                  fifo=os.path.join(tmp, "scout.fifo"), logfile=os.path.join(tmp, "scout.log"))
    sock = os.path.join(tmp, "scout.sock")
    api = ApiObserver("scout, blocking query",
                      [scout, "run", "-c", os.path.join(root, "bench", "propagation", "policy_api.lua"),
                       "--zk", zk, "--api", "unix:" + sock, "--log-level", "warn"],
                      consumer_argv(bindir, sock),
                      logfile=os.path.join(tmp, "scout-api.log"))
    # SCOUT_BASE: a second agent binary (the one before a change) measured in the same run, phases rotated
    # with the others, so a before/after pair shares the machine's load
    base = os.environ.get("SCOUT_BASE")
    extra = []
    if base:
        sc_b = Observer("scout [base]", [base] + sc.argv[1:], env=sc.env,
                        fifo=os.path.join(tmp, "scout-base.fifo"), logfile=os.path.join(tmp, "scout-base.log"))
        sc_b.env = dict(sc.env, SCOUT_BENCH_OUT=sc_b.fifo)
        api_b = ApiObserver("scout [base], blocking query", [base] + api.argv[1:], api.consumer_argv,
                            logfile=os.path.join(tmp, "scout-api-base.log"))
        extra = [sc_b, api_b]
    # CONSUMER=both: one more row, the same agent serving the Python consumer (blockwatch.py), so the two
    # consumers' latencies share one run's load
    if os.environ.get("CONSUMER") == "both":
        extra.append(ApiObserver("scout, blocking query, Python consumer", api.argv,
                                 ["/usr/bin/python3", os.path.join(root, "bench", "propagation", "blockwatch.py"),
                                  sock, "svc"],
                                 logfile=os.path.join(tmp, "scout-api-py.log")))
    # PARKED=N: one more row, the blocking-query consumer with N more parked clients (parkers.py) on the same
    # service; against the plain blocking-query row it is the agent's cost per waiter
    parked = int(os.environ.get("PARKED", "0"))
    if parked > 0:
        extra.append(ApiObserver("scout, blocking query + %d parked" % parked, api.argv, api.consumer_argv,
                                 logfile=os.path.join(tmp, "scout-api-parked.log"),
                                 parkers=["/usr/bin/python3", os.path.join(root, "bench", "propagation", "parkers.py"),
                                          sock, "svc", str(parked)]))
    if CALLGRIND:
        kaz.skipped = "not under callgrind (an interpreter)"
        for i, o in enumerate([raw, sc, api] + extra):
            o.argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/cg-%d.%%p" % (tmp, i)] + o.argv
            o.cg_ir, o.cg_fn = 0, {}
    if os.access(scout, os.X_OK):
        observers.append(sc)
        observers.append(api)
        observers.extend(extra)
    else:
        sc.skipped = api.skipped = "build/scout not built"
        log("skipping scout: %s not found (make, or set SCOUT=path)" % scout)

    def phase(obs, n, measure=True):
        if obs.skipped:
            return
        if os.path.exists(os.path.join(tmp, "scout.sock")):
            os.unlink(os.path.join(tmp, "scout.sock"))
        obs.launch()
        sel.register(obs.fd, selectors.EVENT_READ, obs)
        try:
            t_launch = time.monotonic()
            want = set(live)
            while obs.view != want:
                for key, _ in sel.select(0.1):
                    if key.data is not obs:
                        continue
                    obs.pump()
                if not obs.alive() or time.monotonic() - t_launch > READY_S:
                    obs.skipped = ("exited" if not obs.alive() else "no initial list in %.0fs" % READY_S)
                    if obs.logfile and os.path.exists(obs.logfile):
                        with open(obs.logfile, errors="replace") as f:
                            tail = f.read()[-2000:]
                        log("%s: %s; log tail:\n%s" % (obs.name, obs.skipped, tail))
                    else:
                        log("%s: %s" % (obs.name, obs.skipped))
                    return
            settled(os.path.join(tmp, "scout.sock"), obs)
            obs.seen.clear()
            c0 = cpu_ns(obs.p.pid)
            w0 = wakeups(obs.p.pid)
            ports = local_ports(obs.p.pid, zk_ports)
            r0 = recved(zk_ports, ports[0]) if len(ports) == 1 else None
            st = strace_start(obs.p.pid, tmp) if STRACE and measure else None
            if CALLGRIND and measure:
                callgrind_zero(obs.p.pid)
            lats = []
            for _ in range(n):
                lat = one_change(obs)
                if GAP_S > 0:
                    time.sleep(GAP_S)
                if lat is None:
                    obs.misses += 1
                else:
                    lats.append(lat)
                if not obs.alive():
                    obs.skipped = "exited during the run"
                    log("%s exited during the run" % obs.name)
                    return
            time.sleep(0.05)
            obs.pump()
            if st is not None:
                for name, calls in strace_stop(st).items():
                    obs.sys[name] = obs.sys.get(name, 0) + calls
            if CALLGRIND and measure:
                ir, fn = cg_dump(obs.p.pid, tmp, CG_FUNCS)
                obs.cg_ir += ir
                for k, v in fn.items():
                    f = obs.cg_fn.setdefault(k, [0, 0])
                    f[0] += v[0]
                    f[1] += v[1]
            c1 = cpu_ns(obs.p.pid)
            w1 = wakeups(obs.p.pid)
            ports1 = local_ports(obs.p.pid, zk_ports)
            r1 = recved(zk_ports, ports[0]) if r0 is not None and ports1 == ports else None
            if not measure:
                return
            obs.phases += 1
            obs.unexpected += len(obs.seen)
            obs.lat.extend(lats)
            if os.environ.get("LAT_DIR"):
                fn = os.path.join(os.environ["LAT_DIR"], obs.name.split()[0] + ".lat")
                with open(fn, "a") as f:
                    f.write("".join("%d\n" % x for x in lats))
            obs.cpu += c1 - c0
            obs.wakes += (w1 or 0) - (w0 or 0)
            obs.start_cpu += c0
            obs.hwm = max(obs.hwm, vm_hwm_mb(obs.p.pid) or 0)
            if r0 is None or r1 is None:
                obs.req_ok = False
            else:
                obs.reqs += r1 - r0
        finally:
            sel.unregister(obs.fd)
            obs.stop()

    t_start = time.monotonic()
    if WARMUP:
        log("warm-up: %d changes with the raw watcher (not measured)" % WARMUP)
        phase(Observer("warmup", raw.argv), WARMUP, measure=False)
    per = max(1, CHANGES // ROUNDS)
    for r in range(ROUNDS):
        order = observers[r % len(observers):] + observers[:r % len(observers)]
        for obs in order:
            if obs.skipped:
                continue
            log("round %d/%d: %s, %d changes" % (r + 1, ROUNDS, obs.name, per))
            phase(obs, per)
    w.stop()
    elapsed = time.monotonic() - t_start

    # -- report ---------------------------------------------------------------
    print()
    print("propagation: %d changes per observer (%d rounds x %d, rotated phases, one observer "
          "active at a time), %d children under %s, warm-up %d" % (per * ROUNDS, ROUNDS, per,
                                                                    CHILDREN, PATH, WARMUP))
    print("latency = observer's CLOCK_MONOTONIC at publication - writer's just before the write;"
          " requests = server-side `cons` recved delta; wakeups = the observer's voluntary context switches"
          " (CPU, unlike them, depends on the load)")
    print()
    hdr = ("observer", "p50 ms", "p99 ms", "ratio p50", "ratio p99", "cpu s",
           "cpu/change ratio", "peak RSS MB", "requests/change", "wakeups/change")
    rows = []
    base = None
    for obs in [raw, kaz, sc, api] + extra:
        if not obs.lat:
            rows.append((obs.name, "skipped: %s" % (obs.skipped or "no data")))
            continue
        p50, p99 = pct(obs.lat, 0.50) / 1e6, pct(obs.lat, 0.99) / 1e6
        n = len(obs.lat) + obs.misses
        cpc = obs.cpu / n
        if base is None:
            base = (p50, p99, cpc)
        rq = "%.3f" % (obs.reqs / n) if obs.req_ok else "n/a"
        rows.append((obs.name + (" (partial: %s)" % obs.skipped if obs.skipped else ""), "%.3f" % p50, "%.3f" % p99, "%.2f" % (p50 / base[0]),
                     "%.2f" % (p99 / base[1]), "%.3f" % (obs.cpu / 1e9), "%.2f" % (cpc / base[2]),
                     "%.1f" % obs.hwm, rq, "%.2f" % (obs.wakes / n)))
    full = [r for r in rows if len(r) == len(hdr)]
    widths = [max([len(hdr[i])] + [len(r[i]) for r in full]) for i in range(len(hdr))]
    fmt = lambda r: " | ".join(c.ljust(widths[i]) for i, c in enumerate(r))
    print(fmt(hdr))
    print("-+-".join("-" * x for x in widths))
    for r in rows:
        print(fmt(r) if len(r) == len(hdr) else "%s | %s" % (r[0].ljust(widths[0]), r[1]))
    print()
    print("details: observer | changes | misses | unexpected lines | p90 ms | max ms | start cpu s")
    for obs in [raw, kaz, sc, api] + extra:
        if obs.lat:
            print("  %s | %d | %d | %d | %.3f | %.3f | %.3f" % (
                obs.name, len(obs.lat) + obs.misses, obs.misses, obs.unexpected,
                pct(obs.lat, 0.90) / 1e6, max(obs.lat) / 1e6, obs.start_cpu / 1e9 / max(1, obs.phases)))
    if STRACE:
        print("syscalls per change (strace -f -c; CPU and latency above are strace's, not the observer's):")
        for obs in [raw, kaz, sc, api] + extra:
            if obs.lat and obs.sys:
                n = len(obs.lat) + obs.misses
                top = sorted(obs.sys.items(), key=lambda kv: -kv[1])
                print("  %s | all %.2f | %s" % (obs.name, sum(obs.sys.values()) / n,
                                                " ".join("%s %.2f" % (k, v / n) for k, v in top[:9])))
    if CALLGRIND:
        print("callgrind instructions per change (the measured windows); CG_FUNCS inclusive: per change, "
              "calls per change, per call")
        for obs in [raw, sc, api] + extra:
            if obs.lat and obs.cg_ir:
                n = len(obs.lat) + obs.misses
                print("  %s | all %.1fk | %s" % (obs.name, obs.cg_ir / n / 1e3, " | ".join(
                    "%s %.1fk, %.2f, %.1fk" % (k, v[0] / n / 1e3, v[1] / n, v[0] / max(1, v[1]) / 1e3)
                    for k, v in obs.cg_fn.items() if v[0])))
    print("ratios are to the raw C client; cpu s = on-CPU time over the measured changes "
          "(start-up excluded, shown as start cpu s per phase); wall %.1fs" % elapsed)
    if sc.skipped and not sc.lat:
        print("scout: skipped (%s)" % sc.skipped)
    # non-zero on lost changes, or an observer that exists but failed
    bad = [o.name for o in [raw, kaz, sc, api] + extra
           if o.misses or (o.skipped and o.skipped != "build/scout not built"
                           and not o.skipped.startswith("not under callgrind"))]
    if bad:
        log("FAILED: %s" % ", ".join(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

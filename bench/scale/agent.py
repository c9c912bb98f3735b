"""agent.py -- one scout agent as the scale benchmark runs it: started with its own socket and
log in the temp dir (its pid recorded for run.sh), asked over its API, its log read, stopped;
started again when loading the policy passes its budget on a loaded machine.

Why a module: scale.py and perchange.py start and read agents the same way; the signal
handler here makes sure no agent outlives an interrupted run."""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import UnixHTTP  # noqa: E402
from config import SYNC_TIMEOUT_S, log  # noqa: E402
from measure import loadavg, memory_probe  # noqa: E402


def get(sock, path, timeout=60):
    """(status, headers dict, body bytes); raises OSError when nobody answers."""
    c = UnixHTTP(sock, timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    except http.client.HTTPException as e:
        raise OSError(str(e))
    finally:
        c.close()


LIVE = []
_launching = [False, None]


def on_signal(signum, frame):
    if _launching[0]:
        _launching[1] = signum
        return
    sys.exit(128 + signum)


class Agent:
    def __init__(self, scout, policy, zk, tmp, tag, level="info", cache_dir=None, wrap=()):
        self.sock = os.path.join(tmp, "%s.sock" % tag)
        self.logfile = os.path.join(tmp, "%s.log" % tag)
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        argv = list(wrap) + [scout, "run", "-c", policy, "--zk", zk, "--api", "unix:" + self.sock,
                "--log-level", level]
        if cache_dir:
            argv += ["--cache-dir", cache_dir]
        lf = open(self.logfile, "wb")
        _launching[0] = True
        try:
            self.wall0 = time.time()
            self.t0 = time.monotonic()
            self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf)
            LIVE.append(self)
            with open(os.path.join(tmp, "pids"), "a") as f:
                f.write("%d\n" % self.p.pid)
        finally:
            _launching[0] = False
            lf.close()
        if _launching[1]:
            sys.exit(128 + _launching[1])
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def get(self, path, timeout=60):
        return get(self.sock, path, timeout)

    def metrics(self):
        st, _, body = self.get("/metrics")
        out = {}
        for ln in body.decode().splitlines():
            if ln and not ln.startswith("#") and not ln.startswith("scout_service_"):
                k, v = ln.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def service_metric_sum(self, name):
        st, _, body = self.get("/metrics")
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in body.decode().splitlines()
                   if ln.startswith(name + "{"))

    def all_synced(self):
        st, _, body = self.get("/v1/services")
        return all(x["state"] == "synced" for x in json.loads(body))

    def log_lines(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read().splitlines()
        except OSError:
            return []

    def log_tail(self, n=15):
        return "\n".join(self.log_lines()[-n:])

    def stop(self):
        """SIGTERM; seconds until it exited."""
        t = time.monotonic()
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self in LIVE:
            LIVE.remove(self)
        return time.monotonic() - t


def log_ts(line):
    """Wall-clock seconds of a scout log line (UTC, ms)."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z ", line)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=timezone.utc).timestamp()


def warnings_of(agent, since=0):
    """Counts of WARN/ERROR lines by their message shape (numbers and ids folded)."""
    out = {}
    for ln in agent.log_lines()[since:]:
        p = ln.split(None, 3)
        if len(p) == 4 and p[1] in ("WARN", "ERROR"):
            shape = re.sub(r"0x[0-9a-f]+|\d+", "N", p[2] + " " + p[3])
            out[shape] = out.get(shape, 0) + 1
    return out


LOAD_RETRIES = 5


def start_agent(scout, policy, zk, tmp, tag, notes, **kw):
    """Agent(...), started again (at most LOAD_RETRIES times) when it exits because loading
    the policy passed its wall-clock budget (5 s at start: on this shared machine, under
    nice, 100,000 services -- even 10,000 -- can wait that long for a CPU). Each retry is
    noted in the table: it is the machine's load, not a measure of the agent."""
    for attempt in range(LOAD_RETRIES + 1):
        a = Agent(scout, policy, zk, tmp, tag, **kw)
        while a.alive() and not os.path.exists(a.sock) and time.monotonic() - a.t0 < 120:
            time.sleep(0.01)
        if a.alive() or attempt == LOAD_RETRIES:
            return a
        tail = a.log_tail(3)
        if "exceeded its" not in tail or "budget" not in tail:
            return a                    # another failure: the caller reports it
        notes.append("agent %s: the policy load passed its wall-clock budget (load average %s); "
                     "started again" % (tag, loadavg()))
        log("agent %s: policy load over budget, starting it again: %s" % (tag, tail.splitlines()[-1]))
        a.stop()
    return a


def memory_empty(scout, policy, zk, tmp):
    """The same policy on a registry that has none of its paths yet (run before the
    populate): what the services cost without a single endpoint. None if it never
    answers health 200 (then the per-endpoint rows count the services' cost too)."""
    a = start_agent(scout, policy, zk, tmp, "mem0", [], cache_dir=os.path.join(tmp, "cache-mem0"))
    mem = None
    while time.monotonic() - a.t0 < SYNC_TIMEOUT_S and a.alive():
        try:
            if a.get("/v1/health", timeout=10)[0] == 200:
                time.sleep(1)
                mem = memory_probe(a)
                break
        except OSError:
            pass
        time.sleep(0.1)
    a.stop()
    return mem

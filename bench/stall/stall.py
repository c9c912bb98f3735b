"""stall.py — loop-stall benchmark driver (run by run.sh with /usr/bin/python3; kazoo from Debian).

Why: issue 10 — scout is one thread, and anything that holds its loop longer than the session timeout expires the
session and withdraws every registration. This measures, in one run and on one agent, how long the loop is held and
how fast a fresh client's GET /v1/health is answered under each attack a local client can mount, next to an idle
baseline. Nothing is asserted: the table is printed, and the run fails only if the agent cannot be started.

Setup: CHILDREN (5000) children under /stall/big (codec plain, names host:port), the agent on a loopback TCP port with
`service "big"` and a registration under /stall/reg, session_timeout 4000 ms (the short timeout an attack must not
outlast). Phases, in order, each PHASE_S (5 s) or until its attack is over:
  idle      nothing but the probe
  explain   FLOOD (300) connections each send GET /v1/explain/big and close without reading, all at once; the phase
            ends when the agent has handled all of them (scout_api_requests_total + _dropped_total) or after 60 s
  slowloris SLOW (500) connections each send a request line and dribble one header byte a second; the phase lasts
            12 s (past the 10 s request deadline) and counts how many the agent closed
  idle-conn IDLE (2000) connections opened and left idle (beyond the connection cap)
The probe: GET /v1/health on a fresh TCP connection, back to back (20 ms apart), for the whole phase; p50, p99 and
max latency and the failures (non-200, timeout at 10 s, refused). "worst stall" is the longest single loop
iteration in the phase: from the agent's "held the loop for N ms" log lines when one is over 100 ms, else the
upper bound of the highest scout_loop_stall_seconds bucket that moved (printed as "<= X ms"). "session" says
whether the registration's session survived (same ephemeralOwner, scout_zk_session_expirations_total unchanged).
"""

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import pct  # noqa: E402

from kazoo.client import KazooClient  # noqa: E402

CHILDREN = int(os.environ.get("CHILDREN", 5000))
FLOOD = int(os.environ.get("FLOOD", 300))
SLOW = int(os.environ.get("SLOW", 500))
IDLE = int(os.environ.get("IDLE", 2000))
PHASE_S = float(os.environ.get("PHASE_S", 5))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, timeout=10):
    """(status, body) of one GET on a fresh connection."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    finally:
        s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError("no HTTP answer (%d bytes)" % len(out))
    return int(parts[1]), body


def metrics(port):
    out = {}
    for line in http_get(port, "/metrics")[1].decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def metrics_patient(port, within=60):
    """metrics(), retried while the agent does not answer (an agent without these fixes may be held for long);
    {} if it never does."""
    deadline = time.monotonic() + within
    while True:
        try:
            return metrics(port)
        except OSError:
            if time.monotonic() > deadline:
                return {}


class Probe:
    def __init__(self, port):
        self.port = port
        self.lat = []
        self.fail = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                st, _ = http_get(self.port, "/v1/health")
                if st != 200:
                    self.fail += 1
            except OSError:
                self.fail += 1
            self.lat.append(time.monotonic() - t0)
            self.stop.wait(0.02)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()


BUCKET = re.compile(r'scout_loop_stall_seconds_bucket\{le="([^"]+)"\}')


def worst_bucket(m0, m1):
    """Upper bound (seconds) of the highest histogram bucket whose count moved less than the total did."""
    total = m1.get("scout_loop_stall_seconds_count", 0) - m0.get("scout_loop_stall_seconds_count", 0)
    if total <= 0:
        return None
    bounds = sorted((float(BUCKET.match(k).group(1)), k) for k in m1 if BUCKET.match(k) and "+Inf" not in k)
    for le, k in bounds:
        if m1[k] - m0.get(k, 0) >= total:
            return le
    return float("inf")


def held_lines(log, since):
    out = []
    for line in log[since:].splitlines():
        m = re.search(r"held the loop for (\d+) ms", line)
        if m:
            out.append(int(m.group(1)))
    return out


def main():
    zk, tmp, root = sys.argv[1], sys.argv[2], sys.argv[3]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))     # the attacks need fds of their own
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    kz = KazooClient(hosts=zk)
    kz.start()
    kz.ensure_path("/stall/big")
    for start in range(0, CHILDREN, 1000):
        for p in [kz.create_async("/stall/big/10.%d.%d.%d:8080" % (i // 65536, i // 256 % 256, i % 256), b"")
                  for i in range(start, min(CHILDREN, start + 1000))]:
            p.get(timeout=60)
    port = free_port()
    policy = os.path.join(tmp, "policy.lua")
    with open(policy, "w") as f:
        f.write('zookeeper { servers = "127.0.0.1:1", session_timeout = 4000 }\n'
                'service "big" { path = "/stall/big", codec = "plain" }\n'
                'register "me" { path = "/stall/reg", codec = "rpcx", endpoint = { host = "127.0.0.1", port = 9 } }\n')
    logf = os.path.join(tmp, "scout.log")
    scout = os.environ.get("SCOUT", os.path.join(root, "build", "scout"))
    with open(logf, "ab") as lf:
        p = subprocess.Popen([scout, "run", "-c", policy, "--zk", zk, "--api", "127.0.0.1:%d" % port],
                             stdout=lf, stderr=lf, stdin=subprocess.DEVNULL)
    with open(os.path.join(tmp, "pid"), "w") as f:
        f.write("%d\n" % p.pid)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if b'"endpoints":%d' % CHILDREN in http_get(port, "/v1/services")[1] and kz.get_children("/stall/reg"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or p.poll() is not None:
                print("stall: the agent did not sync %d children in 120 s" % CHILDREN, file=sys.stderr)
                return 1
            time.sleep(0.1)
        reg = "/stall/reg/" + kz.get_children("/stall/reg")[0]
        owner = kz.get(reg)[1].ephemeralOwner
        rows = []

        def phase(name, attack):
            m0 = metrics_patient(port)
            log0 = len(open(logf, errors="replace").read())
            with Probe(port) as probe:
                note = attack(m0)
            m1 = metrics_patient(port)
            held = held_lines(open(logf, errors="replace").read(), log0)
            wb = worst_bucket(m0, m1)
            if held:
                worst = "%d ms" % max(held)
            elif wb is None:
                worst = "-"
            else:
                worst = "<= %g ms" % (wb * 1000)
            try:
                same = kz.exists(reg) is not None and kz.get(reg)[1].ephemeralOwner == owner
            except Exception:
                same = False
            exp = m1.get("scout_zk_session_expirations_total", 0) - m0.get("scout_zk_session_expirations_total", 0)
            lat = probe.lat or [float("nan")]
            rows.append((name, worst, len(held), "%.1f" % (pct(lat, 0.5) * 1e3), "%.1f" % (pct(lat, 0.99) * 1e3),
                         "%.1f" % (max(lat) * 1e3), "%d/%d" % (probe.fail, len(probe.lat)),
                         "kept" if same and exp == 0 else "LOST (%d expirations)" % exp, note))

        def idle(m0):
            time.sleep(PHASE_S)
            return ""

        def explain(m0):
            seen0 = m0.get("scout_api_requests_total", 0) + m0.get("scout_api_requests_dropped_total", 0)
            t0 = time.monotonic()
            for _ in range(FLOOD):
                c = socket.create_connection(("127.0.0.1", port))
                c.sendall(b"GET /v1/explain/big HTTP/1.1\r\nHost: x\r\n\r\n")
                c.close()
            while time.monotonic() - t0 < 60:
                try:
                    m = metrics(port)
                    seen = m.get("scout_api_requests_total", 0) + m.get("scout_api_requests_dropped_total", 0)
                    if seen - seen0 >= FLOOD and time.monotonic() - t0 >= PHASE_S:
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            try:
                m = metrics(port)
                dropped = m.get("scout_api_requests_dropped_total", 0) - m0.get("scout_api_requests_dropped_total", 0)
                return "%d requests in %.1f s, %d dropped unrendered" % (FLOOD, time.monotonic() - t0, dropped)
            except OSError:
                return "%d requests; metrics unreachable" % FLOOD

        def slowloris(m0):
            conns = []
            for _ in range(SLOW):
                try:
                    c = socket.create_connection(("127.0.0.1", port), timeout=1)
                    c.sendall(b"GET /v1/health HTTP/1.1\r\nX-Pad: ")
                    c.setblocking(False)
                    conns.append(c)
                except OSError:
                    break
            t0 = time.monotonic()
            closed = set()
            while time.monotonic() - t0 < 12:
                for i, c in enumerate(conns):
                    if i in closed:
                        continue
                    try:
                        if c.recv(4096) == b"":
                            closed.add(i)
                            continue
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed.add(i)
                        continue
                    try:
                        c.send(b"a")
                    except OSError:
                        closed.add(i)
                time.sleep(1.0)
            for c in conns:
                c.close()
            return "%d dribbling connections, %d closed by the agent within 12 s" % (len(conns), len(closed))

        def idleconn(m0):
            conns = []
            for _ in range(IDLE):
                try:
                    conns.append(socket.create_connection(("127.0.0.1", port), timeout=1))
                except OSError:
                    break
            time.sleep(PHASE_S)
            for c in conns:
                c.close()
            try:
                ev = metrics(port).get("scout_api_idle_evictions_total", 0) - m0.get("scout_api_idle_evictions_total", 0)
            except OSError:
                ev = -1
            return "%d idle connections, %d evicted for newer ones" % (len(conns), ev)

        phase("idle", idle)
        phase("explain flood", explain)
        phase("slowloris", slowloris)
        phase("idle-conn flood", idleconn)

        head = ("phase", "worst stall", ">100ms", "health p50 ms", "p99 ms", "max ms", "fail/probes", "session")
        w = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
        print("scout loop stall: %d children, session timeout 4000 ms, %s" % (CHILDREN, scout))
        print("  ".join(h.ljust(w[i]) for i, h in enumerate(head)))
        for r in rows:
            print("  ".join(str(r[i]).ljust(w[i]) for i in range(len(head))))
        print()
        for r in rows:
            if r[-1]:
                print("%s: %s" % (r[0], r[-1]))
        return 0
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        kz.stop()
        kz.close()


if __name__ == "__main__":
    sys.exit(main())

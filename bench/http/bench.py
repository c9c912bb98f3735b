"""bench.py — the hand-written API server against the libmicrohttpd prototype, in one run (issue 10 item 7).

Run by run.sh (which starts ZooKeeper and builds build/scout-mhd) with /usr/bin/python3 and kazoo from Debian.

Two agents, build/scout (http-parser) and build/scout-mhd (bench/http/http_mhd.c), watch the same service of
ENDPOINTS (100) children on the same ZooKeeper, each on its own loopback port.  Then:
  1. wire: the same raw requests (malformed, oversized, odd versions, half-close) sent to both; the first line of
     each answer (or EOF/RST/timeout) side by side.  Nothing asserted: the table is the finding.
  2. load: wrk (-t1, CONNS connections, DURATION s, --latency) against GET /v1/health and GET /v1/services/svc,
     ROUNDS rounds alternating old and new so drift on a shared machine hits both; requests/s, p99 and the agent's
     CPU seconds per 10k requests (utime+stime from /proc/PID/stat over the wrk run).  Medians over the rounds, and
     new/old ratios.
Env: ENDPOINTS (100), CONNS (50), DURATION (8), ROUNDS (3).
"""

import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from kazoo.client import KazooClient

ZK, TMP, ROOT = sys.argv[1], sys.argv[2], sys.argv[3]
ENDPOINTS = int(os.environ.get("ENDPOINTS", 100))
CONNS = int(os.environ.get("CONNS", 50))
DURATION = int(os.environ.get("DURATION", 8))
ROUNDS = int(os.environ.get("ROUNDS", 3))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, binary):
    d = tempfile.mkdtemp(prefix=name + ".", dir=TMP)
    port = free_port()
    with open(os.path.join(d, "policy.lua"), "w") as f:
        f.write('zookeeper { servers = "127.0.0.1:1", session_timeout = 10000 }\n'
                'cache { dir = "%s" }\n'
                'service "svc" { path = "/bench/svc", codec = "plain" }\n' % d)
    log = open(os.path.join(d, "scout.log"), "ab")
    p = subprocess.Popen([binary, "run", "-c", os.path.join(d, "policy.lua"), "--zk", ZK,
                          "--api", "127.0.0.1:%d" % port, "--log-level", "warn"], stdout=log, stderr=log)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/v1/services/svc" % port, timeout=2) as r:
                if r.status == 200 and len(r.read()) > ENDPOINTS * 10:
                    return p, port
        except Exception:
            pass
        time.sleep(0.2)
    p.kill()
    sys.exit("%s did not come up (see %s)" % (binary, d))


def raw(port, data, half_close=False, wait=2.0):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(wait)
    out = b""
    try:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        while True:
            b = s.recv(65536)
            if not b:
                out += b"<EOF>"
                break
            out += b
    except socket.timeout:
        out += b"<open>"
    except (ConnectionResetError, BrokenPipeError):
        out += b"<RST>"
    finally:
        s.close()
    first = out.split(b"\r\n", 1)[0] if out.startswith(b"HTTP/") else out[-6:]
    n = out.count(b"HTTP/1.1 ")
    return "%s%s" % (first.decode("latin-1")[:40], "" if n <= 1 else " (+%d more)" % (n - 1))


CASES = [
    ("no space in request line", b"GARBAGE\r\n\r\n", False),
    ("space in target", b"GET /v1/he alth HTTP/1.1\r\nHost: x\r\n\r\n", False),
    ("space in header name", b"GET /v1/health HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", False),
    ("two Content-Lengths", b"POST /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                            b"Content-Length: 2\r\n\r\nab", False),
    ("bad chunk size", b"POST /v1/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", False),
    ("10 KB header (cap 8 KB)", b"GET /v1/health HTTP/1.1\r\nX-Big: " + b"a" * 10000 + b"\r\n\r\n", False),
    ("5 KB target (cap 4 KB)", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n", False),
    ("100 KB body (cap 64 KB)", b"POST /x HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + b"b" * 100000, False),
    ("HTTP/1.2", b"GET /v1/health HTTP/1.2\r\nHost: x\r\n\r\n", False),
    ("HTTP/2.0", b"GET /v1/health HTTP/2.0\r\nHost: x\r\n\r\n", False),
    ("HTTP/1.0", b"GET /v1/health HTTP/1.0\r\n\r\n", False),
    ("two pipelined", b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/health HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n", False),
    ("request, then half-close", b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n", True),
]


def cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wrk(pid, port, path):
    c0 = cpu(pid)
    out = subprocess.run(["wrk", "-t1", "-c%d" % CONNS, "-d%ds" % DURATION, "--latency",
                          "http://127.0.0.1:%d%s" % (port, path)], capture_output=True, text=True).stdout
    c1 = cpu(pid)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return rps, p99, (c1 - c0) / total * 1e4, errs.group(0) if errs else ""


def main():
    zk = KazooClient(hosts=ZK)
    zk.start()
    zk.ensure_path("/bench/svc")
    for i in range(ENDPOINTS):
        zk.create("/bench/svc/10.0.%d.%d:8080" % (i // 250, i % 250 + 1), b"")
    zk.stop()
    old, oport = start("old", os.path.join(ROOT, "build/scout"))
    new, nport = start("mhd", os.path.join(ROOT, "build/scout-mhd"))
    try:
        print("\n1. the same bytes to both servers (first line of the answer, or what the socket did)\n")
        print("%-28s %-42s %s" % ("request", "http-parser (build/scout)", "libmicrohttpd 0.9.75 (scout-mhd)"))
        for name, data, half in CASES:
            print("%-28s %-42s %s" % (name, raw(oport, data, half), raw(nport, data, half)))
        print("\n2. wrk -t1 -c%d -d%ds --latency, %d rounds alternating, medians; CPU = agent CPU ms per 10k "
              "requests\n" % (CONNS, DURATION, ROUNDS))
        res = {}
        for path in ("/v1/health", "/v1/services/svc"):
            for _ in range(ROUNDS):
                for tag, p, port in (("old", old, oport), ("mhd", new, nport)):
                    r = wrk(p.pid, port, path)
                    res.setdefault((path, tag), []).append(r)
                    if r[3]:
                        print("  note: %s %s: %s" % (tag, path, r[3]))
        print("%-18s %-6s %10s %9s %12s" % ("path", "server", "req/s", "p99 ms", "CPU ms/10k"))
        for path in ("/v1/health", "/v1/services/svc"):
            med = {}
            for tag in ("old", "mhd"):
                rows = res[(path, tag)]
                med[tag] = [statistics.median(r[i] for r in rows) for i in range(3)]
                print("%-18s %-6s %10.0f %9.2f %12.1f   rounds: %s" % (
                    path, tag, med[tag][0], med[tag][1], med[tag][2] * 1e3,
                    " ".join("%.0f" % r[0] for r in rows)))
            print("%-18s %-6s %10.2f %9.2f %12.2f" % (path, "mhd/old", med["mhd"][0] / med["old"][0],
                                                     med["mhd"][1] / med["old"][1], med["mhd"][2] / med["old"][2]))
    finally:
        for p in (old, new):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


main()

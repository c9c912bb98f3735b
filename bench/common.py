"""common.py — what the benchmark drivers share (run with /usr/bin/python3; stdlib only).

Why: propagation, storm and scale each ask ZooKeeper 4lw questions, take percentiles and talk HTTP over the agent's
unix socket; one copy each here, imported by bench/*/ with sys.path pointing one level up.
"""

import glob
import http.client
import os
import re
import socket
import subprocess


def four(port, cmd, timeout=3):
    """A ZooKeeper four-letter word on 127.0.0.1:port; the whole answer as text."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(cmd.encode())
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        return out.decode()
    finally:
        s.close()


def pct(xs, q):
    """The q-quantile (0..1) of xs, nearest rank."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q * len(xs) + 0.5)) - 1))]


class UnixHTTP(http.client.HTTPConnection):
    """HTTP/1.1 to the agent's unix socket."""

    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def callgrind_file(path, funcs=()):
    """A callgrind output file's (instructions, {function in funcs: [inclusive instructions, calls]}); removed
    unless KEEP=1."""
    ir, fn = 0, {}
    out = subprocess.run(["callgrind_annotate", "--tree=caller", "--inclusive=yes", "--threshold=100", path],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    calls = 0           # callers' counts ("< caller (Nx)") of the function a block is about
    for ln in out.splitlines():
        parts = ln.split()
        if not parts:
            calls = 0
            continue
        if not parts[0].replace(",", "").isdigit():
            continue
        v = int(parts[0].replace(",", ""))
        if ln.rstrip().endswith("PROGRAM TOTALS"):
            ir += v
        elif "  < " in ln:
            m = re.search(r"\((\d+)x\)", ln)
            calls += int(m.group(1)) if m else 0
        elif "  *  " in ln:
            name = ln.split("  *  ", 1)[1].split(" [", 1)[0].split(":", 1)[-1].split("'")[0]
            if name in funcs:
                # a function may show twice (once per spelling of its file name, its callers in one): the
                # same function, not twice the cost
                f = fn.setdefault(name, [0, 0])
                f[0], f[1] = max(f[0], v), max(f[1], calls)
    if os.environ.get("KEEP") != "1":
        os.unlink(path)
    return ir, fn


def callgrind_dump(pid, tmp, funcs=()):
    """Dumps the counters since the last zero of pid, run under `valgrind --tool=callgrind
    --callgrind-out-file=TMP/cg-NAME.%p`; returns callgrind_file's pair, summed over the files the dump wrote."""
    before = set(glob.glob(os.path.join(tmp, "cg-*.%d.*" % pid)))
    subprocess.run(["callgrind_control", "-d", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    new = sorted(set(glob.glob(os.path.join(tmp, "cg-*.%d.*" % pid))) - before)
    if not new:
        raise SystemExit("bench: callgrind wrote no dump for %d" % pid)
    ir, total = 0, {}
    for path in new:
        n, fn = callgrind_file(path, funcs)
        ir += n
        for k, v in fn.items():
            t = total.setdefault(k, [0, 0])
            t[0] += v[0]
            t[1] += v[1]
    return ir, total

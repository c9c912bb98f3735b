"""common.py — what the benchmark drivers share (run with /usr/bin/python3; stdlib only).

Why: propagation, storm and scale each ask ZooKeeper 4lw questions, take percentiles and talk HTTP over the agent's
unix socket; one copy each here, imported by bench/*/ with sys.path pointing one level up.
"""

import http.client
import socket


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

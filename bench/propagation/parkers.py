"""parkers.py -- N silent blocking-query clients of scout's API, for the propagation benchmark (bench.py, PARKED=N).

Why: issue 14 asks that a change reach every parked query without extra work per client: one encoding of the new
index, shared, and nothing but the write per waiter. With these beside blockwatch.py, the agent answers N + 1
parked queries per change; bench.py's "+ N parked" row against the plain blocking-query row is the cost per
waiter. Each connection asks again at the index it was answered with, as blockwatch.py does; nothing is printed.

Usage: parkers.py SOCKET SERVICE N
"""

import selectors
import socket
import sys
import time


def request(name, index):
    return ("GET /v1/services/%s?index=%d&wait=60s HTTP/1.1\r\nHost: localhost\r\n\r\n" % (name, index)).encode()


def connect(path):
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            return s
        except OSError:
            s.close()
            time.sleep(0.01)     # the agent is starting


def main():
    path, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sel = selectors.DefaultSelector()
    for _ in range(n):
        s = connect(path)
        s.sendall(request(name, 0))
        sel.register(s, selectors.EVENT_READ, {"buf": b""})
    while True:
        for key, _ in sel.select():
            s, st = key.fileobj, key.data
            b = s.recv(1 << 20)
            if not b:
                raise SystemExit("parkers: the agent closed a connection")
            st["buf"] += b
            while True:
                head, sep, rest = st["buf"].partition(b"\r\n\r\n")
                if not sep:
                    break
                hdrs = dict(ln.split(b": ", 1) for ln in head.split(b"\r\n")[1:] if b": " in ln)
                clen = int(hdrs.get(b"Content-Length", b"0"))
                if len(rest) < clen:
                    break
                st["buf"] = rest[clen:]
                s.sendall(request(name, int(hdrs.get(b"X-Scout-Index", b"0"))))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass

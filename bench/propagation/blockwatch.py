"""blockwatch.py -- a blocking-query consumer of scout's HTTP API, for the propagation benchmark (bench.py).

Why: issue 14 asks what a change costs scout when a consumer sees it through a Consul-style blocking query
(GET /v1/services/NAME?index=I&wait=...) rather than through a hook. This is that consumer, as an app would
write it: one keep-alive connection on the unix socket, each answer's X-Scout-Index asked back. It stamps
CLOCK_MONOTONIC (time.monotonic_ns, the clock writer.c uses) as soon as an answer has arrived, before parsing
it, and prints one "<ns> +id" / "<ns> -id" line per endpoint of the difference, like the other observers.

Usage: blockwatch.py SOCKET SERVICE
"""

import http.client
import json
import socket
import sys
import time


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=120)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.unix_path)
        self.sock = s


def main():
    sock_path, name = sys.argv[1], sys.argv[2]
    out = sys.stdout
    conn = None
    index, view = 0, set()
    while True:
        try:
            if conn is None:
                conn = UnixConnection(sock_path)
            conn.request("GET", "/v1/services/%s?index=%d&wait=60s" % (name, index))
            resp = conn.getresponse()
            body = resp.read()
            now = time.monotonic_ns()
        except (OSError, http.client.HTTPException):
            conn = None         # the agent is starting (no socket yet) or went away
            time.sleep(0.01)
            continue
        if resp.status != 200:
            time.sleep(0.01)
            continue
        index = int(resp.getheader("X-Scout-Index") or 0)
        ids = set(ep["id"] for ep in json.loads(body))
        lines = ["%d +%s\n" % (now, i) for i in ids - view] + ["%d -%s\n" % (now, i) for i in view - ids]
        view = ids
        if lines:
            out.write("".join(lines))
            out.flush()


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, BrokenPipeError):
        pass

"""The API's HTTP rules on the wire, against the running agent (issue 10 item 7): a malformed or oversized request gets
its status (400, 413, 414, 431, 505) and a closed connection; pipelined requests are answered in order on one
connection; HTTP/1.1 stays open unless the client says close, HTTP/1.0 closes unless it says keep-alive.  Whatever
parses HTTP inside the agent (http-parser today, libmicrohttpd in bench/http/'s prototype), these must hold."""

import socket
import unittest

from scoutharness import Scout, policy, wait_until
from zkharness import SharedZooKeeper


def read_response(f):
    """(status, {lower-case header: value}, body) of one response from a socket file, or None at EOF."""
    line = f.readline()
    if not line:
        return None
    status = int(line.split()[1])
    headers = {}
    while True:
        h = f.readline().rstrip(b"\r\n")
        if not h:
            break
        k, _, v = h.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    body = f.read(int(headers.get("content-length", 0)))
    return status, headers, body


class Wire(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = SharedZooKeeper().start()
        kz = cls.zk.client()
        kz.ensure_path("/wire/svc")
        kz.create("/wire/svc/10.0.0.1:80")
        cls.scout = Scout(policy({"svc": 'path = "/wire/svc", codec = "plain"'}), cls.zk.connect).start()
        wait_until(lambda: cls.scout.ids("svc") == ["10.0.0.1:80"], what="svc published")
        cls.port = int(cls.scout.api.rsplit(":", 1)[1])

    @classmethod
    def tearDownClass(cls):
        cls.scout.stop()
        cls.zk.stop()

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        self.addCleanup(s.close)
        return s, s.makefile("rb")

    def test_bad_requests_get_their_status_and_the_connection_closes(self):
        cases = [
            ("no space in the request line", b"GARBAGE\r\n\r\n", 400),
            ("a space in the target", b"GET /v1/he alth HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("a 10 KB header (cap 8 KB)", b"GET /v1/health HTTP/1.1\r\nX-Big: " + b"a" * 10000 + b"\r\n\r\n", 431),
            ("a 5 KB target (cap 4 KB)", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n", 414),
            ("a 100 KB body (cap 64 KB)",
             b"POST /v1/health HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + b"b" * 100000, 413),
            ("HTTP/2.0", b"GET /v1/health HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        ]
        for what, data, want in cases:
            s, f = self.connect()
            s.sendall(data)
            r = read_response(f)
            self.assertIsNotNone(r, "%s: closed without an answer" % what)
            self.assertEqual(r[0], want, what)
            self.assertEqual(r[1].get("connection"), "close", what)
            self.assertEqual(f.read(), b"", "%s: connection not closed after the answer" % what)
        # and nothing of it reached the agent's health
        self.assertEqual(self.scout.health()[0], 200)

    def test_the_heads_bytes_are_pinned(self):
        # The head is written by http_head.c for every answer (http.c out_response): these bytes, in this order,
        # for an answer with a body (its length), a HEAD (the length, no body) and a 1.0 client's keep-alive.
        import re
        s, f = self.connect()
        index = self.scout.endpoints("svc")[1]["X-Scout-Index"]
        body = b'[{"id":"10.0.0.1:80","host":"10.0.0.1","port":80,"weight":1,"status":"up","zxid":%d,"meta":{}}]'

        def head(req):
            s.sendall(req)
            raw = b""
            while b"\r\n\r\n" not in raw:
                chunk = s.recv(65536)
                self.assertTrue(chunk, "connection closed before the head's end")
                raw += chunk
            h, _, rest = raw.partition(b"\r\n\r\n")
            return re.sub(rb"Date: [^\r]*", b"Date: D", h + b"\r\n\r\n"), rest

        h, rest = head(b"GET /v1/services/svc HTTP/1.1\r\n\r\n")
        n = int(re.search(rb"Content-Length: (\d+)", h).group(1))
        while len(rest) < n:
            rest += s.recv(65536)
        zxid = int(re.search(rb'"zxid":(\d+)', rest).group(1))
        self.assertEqual(rest, body % zxid)
        self.assertEqual(h, b"HTTP/1.1 200 OK\r\nDate: D\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                         b"X-Scout-Index: %s\r\nX-Scout-State: synced\r\n\r\n" % (n, index.encode()))
        # HEAD is refused by the API (405), and its head still says the refusal's length, without the body
        h, rest = head(b"HEAD /v1/services/svc HTTP/1.1\r\n\r\n")
        self.assertEqual((h, rest), (b"HTTP/1.1 405 Method Not Allowed\r\nDate: D\r\nContent-Type: application/json"
                                     b"\r\nContent-Length: 33\r\nAllow: GET\r\n\r\n", b""))
        h, _ = head(b"DELETE /v1/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        self.assertEqual(h, b"HTTP/1.1 405 Method Not Allowed\r\nDate: D\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 33\r\nAllow: GET\r\nConnection: keep-alive\r\n\r\n")

    def test_pipelined_requests_are_answered_in_order(self):
        s, f = self.connect()
        s.sendall(b"GET /v1/services/svc HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /v1/services/nope HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        first, second, third = read_response(f), read_response(f), read_response(f)
        self.assertEqual(first[0], 200)
        self.assertIn(b"10.0.0.1", first[2])
        self.assertEqual(second[0], 404)
        self.assertEqual(third[0], 200)
        self.assertEqual(third[1].get("connection"), "close")
        self.assertEqual(f.read(), b"")

    def test_keep_alive_follows_the_version_and_the_connection_header(self):
        # HTTP/1.1: open until the client says close; no Connection header needed
        s, f = self.connect()
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_response(f)
        self.assertEqual(r[0], 200)
        self.assertNotEqual(r[1].get("connection"), "close")
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        r = read_response(f)
        self.assertEqual((r[0], r[1].get("connection")), (200, "close"))
        self.assertEqual(f.read(), b"")
        # HTTP/1.0: closed unless the client asks for keep-alive, and then told so
        s, f = self.connect()
        s.sendall(b"GET /v1/health HTTP/1.0\r\n\r\n")
        r = read_response(f)
        self.assertEqual(r[0], 200)
        self.assertEqual(f.read(), b"")
        s, f = self.connect()
        s.sendall(b"GET /v1/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = read_response(f)
        self.assertEqual(r[0], 200)
        self.assertEqual(r[1].get("connection", "").lower(), "keep-alive")
        s.sendall(b"GET /v1/health HTTP/1.0\r\n\r\n")
        self.assertEqual(read_response(f)[0], 200)
        self.assertEqual(f.read(), b"")


if __name__ == "__main__":
    unittest.main()

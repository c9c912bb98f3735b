"""Bad requests get a clear answer and never a silent default: every known query parameter with a bad value is
a 400 that says which and why (Consul's rule; unknown parameters are ignored, as Consul does), an HTTP version
other than 1.0 and 1.1 is a 505, and `--api` on the command line follows the same rule as the policy's
`api { listen }` (an absolute unix path or host:port)."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import unittest

from scoutharness import SCOUT_BIN, Scout, policy, wait_until
from zkharness import SharedZooKeeper

SCOUT = os.path.abspath(SCOUT_BIN)      # these tests run it from another directory


class StrictQuery(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = SharedZooKeeper().start()
        kz = cls.kz = cls.zk.client()
        kz.ensure_path("/strict/svc")
        kz.create("/strict/svc/a", b'{"host":"10.0.0.1","port":1}')
        cls.scout = Scout(policy({"svc": 'path = "/strict/svc"'}), cls.zk.connect).start()
        wait_until(lambda: cls.scout.ids("svc") == ["a"], what="svc published")

    @classmethod
    def tearDownClass(cls):
        cls.scout.stop()
        cls.zk.stop()

    def get(self, path):
        status, headers, body = self.scout.request(path)
        return status, headers, json.loads(body)

    def index(self):
        return int(self.scout.request("/v1/services/svc")[1]["X-Scout-Index"])

    def assert_refused(self, query, word):
        """400 at once, and the reason names the parameter. The current index and a short wait go along, so
        that code which blocks instead of refusing answers 200 (after the wait), and the test fails, not hangs."""
        status, _, body = self.get("/v1/services/svc?%s" % query)
        self.assertEqual(status, 400, "%s: %r" % (query, body))
        self.assertIn(word, body["error"], query)

    def test_bad_index_is_400(self):
        cur = self.index()
        for bad in ("-1", "18446744073709551616", "99999999999999999999999", "+5", "0x10", "5x", "%205",
                    "1.5", ""):
            self.assert_refused("index=%s&wait=100ms" % bad, "index")
        # the largest index there is is fine: nothing is past it, so this one waits for its wait
        status, headers, _ = self.get("/v1/services/svc?index=18446744073709551615&wait=100ms")
        self.assertEqual(status, 200)
        self.assertEqual(int(headers["X-Scout-Index"]), cur)

    def test_bad_percent_encoding_is_400(self):
        cur = self.index()
        self.assert_refused("index=%zz&wait=100ms", "percent-encoding")
        self.assert_refused("index=%d&wait=%%zz" % cur, "percent-encoding")
        self.assert_refused("index=%d&wait=1%%00s" % cur, "percent-encoding")

    def test_bad_wait_is_400(self):
        cur = self.index()
        for bad in ("0x2", "abc", "-1", "-1s", "nan", "inf", "1e3", "10x", "+5", "5+s", "%205", "s", "", "1.2.3s"):
            self.assert_refused("index=%d&wait=%s" % (cur, bad), "wait")
        # a bad wait is refused even without an index (Consul reads both first)
        status, _, body = self.get("/v1/services/svc?wait=abc")
        self.assertEqual((status, "wait" in body.get("error", "")), (400, True), body)

    def test_good_values_and_unknown_parameters(self):
        cur = self.index()
        for good in ("0", "5", "5s", "500ms", "1m30s", "1.5m", "2h", "%31s", ".5s"):
            status, _, body = self.get("/v1/services/svc?index=%%30&wait=%s" % good)
            self.assertEqual(status, 200, "wait=%s: %r" % (good, body))
        # the current index blocks for the wait, then answers the same list
        status, headers, body = self.get("/v1/services/svc?index=%d&wait=50ms" % cur)
        self.assertEqual((status, int(headers["X-Scout-Index"])), (200, cur), body)
        # unknown parameters are ignored, whatever they hold (Consul does the same)
        status, _, body = self.get("/v1/services/svc?stale&foo=%zz&index=0")
        self.assertEqual(status, 200, body)
        self.assertEqual([e["id"] for e in body], ["a"])


def raw(port, request):
    """Send bytes, return the status line of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1")


class HttpVersion(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = SharedZooKeeper().start()
        cls.zk.client().ensure_path("/strict/v")
        cls.scout = Scout(policy({"v": 'path = "/strict/v"'}), cls.zk.connect).start()
        cls.port = int(cls.scout.api.rsplit(":", 1)[1])

    @classmethod
    def tearDownClass(cls):
        cls.scout.stop()
        cls.zk.stop()

    def test_unsupported_versions_get_505(self):
        for version in (b"HTTP/9.9", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9"):
            line = raw(self.port, b"GET /v1/services " + version + b"\r\nHost: x\r\n\r\n")
            self.assertTrue(line.startswith("HTTP/1.1 505 "), "%s: %r" % (version, line))

    def test_1_0_and_1_1_are_served(self):
        for version in (b"HTTP/1.0", b"HTTP/1.1"):
            line = raw(self.port, b"GET /v1/services " + version + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
            self.assertEqual(line, "HTTP/1.1 200 OK", version)


class ApiOption(unittest.TestCase):
    """--api and api { listen } refuse the same addresses with the same words."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="scout-api-opt-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.policy_file = os.path.join(self.dir, "policy.lua")
        with open(self.policy_file, "w") as f:
            f.write(policy({"s": 'path = "/strict/s"'}))

    def test_relative_unix_socket_is_refused(self):
        rel = os.path.join(self.dir, "relative.sock")
        p = subprocess.Popen([SCOUT, "run", "-c", self.policy_file, "--zk", "127.0.0.1:1",
                              "--api", "unix:relative.sock"], cwd=self.dir, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True)
        try:
            # an agent that took it would bind ./relative.sock: whichever comes first decides
            wait_until(lambda: p.poll() is not None or os.path.exists(rel), what="exit or bind")
            self.assertFalse(os.path.exists(rel), "the agent bound a relative socket")
            out = p.communicate(timeout=10)[0]
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertNotEqual(p.returncode, 0)
        want = 'must be "unix:/path" or "host:port" (got "unix:relative.sock")'
        self.assertIn("--api " + want, out)
        # the policy says the same of the same address
        with open(self.policy_file, "a") as f:
            f.write('api { listen = "unix:relative.sock" }\n')
        c = subprocess.run([SCOUT_BIN, "check", self.policy_file], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=30)
        self.assertNotEqual(c.returncode, 0)
        self.assertIn("listen " + want, c.stdout)

    def test_other_bad_addresses_are_refused(self):
        for bad in ("unix:", "unix:/", "8500", ":80", "h:70000", "h:", "[::1]80", "a b:80"):
            p = subprocess.run([SCOUT, "run", "-c", self.policy_file, "--api", bad], cwd=self.dir,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                               timeout=30)
            self.assertNotEqual(p.returncode, 0, bad)
            self.assertIn('--api must be "unix:/path" or "host:port" (got "%s")' % bad, p.stdout)


if __name__ == "__main__":
    unittest.main()

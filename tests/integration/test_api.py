"""The policy's answers over HTTP: /v1/explain says why each child is in or out (decode error, down, filtered,
published, ignored), and /v1/pick applies the service's route rules and selector with the query parameters as
the request context (swrr spreads by weight, chash keeps a key on one endpoint, tag routing sends canary traffic
to the canary)."""

import collections
import json
import unittest

from scoutharness import Scout, policy, wait_until
from zkharness import SharedZooKeeper


class Api(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = SharedZooKeeper().start()
        kz = cls.kz = cls.zk.client()
        kz.ensure_path("/a/svc")
        kz.create("/a/svc/a", b'{"host":"10.0.0.1","port":1,"weight":5}')
        kz.create("/a/svc/b", b'{"host":"10.0.0.2","port":2,"weight":1}')
        kz.create("/a/svc/c", b'{"host":"10.0.0.3","port":3,"weight":1}')
        kz.create("/a/svc/canary", b'{"host":"10.0.0.9","port":9,"weight":1,"meta":{"tag":"canary"}}')
        kz.create("/a/svc/broken", b'{"host":')
        kz.create("/a/svc/down", b'{"host":"10.0.0.4","port":4,"status":"down"}')
        kz.create("/a/svc/hidden", b'{"host":"10.0.0.5","port":5,"meta":{"zone":"x"}}')
        kz.ensure_path("/a/empty")
        cls.scout = Scout(policy({
            "svc": 'path = "/a/svc", selector = "swrr", route = { { tag = true } },\n'
                   'filter = function(ep) return ep.meta.zone ~= "x" end',
            "hashed": 'path = "/a/svc", selector = "chash"',
            "empty": 'path = "/a/empty"',
        }), cls.zk.connect).start()
        wait_until(lambda: len(cls.scout.ids("svc")) == 4 and len(cls.scout.ids("hashed")) == 5, what="initial")

    @classmethod
    def tearDownClass(cls):
        cls.scout.stop()
        cls.zk.stop()

    def get(self, path):
        status, _, body = self.scout.request(path)
        return status, json.loads(body)

    def test_explain_gives_every_verdict(self):
        status, body = self.get("/v1/explain/svc")
        self.assertEqual(status, 200)
        verdicts = {c["id"]: c["verdict"] for c in body["children"]}
        self.assertEqual(verdicts, {"a": "published", "b": "published", "c": "published",
                                    "canary": "published", "broken": "decode_error", "down": "down",
                                    "hidden": "filtered"})
        broken = [c for c in body["children"] if c["id"] == "broken"][0]
        self.assertTrue(broken["reason"])
        self.assertEqual((body["service"], body["path"], body["protected"]), ("svc", "/a/svc", False))
        self.assertEqual(self.get("/v1/explain/nope")[0], 404)

    def test_pick_follows_swrr_weights_among_untagged(self):
        counts = collections.Counter(self.get("/v1/pick/svc")[1]["id"] for _ in range(70))
        # the canary is tagged: untagged requests never reach it; swrr 5:1:1 over 70 picks is exact
        self.assertEqual(counts, {"a": 50, "b": 10, "c": 10})

    def test_pick_routes_by_tag(self):
        for _ in range(5):
            self.assertEqual(self.get("/v1/pick/svc?tag=canary")[1]["id"], "canary")

    def test_chash_keeps_a_key_on_one_endpoint(self):
        for key in ("user-1", "user-2", "user-3"):
            status, body = self.get("/v1/pick/hashed?key=" + key)
            self.assertEqual(status, 200, body)
            picks = {self.get("/v1/pick/hashed?key=" + key)[1]["id"] for _ in range(5)}
            self.assertEqual(len(picks), 1, key)

    def test_pick_without_endpoints_and_bad_queries(self):
        status, body = self.get("/v1/pick/empty")
        self.assertEqual((status, body), (503, {"error": "no endpoint"}))
        self.assertEqual(self.get("/v1/pick/svc?key=%zz")[0], 400)
        self.assertEqual(self.get("/v1/pick/nope")[0], 404)


    def test_metrics_is_strict_prometheus_text(self):
        import re
        status, headers, body = self.scout.request("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        name_re = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
        label_re = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
        sample = re.compile(r"^(%s)(\{%s(?:,%s)*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$" % (name_re, label_re, label_re))
        types, helps, seen = {}, set(), set()
        for line in body.decode().splitlines():
            if line.startswith("# HELP "):
                name = line.split(" ")[2]
                self.assertNotIn(name, helps, "HELP twice: " + name)
                helps.add(name)
            elif line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ")
                self.assertIn(kind, ("counter", "gauge", "histogram", "summary", "untyped"))
                self.assertNotIn(name, types, "TYPE twice: " + name)
                types[name] = kind
            else:
                m = sample.match(line)
                self.assertIsNotNone(m, "not a valid sample line: %r" % line)
                family = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
                if types.get(family) == "histogram":       # a histogram's series carry a suffix
                    self.assertRegex(line, r'_sum |_count |_bucket\{le="[^"]+"\} ')
                    continue
                self.assertIn(m.group(1), types, "sample before its TYPE: " + line)
                self.assertNotIn(line.rsplit(" ", 1)[0], seen, "duplicate series: " + line)
                seen.add(line.rsplit(" ", 1)[0])
                if types[m.group(1)] == "counter":
                    self.assertTrue(m.group(1).endswith("_total"), m.group(1))
                    self.assertGreaterEqual(float(m.group(3)), 0)
        for family in ("scout_zk_requests_total", "scout_zk_watch_events_total",
                       "scout_service_stale_results_dropped_total", "scout_service_anti_entropy_repairs_total",
                       "scout_service_protected", "scout_hook_errors_total", "scout_hook_seconds_total",
                       "scout_service_endpoints", "scout_service_staleness_seconds", "scout_session_connected",
                       "scout_zk_session_expirations_total", "scout_zk_reconnects_total",
                       "scout_lua_memory_bytes", "scout_loop_stall_seconds"):
            self.assertIn(family, types)
        self.assertGreater(self.scout.metric("scout_hook_seconds_total"), 0)
        # the policy VM holds at least the runtime and its modules, and far less than a gigabyte here
        self.assertGreater(self.scout.metric("scout_lua_memory_bytes"), 100 * 1024)
        self.assertLess(self.scout.metric("scout_lua_memory_bytes"), 1 << 30)
        self.assertEqual(self.scout.metric("scout_service_staleness_seconds", "svc"), 0)


if __name__ == "__main__":
    unittest.main()

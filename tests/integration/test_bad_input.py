"""Bad input never costs good state (issue 11, items 1-2), tried the way a careless publisher would: one child whose
meta has keys that differ only after a NUL byte, a meta value over 64 KiB, invalid UTF-8, a filter that raises on
one child. Only that child is affected: it keeps its last good endpoint (or, if new, stays out), every other change
is published, the disk snapshot keeps being written, and the state, X-Scout-State, /v1/health and /v1/explain say
what is true. A snapshot write that fails for any reason is counted and makes health fail until one succeeds."""

import json
import os
import shutil
import tempfile
import unittest

from scoutharness import Scout, policy, wait_until
from zkharness import SharedZooKeeper

NUL_KEYS = b'{"host":"10.0.0.9","port":9,"meta":{"a\\u0000x":"1","a\\u0000y":"2"}}'
NUL_VALUE = b'{"host":"10.0.0.9","port":9,"meta":{"k":"before\\u0000after"}}'
BIG_VALUE = b'{"host":"10.0.0.8","port":8,"meta":{"k":"' + b"x" * (64 * 1024 + 1) + b'"}}'
BAD_UTF8 = b'{"host":"10.0.0.7","port":7,"meta":{"k":"\xff\xfe"}}'


def ep(host, port, **meta):
    return json.dumps({"host": host, "port": port, "meta": meta}).encode()


class BadZnodes(unittest.TestCase):
    """Bytes that cannot cross into C for every consumer are refused at the one boundary, per child."""

    @classmethod
    def setUpClass(cls):
        cls.zk = SharedZooKeeper().start()
        cls.kz = cls.zk.client()
        cls.cache = tempfile.mkdtemp(prefix="scout-bad-")
        cls.snapshot = os.path.join(cls.cache, "scout.snapshot")
        cls.kz.ensure_path("/bi/a")
        cls.kz.ensure_path("/bi/b")
        cls.kz.create("/bi/a/good", ep("10.0.0.1", 1))
        cls.kz.create("/bi/b/x1", ep("10.0.1.1", 1))
        cls.scout = Scout(policy({"a": 'path = "/bi/a"', "b": 'path = "/bi/b"'},
                                 extra='cache { dir = "%s" }' % cls.cache), cls.zk.connect).start()
        wait_until(lambda: cls.scout.ids("a") == ["good"] and cls.scout.ids("b") == ["x1"], what="initial")

    @classmethod
    def tearDownClass(cls):
        cls.scout.stop()
        cls.zk.stop()
        shutil.rmtree(cls.cache, ignore_errors=True)

    def snapshot_has(self, needle):
        try:
            with open(self.snapshot, "rb") as f:
                return needle in f.read()
        except FileNotFoundError:
            return False

    def explain(self, name):
        status, _, body = self.scout.request("/v1/explain/" + name)
        self.assertEqual(status, 200)
        return {c["id"]: c for c in json.loads(body)["children"]}       # valid JSON, or this raises

    def test_new_children_with_bad_bytes_stay_out_and_the_snapshot_keeps_being_written(self):
        s = self.scout
        wait_until(lambda: self.snapshot_has(b"x1"), what="first snapshot")
        before = s.metric("scout_service_rejected_total", "a")
        for name, data in (("nul-keys", NUL_KEYS), ("nul-value", NUL_VALUE), ("big-value", BIG_VALUE),
                           ("bad-utf8", BAD_UTF8)):
            self.kz.create("/bi/a/" + name, data)
        # another service changes after them: the snapshot follows it (it used to freeze for every service)
        self.kz.create("/bi/b/x2", ep("10.0.1.2", 2))
        wait_until(lambda: s.ids("b") == ["x1", "x2"], what="b's new child served")
        wait_until(lambda: self.snapshot_has(b"x2"), what="the snapshot written with b's new child")
        wait_until(lambda: s.metric("scout_service_rejected_total", "a") >= before + 4, what="4 children refused")
        self.assertEqual(s.ids("a"), ["good"])
        verdicts = self.explain("a")
        for name in ("nul-keys", "nul-value", "big-value", "bad-utf8"):
            self.assertEqual(verdicts[name]["verdict"], "rejected", name)
        self.assertIn("NUL", verdicts["nul-value"]["reason"])
        self.assertIn("UTF-8", verdicts["bad-utf8"]["reason"])
        # new children that are no endpoint do not make the service untrue
        self.assertEqual(s.state("a"), "synced")
        self.assertEqual(s.health()[0], 200)
        self.assertEqual(s.metric("scout_snapshot_write_failures_total"), 0)
        for name in ("nul-keys", "nul-value", "big-value", "bad-utf8"):
            self.kz.delete("/bi/a/" + name)
        self.kz.delete("/bi/b/x2")
        wait_until(lambda: s.ids("b") == ["x1"], what="cleanup")

    def test_a_published_child_whose_data_goes_bad_keeps_its_last_good_endpoint(self):
        s = self.scout
        self.kz.create("/bi/a/k", ep("10.0.0.5", 5, zone="z1"))
        wait_until(lambda: "k" in s.ids("a"), what="k published")
        self.kz.set("/bi/a/k", NUL_KEYS)
        wait_until(lambda: s.state("a") == "degraded", what="a degraded")
        eps = {e["id"]: e for e in s.endpoints("a")[0]}
        self.assertEqual((eps["k"]["host"], eps["k"]["port"], eps["k"]["meta"]), ("10.0.0.5", 5, {"zone": "z1"}))
        _, headers = s.endpoints("a")
        self.assertEqual(headers["X-Scout-State"], "degraded")
        status, body = s.health()
        self.assertEqual(status, 503)
        self.assertIn("service a is degraded", body["reason"])
        self.assertIn("k: its data is refused", body["reason"])
        k = self.explain("a")["k"]
        self.assertEqual((k["verdict"], k["endpoint"]["port"]), ("kept", 5))
        # the other endpoints still move
        self.kz.create("/bi/a/k2", ep("10.0.0.6", 6))
        wait_until(lambda: s.ids("a") == ["good", "k", "k2"], what="a's new child published while degraded")
        # good data again: the service is whole
        self.kz.set("/bi/a/k", ep("10.0.0.5", 55))
        wait_until(lambda: s.state("a") == "synced", what="a synced again")
        self.assertEqual([e["port"] for e in s.endpoints("a")[0] if e["id"] == "k"], [55])
        wait_until(lambda: s.health()[0] == 200, what="healthy again")
        self.kz.delete("/bi/a/k")
        self.kz.delete("/bi/a/k2")
        wait_until(lambda: s.ids("a") == ["good"], what="cleanup")


class FilterThatRaises(unittest.TestCase):
    """`ep.meta.zone:lower()` on a child without zone: that child alone is held, the service goes on."""

    POLICY = policy({"svc": 'path = "/bf/svc",\n'
                            'filter = function(ep) return ep.meta.zone:lower() ~= "canary" end'})

    def setUp(self):
        self.zk = SharedZooKeeper().start()     # an empty tree on the pass's one server (zkharness)
        self.kz = self.zk.client()
        self.kz.ensure_path("/bf/svc")
        for n in (1, 2):
            self.kz.create("/bf/svc/c%d" % n, ep("10.0.0.%d" % n, n, zone="A"))
        self.kz.create("/bf/svc/canary", ep("10.0.0.9", 9, zone="CANARY"))
        self.scout = Scout(self.POLICY, self.zk.connect).start()
        wait_until(lambda: self.scout.ids("svc") == ["c1", "c2"], what="initial")

    def tearDown(self):
        self.scout.stop()
        self.zk.stop()

    def test_the_other_children_converge_and_the_state_says_degraded(self):
        s = self.scout
        self.kz.create("/bf/svc/nozone", ep("10.0.0.3", 3))
        self.kz.delete("/bf/svc/c1")
        self.kz.create("/bf/svc/c3", ep("10.0.0.4", 4, zone="B"))
        wait_until(lambda: s.ids("svc") == ["c2", "c3"], what="removal and addition published")
        wait_until(lambda: s.state("svc") == "degraded", what="degraded")
        _, headers = s.endpoints("svc")
        self.assertEqual(headers["X-Scout-State"], "degraded")
        status, body = s.health()
        self.assertEqual(status, 503)
        self.assertIn("nozone: the filter raised", body["reason"])
        status, _, raw = s.request("/v1/explain/svc")
        verdicts = {c["id"]: c for c in json.loads(raw)["children"]}
        self.assertEqual(verdicts["nozone"]["verdict"], "filter_error")
        self.assertIn("attempt to index", verdicts["nozone"]["reason"])
        self.assertEqual(verdicts["canary"]["verdict"], "filtered")
        self.assertGreater(s.metric("scout_service_hook_errors_total", "svc"), 0)
        self.assertRegex(s.log(), r"filter failed on child nozone, keeping its last verdict: .*policy\.lua:\d+")
        # the child gets its zone: it comes in, and the service is whole again
        self.kz.set("/bf/svc/nozone", ep("10.0.0.3", 3, zone="A"))
        wait_until(lambda: s.ids("svc") == ["c2", "c3", "nozone"] and s.state("svc") == "synced",
                   what="nozone published, synced")
        wait_until(lambda: s.health()[0] == 200, what="healthy")

    def test_a_published_child_that_starts_failing_keeps_its_endpoint(self):
        s = self.scout
        self.kz.set("/bf/svc/c1", ep("10.0.0.1", 11))                # zone gone
        wait_until(lambda: s.state("svc") == "degraded", what="degraded")
        self.assertEqual([e["port"] for e in s.endpoints("svc")[0] if e["id"] == "c1"], [1])
        status, _, raw = s.request("/v1/explain/svc")
        c1 = [c for c in json.loads(raw)["children"] if c["id"] == "c1"][0]
        self.assertEqual((c1["verdict"], c1["endpoint"]["port"]), ("kept", 1))
        # deleting it withdraws it: a held child is never kept past its node
        self.kz.delete("/bf/svc/c1")
        wait_until(lambda: s.ids("svc") == ["c2"] and s.state("svc") == "synced", what="c1 withdrawn, synced")


class SnapshotWriteFailures(unittest.TestCase):
    """Whatever makes a write fail (here: a directory where the temp file goes) is counted and health says so."""

    def setUp(self):
        self.zk = SharedZooKeeper().start()     # an empty tree on the pass's one server (zkharness)
        self.kz = self.zk.client()
        self.cache = tempfile.mkdtemp(prefix="scout-wf-")
        self.kz.ensure_path("/bw/svc")
        self.kz.create("/bw/svc/127.0.0.1:1")
        self.scout = Scout(policy({"svc": 'path = "/bw/svc"'}, extra='cache { dir = "%s" }' % self.cache),
                           self.zk.connect).start()
        wait_until(lambda: self.scout.metric("scout_snapshot_writes_total") >= 1, what="first write")

    def tearDown(self):
        self.scout.stop()
        self.zk.stop()
        shutil.rmtree(self.cache, ignore_errors=True)

    def test_a_failing_write_is_a_metric_and_a_health_failure_until_one_succeeds(self):
        s = self.scout
        self.assertGreater(s.metric("scout_snapshot_last_write_timestamp_seconds"), 0)
        blocker = os.path.join(self.cache, "scout.snapshot.tmp")
        os.mkdir(blocker)
        self.kz.create("/bw/svc/127.0.0.1:2")
        wait_until(lambda: s.metric("scout_snapshot_write_failures_total") >= 1, what="a failed write counted")
        status, body = s.health()
        self.assertEqual(status, 503)
        self.assertIn("has not been written", body["reason"])
        self.assertEqual(s.state("svc"), "synced")          # the service itself is fine
        writes = s.metric("scout_snapshot_writes_total")
        os.rmdir(blocker)
        wait_until(lambda: s.metric("scout_snapshot_writes_total") > writes, what="written again (retried)")
        wait_until(lambda: s.health()[0] == 200, what="healthy again")


if __name__ == "__main__":
    unittest.main()

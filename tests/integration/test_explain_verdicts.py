"""/v1/explain/NAME from outside: every verdict the runtime can give is produced here by what a user does
(test_coldstart produces "snapshot": it needs a restart with ZooKeeper down).

- published, filtered, down, decode_error: a plain service with a filter;
- ignored: a serverset child that is not a member (a lock, config) -- not an endpoint, and not an error;
- filter_error, kept, rejected: one child's trouble held to that child (the filter raised on a new one; a published
  one's data went bad; bytes that may not cross into C);
- pending: a child the policy has not accepted because the whole update was stopped (a filter that loops);
- held: while protection holds a drop, both the new child it keeps out and the published ones it keeps in.

The last test reads the verdicts lua/scout/explain.lua can give, so a new verdict without a test fails here."""

import json
import os
import re
import unittest

from scoutharness import ROOT, Scout, policy, wait_until
from zkharness import SharedZooKeeper

# verdict -> the test that produces it from outside
COVERED = {
    "published": "test_published_filtered_down_decode_error", "filtered": "test_published_filtered_down_decode_error",
    "down": "test_published_filtered_down_decode_error", "decode_error": "test_published_filtered_down_decode_error",
    "ignored": "test_ignored", "pending": "test_pending", "held": "test_held",
    "filter_error": "test_filter_error", "kept": "test_kept", "rejected": "test_rejected",
    "snapshot": "test_coldstart.ColdStart.test_restart_while_zookeeper_is_down_then_converge",
}


def member(host, port):
    return json.dumps({"serviceEndpoint": {"host": host, "port": port}, "status": "ALIVE"}).encode()


class ExplainVerdicts(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = SharedZooKeeper().start()
        kz = cls.kz = cls.zk.client()
        kz.create("/ev/plain/a", b'{"host":"10.0.0.1","port":1}', makepath=True)
        kz.create("/ev/plain/hidden", b'{"host":"10.0.0.2","port":2,"meta":{"zone":"x"}}')
        kz.create("/ev/plain/down", b'{"host":"10.0.0.3","port":3,"status":"down"}')
        kz.create("/ev/plain/broken", b'{"host":')
        kz.create("/ev/members/member_0000000001", member("10.0.1.1", 1), makepath=True)
        kz.create("/ev/members/lock-1", b"")
        for p in range(4):
            kz.create("/ev/guarded/127.0.0.1:%d" % (7000 + p), makepath=True)
        kz.create("/ev/iso/ok", b'{"host":"10.0.2.1","port":1}', makepath=True)
        kz.create("/ev/loop/ok", b'{"host":"10.0.3.1","port":1}', makepath=True)
        cls.scout = Scout(policy({
            "plain": 'path = "/ev/plain",\n'
                     'filter = function(ep) if ep.meta.boom then error("boom") end return ep.meta.zone ~= "x" end',
            "members": 'path = "/ev/members", codec = "serverset"',
            "iso": 'path = "/ev/iso",\n'
                   'filter = function(ep) if ep.meta.boom then error("boom") end return true end',
            "looping": 'path = "/ev/loop",\n'
                       'filter = function(ep) if ep.meta.loop then while true do end end return true end',
            # holds any drop below 90% for an hour: nothing but this test's own changes moves it
            "guarded": 'path = "/ev/guarded", protect = { min_ratio = 0.9, confirm = 1000, hold = "1h" }',
        }), cls.zk.connect).start()
        wait_until(lambda: cls.scout.ids("plain") == ["a"] and cls.scout.ids("members") == ["member_0000000001"]
                   and len(cls.scout.ids("guarded")) == 4 and cls.scout.ids("iso") == ["ok"]
                   and cls.scout.ids("looping") == ["ok"], what="first lists")

    @classmethod
    def tearDownClass(cls):
        cls.scout.stop()
        cls.zk.stop()

    def explain(self, name):
        status, _, body = self.scout.request("/v1/explain/" + name)
        self.assertEqual(status, 200, body)
        body = json.loads(body)
        verdicts = {c["id"]: c["verdict"] for c in body["children"]}
        for c in body["children"]:
            self.assertTrue(c["verdict"] == "published" or c.get("reason"), c)   # every "not in" says why
        return body, verdicts

    def test_published_filtered_down_decode_error(self):
        _, v = self.explain("plain")
        self.assertEqual({k: v[k] for k in ("a", "hidden", "down", "broken")},
                         {"a": "published", "hidden": "filtered", "down": "down", "broken": "decode_error"})

    def test_ignored(self):
        _, v = self.explain("members")
        self.assertEqual(v, {"member_0000000001": "published", "lock-1": "ignored"})
        self.assertEqual(self.scout.metric("scout_service_decode_errors_total", "members"), 0)

    def test_filter_error(self):
        errors = self.scout.metric("scout_service_hook_errors_total", "iso")
        self.kz.create("/ev/iso/boom", b'{"host":"10.0.2.9","port":9,"meta":{"boom":"1"}}')
        wait_until(lambda: self.scout.metric("scout_service_hook_errors_total", "iso") > errors,
                   what="the filter raised on the new child")
        _, v = self.explain("iso")
        self.assertEqual((v["boom"], v["ok"]), ("filter_error", "published"))
        self.assertNotIn("boom", self.scout.ids("iso"))

    def test_kept(self):
        self.kz.create("/ev/iso/goesbad", b'{"host":"10.0.2.5","port":5}')
        wait_until(lambda: "goesbad" in self.scout.ids("iso"), what="published first")
        errors = self.scout.metric("scout_service_decode_errors_total", "iso")
        self.kz.set("/ev/iso/goesbad", b'{"host":')
        wait_until(lambda: self.scout.metric("scout_service_decode_errors_total", "iso") > errors,
                   what="its new data failed to decode")
        _, v = self.explain("iso")
        self.assertEqual(v["goesbad"], "kept")
        self.assertIn("goesbad", self.scout.ids("iso"))           # the last good endpoint stays served

    def test_rejected(self):
        rejected = self.scout.metric("scout_service_rejected_total", "iso")
        self.kz.create("/ev/iso/nul", b'{"host":"10.0.2.6","port":6,"meta":{"a\\u0000x":"1"}}')
        wait_until(lambda: self.scout.metric("scout_service_rejected_total", "iso") > rejected,
                   what="refused at the boundary")
        _, v = self.explain("iso")
        self.assertEqual(v["nul"], "rejected")
        self.assertNotIn("nul", self.scout.ids("iso"))

    def test_pending(self):
        timeouts = self.scout.metric("scout_hook_timeouts_total")
        self.kz.create("/ev/loop/spin", b'{"host":"10.0.3.9","port":9,"meta":{"loop":"1"}}')
        wait_until(lambda: self.scout.metric("scout_hook_timeouts_total") > timeouts,
                   what="the looping filter stopped")
        _, v = self.explain("looping")
        self.assertEqual((v["spin"], v["ok"]), ("pending", "published"))
        self.assertEqual(self.scout.ids("looping"), ["ok"])

    def test_held(self):
        t = self.kz.transaction()                 # 4 -> 2: below 90%
        for p in range(3):
            t.delete("/ev/guarded/127.0.0.1:%d" % (7000 + p))
        t.create("/ev/guarded/127.0.0.1:7009")
        t.commit()
        wait_until(lambda: self.scout.state("guarded") == "protected", what="the drop held")
        body, v = self.explain("guarded")
        self.assertTrue(body["protected"])
        self.assertEqual(v, {"127.0.0.1:7000": "held", "127.0.0.1:7001": "held", "127.0.0.1:7002": "held",
                             "127.0.0.1:7003": "published", "127.0.0.1:7009": "held"})
        self.assertEqual(len(self.scout.ids("guarded")), 4)   # what explain says is what is served

    def test_every_verdict_has_a_test(self):
        with open(os.path.join(ROOT, "lua", "scout", "explain.lua")) as f:
            src = f.read()
        body = src[src.index("function M.service"):]
        # the quoted words on the lines that set a verdict (reasons have spaces)
        verdicts = set(re.findall(r'"([a-z_]+)"', "\n".join(re.findall(r"[^\n]*verdict[^\n]*", body))))
        self.assertIn("held", verdicts)         # the parse found them
        self.assertEqual(verdicts, set(COVERED), "a verdict without a test producing it (or a stale list)")


if __name__ == "__main__":
    unittest.main()

"""A hook that changes an endpoint in place gets its change published. The runtime's boundary check builds each
decoded child's C endpoint, and the publish takes that build as it is when no code of the operator's runs between
the two (issue 14: the table was read and checked twice per child); a filter or an on_change that edits the table
must therefore turn the reuse off for its service, or the agent would publish the endpoint as decoded. A service
without hooks, next to them, publishes the decoded endpoint as it is."""

import unittest

from scoutharness import Scout, wait_until
from zkharness import ZooKeeper

POLICY = '''
zookeeper { servers = "127.0.0.1:1", session_timeout = 4000 }
service "plain" { path = "/e/plain" }
service "filtered" {
  path = "/e/filtered",
  filter = function(ep)
    ep.weight = ep.weight + 100
    ep.meta = { zone = "by-filter" }
    return true
  end,
}
service "changed" {
  path = "/e/changed",
  on_change = function(svc, diff)
    for _, ep in ipairs(diff.added) do ep.weight = 7; ep.meta = { zone = "by-on-change" } end
    for _, ep in ipairs(diff.changed) do ep.weight = 8 end
  end,
}
'''

SERVICES = ("plain", "filtered", "changed")


def body(k, weight=3):
    return b'{"host":"10.0.0.%d","port":%d,"weight":%d,"meta":{"zone":"zk"}}' % (k, 8000 + k, weight)


class HookEdits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = ZooKeeper().start()
        cls.kz = cls.zk.client()
        for svc in SERVICES:
            cls.kz.ensure_path("/e/" + svc)
            for k in range(1, 7):      # a first listing of more than a few children: the sync's path
                cls.kz.create("/e/%s/ep-%d" % (svc, k), body(k))
        cls.scout = Scout(POLICY, cls.zk.connect).start()
        for svc in SERVICES:
            wait_until(lambda svc=svc: len(cls.scout.ids(svc)) == 6, what="%s synced" % svc)

    @classmethod
    def tearDownClass(cls):
        cls.scout.stop()
        cls.zk.stop()

    def view(self, svc):
        return {ep["id"]: (ep["weight"], ep["meta"].get("zone")) for ep in self.scout.endpoints(svc)[0]}

    def test_a_removal_alone_brings_back_no_earlier_child(self):
        """The list of changed children handed to the runtime is refilled at each update (issue 14): one with
        none must not deliver the last update's children again (here the same names, under another service)."""
        for svc in SERVICES:
            self.kz.delete("/e/%s/ep-6" % svc)
            wait_until(lambda svc=svc: "ep-6" not in self.view(svc), what="ep-6 gone from %s" % svc)
        for svc in SERVICES:
            self.assertEqual(len(self.view(svc)), 5)
            self.kz.create("/e/%s/ep-6" % svc, body(6))
        wait_until(lambda: all(len(self.view(svc)) == 6 for svc in SERVICES), what="ep-6 back")

    def test_sync_publishes_what_the_hooks_made(self):
        self.assertEqual(set(self.view("plain").values()), {(3, "zk")})
        self.assertEqual(set(self.view("filtered").values()), {(103, "by-filter")})
        self.assertEqual(set(self.view("changed").values()), {(7, "by-on-change")})

    def test_a_change_publishes_what_the_hooks_made(self):
        for svc in SERVICES:
            self.kz.create("/e/%s/new" % svc, body(9, weight=5))
        wait_until(lambda: all("new" in self.view(svc) for svc in SERVICES), what="the new children")
        self.assertEqual(self.view("plain")["new"], (5, "zk"))
        self.assertEqual(self.view("filtered")["new"], (105, "by-filter"))
        self.assertEqual(self.view("changed")["new"], (7, "by-on-change"))
        # a data change: on_change sees it in diff.changed
        for svc in SERVICES:
            self.kz.set("/e/%s/new" % svc, body(9, weight=6))
        wait_until(lambda: self.view("plain")["new"] == (6, "zk"), what="the plain service's change")
        wait_until(lambda: self.view("filtered")["new"] == (106, "by-filter"), what="the filtered change")
        wait_until(lambda: self.view("changed")["new"][0] == 8, what="on_change's edit of the change")
        for svc in SERVICES:
            self.kz.delete("/e/%s/new" % svc)
        wait_until(lambda: all("new" not in self.view(svc) for svc in SERVICES), what="back to start")


if __name__ == "__main__":
    unittest.main()

"""A hook that changes an endpoint in place gets its change published. The runtime's boundary check builds each
decoded child's C endpoint, and the publish takes that build as it is when no code of the operator's runs between
the two (issue 14: the table was read and checked twice per child); a filter or an on_change that edits the table
must therefore turn the reuse off for its service, or the agent would publish the endpoint as decoded. A service
without hooks, next to them, publishes the decoded endpoint as it is.

A change (up to four names) under hooks builds its new endpoints at the check too, and publishes a build only if
the hooks left its table as the check read it (scout.untouched; an endpoint without meta of its own): the
"bare-*" services' endpoints have no meta, are created one change at a time, and have each kind of edit made to
them, in place, by replacing a field, by adding meta, through svc.endpoints, before an error, by a filter; what
is published must be the edit, and an endpoint no hook touched the decoded one."""

import unittest

from scoutharness import Scout, wait_until
from zkharness import SharedZooKeeper

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
service "bare-changed" {
  path = "/e/bare-changed",
  on_change = function(svc, diff)
    for _, ep in ipairs(diff.added) do
      local kind = ep.id:match("^(%a+)-")
      if kind == "weight" then ep.weight = 7
      elseif kind == "host" then ep.host = "10.9.9.9"
      elseif kind == "meta" then ep.meta = { zone = "by-on-change" }
      elseif kind == "inmeta" then ep.meta.zone = "in-place"
      elseif kind == "raise" then ep.port = 9999; error("raised after an edit")
      end
    end
    for _, ep in ipairs(diff.changed) do
      if ep.id:match("^weight%-") then ep.weight = 8 end
    end
    for _, ep in ipairs(diff.added) do
      if ep.id:match("^view%-") then
        for _, e in ipairs(svc.endpoints) do if e.id == ep.id then e.weight = 9 end end
      end
    end
  end,
}
service "bare-filtered" {
  path = "/e/bare-filtered",
  filter = function(ep)
    if ep.id:match("^port%-") then ep.port = ep.port + 1000 end
    return true
  end,
}
'''

SERVICES = ("plain", "filtered", "changed")


def body(k, weight=3):
    return b'{"host":"10.0.0.%d","port":%d,"weight":%d,"meta":{"zone":"zk"}}' % (k, 8000 + k, weight)


class HookEdits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = SharedZooKeeper().start()
        cls.kz = cls.zk.client()
        for svc in SERVICES:
            cls.kz.ensure_path("/e/" + svc)
            for k in range(1, 7):      # a first listing of more than a few children: the sync's path
                cls.kz.create("/e/%s/ep-%d" % (svc, k), body(k))
        for svc in ("bare-changed", "bare-filtered"):
            cls.kz.ensure_path("/e/" + svc)
        cls.scout = Scout(POLICY, cls.zk.connect).start()
        for svc in SERVICES:
            wait_until(lambda svc=svc: len(cls.scout.ids(svc)) == 6, what="%s synced" % svc)
        for svc in ("bare-changed", "bare-filtered"):
            wait_until(lambda svc=svc: cls.scout.state(svc) == "synced", what="%s synced" % svc)

    @classmethod
    def tearDownClass(cls):
        cls.scout.stop()
        cls.zk.stop()

    def view(self, svc):
        return {ep["id"]: (ep["weight"], ep["meta"].get("zone")) for ep in self.scout.endpoints(svc)[0]}

    def whole(self, svc):
        return {ep["id"]: (ep["host"], ep["port"], ep["weight"], ep["meta"]) for ep in self.scout.endpoints(svc)[0]}

    def create_one(self, svc, name, k, meta=b""):
        """One child (without meta unless given), as a change of its own (the agent has it before the next is
        made)."""
        self.kz.create("/e/%s/%s" % (svc, name), b'{"host":"10.0.0.%d","port":%d%s}' % (k, 8000 + k, meta))
        wait_until(lambda: name in self.whole(svc), what="%s in %s" % (name, svc))

    def test_a_change_publishes_every_kind_of_edit_and_the_untouched_as_decoded(self):
        errors = self.scout.metric("scout_hook_errors_total")
        for k, name in enumerate(("plain-1", "weight-1", "host-1", "meta-1", "view-1", "raise-1", "plain-2"), 1):
            self.create_one("bare-changed", name, k)
        got = self.whole("bare-changed")
        self.assertEqual(got["plain-1"], ("10.0.0.1", 8001, 1, {}))
        self.assertEqual(got["weight-1"], ("10.0.0.2", 8002, 7, {}))
        self.assertEqual(got["host-1"], ("10.9.9.9", 8003, 1, {}))
        self.assertEqual(got["meta-1"], ("10.0.0.4", 8004, 1, {"zone": "by-on-change"}))
        self.assertEqual(got["view-1"], ("10.0.0.5", 8005, 9, {}))
        self.assertEqual(got["raise-1"], ("10.0.0.6", 9999, 1, {}))     # published anyway, as edited
        self.assertEqual(got["plain-2"], ("10.0.0.7", 8007, 1, {}))
        self.assertGreater(self.scout.metric("scout_hook_errors_total"), errors)
        # meta of its own, edited in place (the check's build cannot see that: read again)
        self.create_one("bare-changed", "inmeta-1", 8, meta=b',"meta":{"zone":"zk"}')
        self.assertEqual(self.whole("bare-changed")["inmeta-1"], ("10.0.0.8", 8008, 1, {"zone": "in-place"}))
        # a data change of an edited endpoint: its edit in diff.changed is published too
        self.kz.set("/e/bare-changed/weight-1", b'{"host":"10.0.0.2","port":8102}')
        wait_until(lambda: self.whole("bare-changed")["weight-1"] == ("10.0.0.2", 8102, 8, {}),
                   what="on_change's edit of the change")
        self.kz.set("/e/bare-changed/plain-1", b'{"host":"10.0.0.1","port":8101}')
        wait_until(lambda: self.whole("bare-changed")["plain-1"] == ("10.0.0.1", 8101, 1, {}),
                   what="the untouched change as decoded")

    def test_a_filters_edit_of_a_change_is_published(self):
        self.create_one("bare-filtered", "port-1", 1)
        self.create_one("bare-filtered", "plain-1", 2)
        got = self.whole("bare-filtered")
        self.assertEqual(got["port-1"], ("10.0.0.1", 9001, 1, {}))
        self.assertEqual(got["plain-1"], ("10.0.0.2", 8002, 1, {}))

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

"""The policy's Lua collector, for a heap past 4 MB, keeps a lazier pause (120) through the initial sync and turns
eager (100) once it is over: every service judged once with its whole first listing, whatever came of it.
A service that never syncs but was read (a filter that keeps failing, a missing path) does not keep it lazy, a
reload's new VM does the same again, and `/metrics` says which (`scout_lua_gc_pause`,
`scout_lua_gc_sync_ends_total`). Each policy holds a 6 MB string so that the heap is past the eager threshold."""

import signal
import unittest

from scoutharness import Scout, policy, wait_until
from zkharness import ZooKeeper

BALLAST = 'local ballast = string.rep("x", 6 * 1024 * 1024)\n'
KEEP = "filter = function(ep) return #ballast > 0 end,"


class LuaCollector(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
        self.kz = self.zk.client()
        for svc in ("a", "b"):
            for p in (1, 2):
                self.kz.create("/gc/%s/127.0.0.1:%d" % (svc, p), makepath=True)
        self.scout = None

    def tearDown(self):
        if self.scout is not None:
            self.scout.stop()
        self.zk.stop()

    def start(self, services):
        self.scout = Scout(policy(services, extra=BALLAST), self.zk.connect).start()
        return self.scout

    def test_lazy_until_every_service_synced_then_eager(self):
        self.zk.stop_node(1)                    # nothing can be read: the sync cannot end
        s = self.start({"a": 'path = "/gc/a", ' + KEEP, "b": 'path = "/gc/b", ' + KEEP})
        self.assertEqual(s.health()[0], 503)
        self.assertGreater(s.metric("scout_lua_memory_bytes"), 4 << 20)
        self.assertEqual(s.metric("scout_lua_gc_pause"), 120)
        self.assertEqual(s.metric("scout_lua_gc_sync_ends_total"), 0)
        self.zk.start_node(1)
        wait_until(lambda: s.health()[0] == 200, what="health 200")
        wait_until(lambda: s.metric("scout_lua_gc_pause") == 100, what="the eager pause after the sync")
        self.assertEqual(s.metric("scout_lua_gc_sync_ends_total"), 1)
        self.assertEqual(s.metric("scout_lua_gc_sync_bounds_total"), 0)
        wait_until(lambda: s.metric("scout_lua_gc_settles_total") == 1, what="the collection after the sync")
        self.assertIn("initial sync over for the Lua collector (2 of 2 services judged", s.log())

    def test_a_reloads_new_vm_syncs_lazily_then_turns_eager(self):
        s = self.start({"a": 'path = "/gc/a", ' + KEEP})
        wait_until(lambda: s.metric("scout_lua_gc_sync_ends_total") == 1, what="the first VM's sync over")
        with open(s.policy_file, "w") as f:
            f.write(policy({"a": 'path = "/gc/a", ' + KEEP, "b": 'path = "/gc/b", ' + KEEP}, extra=BALLAST))
        s.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "b" in s.services() and s.ids("b") == ["127.0.0.1:1", "127.0.0.1:2"],
                   what="the reload's new service")
        wait_until(lambda: s.metric("scout_lua_gc_sync_ends_total") == 2, what="the new VM's sync over")
        wait_until(lambda: s.metric("scout_lua_gc_pause") == 100, what="the new VM eager")

    def test_services_that_never_sync_do_not_keep_it_lazy(self):
        # "bad"'s filter raises on every child (degraded: never synced) and "gone"'s path does not exist
        s = self.start({"a": 'path = "/gc/a", ' + KEEP,
                        "bad": 'path = "/gc/b", filter = function(ep) error("no such luck") end,',
                        "gone": 'path = "/gc/none", ' + KEEP})
        wait_until(lambda: s.metric("scout_lua_gc_sync_ends_total") == 1, what="the sync over for the collector")
        wait_until(lambda: s.metric("scout_lua_gc_pause") == 100, what="the eager pause")
        self.assertEqual(s.metric("scout_lua_gc_sync_bounds_total"), 0)     # every service judged: no bound
        status, body = s.health()
        self.assertEqual(status, 503)
        self.assertIn("service bad is degraded", body["reason"])


if __name__ == "__main__":
    unittest.main()

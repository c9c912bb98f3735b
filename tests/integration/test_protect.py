"""Protection against mass-deregistration glitches: a big drop (or an empty list) is held back and the previous
list served, visibly `protected`, until re-reads confirm it or `hold` passes; a drop that heals is never
published; an on_protect hook can decide. Real ZooKeeper, driven with kazoo."""

import time
import unittest

from scoutharness import Scout, policy, wait_until
from zkharness import ZooKeeper


class Protect(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = ZooKeeper().start()
        cls.kz = cls.zk.client()

    @classmethod
    def tearDownClass(cls):
        cls.zk.stop()

    def tearDown(self):
        self.scout.stop()

    def start(self, path, n, body):
        self.kz.ensure_path(path)
        for p in range(n):
            self.kz.create("%s/127.0.0.1:%d" % (path, 7000 + p))
        self.scout = Scout(policy({"svc": 'path = "%s",\n%s' % (path, body)}), self.zk.connect).start()
        wait_until(lambda: len(self.scout.ids("svc")) == n, what="initial list")
        return self.scout

    def watch_during(self, s, seconds, check):
        """Poll the API every 50 ms for `seconds`; every answer must pass check."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            check(s.ids("svc"))
            time.sleep(0.05)

    def test_mass_deletion_is_held_then_confirmed(self):
        # held for 3 confirmations 1 s apart: a 3 s window for the checks below, ample on a loaded machine
        s = self.start("/p1/svc", 10, 'protect = { min_ratio = 0.5, confirm = 3, confirm_interval = 1000 }')
        before = s.ids("svc")
        t = self.kz.transaction()                            # a glitch: 80% gone in one step
        for p in range(8):
            t.delete("/p1/svc/127.0.0.1:%d" % (7000 + p))
        t.commit()
        wait_until(lambda: s.state("svc") == "protected", what="protected")
        self.assertEqual(s.ids("svc"), before)               # the previous set is still served
        self.assertEqual(s.metric("scout_service_protected", "svc"), 1)
        self.assertEqual(s.metric("scout_service_protections_total", "svc"), 1)
        wait_until(lambda: s.state("svc") == "synced", what="released after confirmation")
        self.assertEqual(s.ids("svc"), ["127.0.0.1:7008", "127.0.0.1:7009"])
        self.assertRegex(s.log(), r"protection: publishing the drop from 10 to 2 endpoints after 3 confirmations")
        self.assertEqual(s.metric("scout_service_protected", "svc"), 0)

    def test_one_by_one_deletions_never_serve_less_than_the_ratio(self):
        s = self.start("/p7/svc", 10, 'protect = { min_ratio = 0.5, confirm = 3, confirm_interval = 400 }')
        before = set(s.ids("svc"))
        for p in range(8):                                   # each read sees one deletion more
            self.kz.delete("/p7/svc/127.0.0.1:%d" % (7000 + p))
            time.sleep(0.05)
            ids = s.ids("svc")
            self.assertGreaterEqual(len(ids), 5)             # never below half of the baseline (10)
            self.assertLessEqual(set(ids), before)
        wait_until(lambda: s.state("svc") == "protected", what="protected")
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:7008", "127.0.0.1:7009"], what="released")

    def test_deleting_everything_is_never_empty_until_confirmed(self):
        s = self.start("/p2/svc", 4, 'protect = { confirm = 3, confirm_interval = 1000 }')  # held ~3 s
        for p in range(4):
            self.kz.delete("/p2/svc/127.0.0.1:%d" % (7000 + p))
        wait_until(lambda: s.state("svc") == "protected", what="protected")
        self.watch_during(s, 0.5, lambda ids: self.assertGreater(len(ids), 0))
        wait_until(lambda: s.ids("svc") == [], what="empty after confirmation")
        self.assertEqual(s.state("svc"), "synced")

    def test_hold_bounds_protection(self):
        s = self.start("/p3/svc", 4, 'protect = { confirm = 1000, confirm_interval = 200, hold = "2s" }')
        t0 = time.monotonic()
        for p in range(4):
            self.kz.delete("/p3/svc/127.0.0.1:%d" % (7000 + p))
        wait_until(lambda: s.state("svc") == "protected", what="protected")
        wait_until(lambda: s.ids("svc") == [], what="released by hold")
        self.assertGreaterEqual(time.monotonic() - t0, 1.5)   # not before hold (loose: clocks and polling)

    def test_a_drop_that_heals_is_never_published(self):
        s = self.start("/p4/svc", 4, 'protect = { confirm = 50, confirm_interval = 200 }')
        t = self.kz.transaction()                               # the registry glitches: all gone at once
        for p in range(4):
            t.delete("/p4/svc/127.0.0.1:%d" % (7000 + p))
        t.commit()
        wait_until(lambda: s.state("svc") == "protected", what="protected")
        self.watch_during(s, 0.3, lambda ids: self.assertEqual(len(ids), 4))
        t = self.kz.transaction()                               # the registry comes back with new instances
        for p in range(4, 6):
            t.create("/p4/svc/127.0.0.1:%d" % (7000 + p))
        t.commit()
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:7004", "127.0.0.1:7005"], what="healed")
        self.assertEqual(s.state("svc"), "synced")
        self.assertIn("protection released", s.log())

    def test_on_protect_hook_decides(self):
        s = self.start("/p5/svc", 4, 'protect = { confirm = 1000, confirm_interval = 200 },\n'
                                     'on_protect = function(svc, ev) return ev.to >= 1 end')
        self.kz.delete("/p5/svc/127.0.0.1:7000")
        self.kz.delete("/p5/svc/127.0.0.1:7001")
        self.kz.delete("/p5/svc/127.0.0.1:7002")             # 4 -> 1: not empty, no min_ratio: no protection
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:7003"], what="small set published")
        self.kz.delete("/p5/svc/127.0.0.1:7003")             # -> 0: the hook says hold
        wait_until(lambda: s.state("svc") == "protected", what="hook holds the empty set")
        self.watch_during(s, 0.6, lambda ids: self.assertEqual(ids, ["127.0.0.1:7003"]))

    def test_protection_can_be_turned_off(self):
        s = self.start("/p6/svc", 3, 'protect = false')
        for p in range(3):
            self.kz.delete("/p6/svc/127.0.0.1:%d" % (7000 + p))
        wait_until(lambda: s.ids("svc") == [], what="empty at once")
        self.assertEqual(s.metric("scout_service_protections_total", "svc"), 0)


if __name__ == "__main__":
    unittest.main()

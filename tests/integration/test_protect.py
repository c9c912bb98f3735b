"""Protection against mass-deregistration glitches: a big drop (or an empty list) is held back and the previous
list served, visibly `protected`, until re-reads confirm it or `hold` passes; a drop that heals is never
published; an on_protect hook can decide. Real ZooKeeper, driven with kazoo."""

import re
import unittest

from scoutharness import OneServiceCase, wait_until


class Protect(OneServiceCase):
    def served_until(self, s, done, what):
        """Poll the API until done(ids) holds; every distinct answer on the way, in order, as (index, ids, state).
        What the test asserts on is this history, ended by an event (the list it waits for), not by a clock."""
        history = []

        def poll():
            eps, h = s.endpoints("svc")
            snap = (int(h["X-Scout-Index"]), sorted(e["id"] for e in eps), h.get("X-Scout-State"))
            if not history or history[-1] != snap:
                history.append(snap)
            return done(snap[1])
        wait_until(poll, what=what)
        return history

    def reads(self, s):
        return s.metric("scout_service_reads_children_total", "svc")

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
            n = self.reads(s)
            self.kz.delete("/p7/svc/127.0.0.1:%d" % (7000 + p))
            wait_until(lambda: self.reads(s) > n, what="a read after deletion %d" % p)
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
        history = self.served_until(s, lambda ids: ids == [], what="empty after confirmation")
        for index, ids, state in history[:-1]:             # every answer until the release: never empty
            self.assertGreater(len(ids), 0, history)
        self.assertEqual(s.state("svc"), "synced")
        self.assertRegex(s.log(), r"publishing the drop from \d+ to 0 endpoints after 3 confirmations")

    def test_hold_bounds_protection(self):
        s = self.start("/p3/svc", 4, 'protect = { confirm = 1000, confirm_interval = 200, hold = "2s" }')
        for p in range(4):
            self.kz.delete("/p3/svc/127.0.0.1:%d" % (7000 + p))
        wait_until(lambda: s.state("svc") == "protected", what="protected")
        wait_until(lambda: s.ids("svc") == [], what="released by hold")
        # released by hold, not by confirmations, and not before hold by the agent's own account
        m = re.search(r"publishing the drop from \d+ to 0 endpoints after (\d+) confirmations and (\d+) ms", s.log())
        self.assertTrue(m, s.log())
        self.assertLess(int(m.group(1)), 1000)
        self.assertGreaterEqual(int(m.group(2)), 2000)

    def test_a_drop_that_heals_is_never_published(self):
        s = self.start("/p4/svc", 4, 'protect = { confirm = 50, confirm_interval = 200 }')
        t = self.kz.transaction()                               # the registry glitches: all gone at once
        for p in range(4):
            t.delete("/p4/svc/127.0.0.1:%d" % (7000 + p))
        t.commit()
        wait_until(lambda: s.state("svc") == "protected", what="protected")
        pubs = s.metric("scout_service_publishes_total", "svc")
        n = self.reads(s)
        wait_until(lambda: self.reads(s) >= n + 2, what="two confirming re-reads while held")
        t = self.kz.transaction()                               # the registry comes back with new instances
        for p in range(4, 6):
            t.create("/p4/svc/127.0.0.1:%d" % (7000 + p))
        t.commit()
        healed = ["127.0.0.1:7004", "127.0.0.1:7005"]
        history = self.served_until(s, lambda ids: ids == healed, what="healed")
        for index, ids, state in history[:-1]:                 # until the heal: the old four, never the drop
            self.assertEqual(len(ids), 4, history)
        self.assertEqual(s.metric("scout_service_publishes_total", "svc") - pubs, 1, "only the healed list")
        self.assertEqual(s.state("svc"), "synced")
        self.assertIn("protection released", s.log())

    def test_on_protect_hook_decides(self):
        # confirm = 1: without the hook the empty list would go out at the first re-read; the hook holds it
        s = self.start("/p5/svc", 4, 'protect = { confirm = 1, confirm_interval = 200 },\n'
                                     'on_protect = function(svc, ev) return ev.to >= 1 end')
        self.kz.delete("/p5/svc/127.0.0.1:7000")
        self.kz.delete("/p5/svc/127.0.0.1:7001")
        self.kz.delete("/p5/svc/127.0.0.1:7002")             # 4 -> 1: not empty, no min_ratio: no protection
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:7003"], what="small set published")
        self.kz.delete("/p5/svc/127.0.0.1:7003")             # -> 0: the hook says hold
        wait_until(lambda: s.state("svc") == "protected", what="hook holds the empty set")
        n = self.reads(s)
        wait_until(lambda: self.reads(s) >= n + 3, what="three re-reads the hook held against")
        self.assertEqual(s.ids("svc"), ["127.0.0.1:7003"])
        self.assertEqual(s.state("svc"), "protected")

    def test_protection_can_be_turned_off(self):
        s = self.start("/p6/svc", 3, 'protect = false')
        for p in range(3):
            self.kz.delete("/p6/svc/127.0.0.1:%d" % (7000 + p))
        wait_until(lambda: s.ids("svc") == [], what="empty at once")
        self.assertEqual(s.metric("scout_service_protections_total", "svc"), 0)


if __name__ == "__main__":
    unittest.main()

"""Exactness under churn: thousands of rapid changes from several writers, and changes made while a delayed re-read
is pending or in flight (the window one-shot watches leave). The agent's final list must equal ZooKeeper's."""

import unittest

from churn import run_writers, seen, truth
from scoutharness import Scout, policy, wait_until
from zkharness import ZooKeeper


class Churn(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = ZooKeeper().start()
        cls.kz = cls.zk.client()

    @classmethod
    def tearDownClass(cls):
        cls.zk.stop()

    def tearDown(self):
        self.scout.stop()

    def converge(self, path, service):
        want = truth(self.kz, path)
        wait_until(lambda: seen(self.scout, service) == want, timeout=60, what="exact final list")
        self.assertEqual(seen(self.scout, service), truth(self.kz, path))
        return want

    def test_2000_rapid_creates_and_deletes_from_four_writers(self):
        self.kz.ensure_path("/c1/svc")
        # anti-entropy re-lists every ~300 ms during the churn: it must find no drift (watches are exact)
        self.scout = Scout(policy({"svc": 'path = "/c1/svc"'}, extra='agent { anti_entropy = 300 }'),
                           self.zk.connect).start()
        run_writers(self.zk, "/c1/svc", ops=2000, writers=4)
        want = self.converge("/c1/svc", "svc")
        self.assertGreater(len(want), 0)
        self.assertEqual(self.scout.metric("scout_service_hook_errors_total", "svc"), 0)
        wait_until(lambda: self.scout.metric("scout_service_anti_entropy_checks_total", "svc") >= 2,
                   what="anti-entropy re-lists")
        self.assertEqual(self.scout.metric("scout_service_anti_entropy_repairs_total", "svc"), 0)

    def test_changes_during_a_delayed_read_are_not_lost(self):
        self.kz.ensure_path("/c2/svc")
        # every event waits 200 ms before the re-read: writers keep changing children and data meanwhile
        self.scout = Scout(policy({"svc": 'path = "/c2/svc",\n'
                                          'delay = function(ev) return 200 end'}), self.zk.connect).start()
        for rnd in range(3):
            run_writers(self.zk, "/c2/svc", ops=600, writers=3, data_every=3, seed=rnd + 10)
        want = self.converge("/c2/svc", "svc")
        self.assertTrue(any(k.startswith("id-") for k in want), "data-carrying children took part")
        # the delay coalesced events: far fewer children reads than watch events
        m = self.scout.metrics()
        self.assertLess(m["scout_zk_requests_children_total"], m["scout_zk_watch_events_total"])

    def test_data_rewrites_are_followed_exactly(self):
        self.kz.ensure_path("/c3/svc")
        self.scout = Scout(policy({"svc": 'path = "/c3/svc"'}), self.zk.connect).start()
        run_writers(self.zk, "/c3/svc", ops=1500, writers=3, data_every=1, seed=7)
        self.converge("/c3/svc", "svc")


if __name__ == "__main__":
    unittest.main()

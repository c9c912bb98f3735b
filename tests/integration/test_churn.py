"""Exactness under churn: thousands of rapid changes from several writers, and changes made while a delayed re-read
is pending or in flight (the window one-shot watches leave). The agent's final list must equal ZooKeeper's."""

import unittest

from churn import run_writers, seen, truth
from scoutharness import policy, wait_until, Scout, ZkCase


class Churn(ZkCase):
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
        # that the delay coalesces is test_events_inside_a_delay_cost_one_read's, by event count, not by the clock

    def test_events_inside_a_delay_cost_one_read(self):
        """Every event inside a delay window folds into one read and one publish. The window is closed by the
        events themselves, not by a clock: the first five wait a minute, the sixth asks for the read at once."""
        self.kz.ensure_path("/c6/svc")
        for i in range(6):
            self.kz.create("/c6/svc/id-%d" % i, b'{"host":"10.0.0.1","port":%d,"weight":1}' % (i + 1))
        self.scout = s = Scout(policy({"svc": 'path = "/c6/svc", protect = false,\n'
                                              'delay = function(ev) return ev.pending < 5 and 60000 or 0 end'}),
                               self.zk.connect).start()
        wait_until(lambda: seen(s, "svc") == truth(self.kz, "/c6/svc"), what="initial")
        lists = s.metric("scout_zk_requests_total{op=\"children\"}")
        datas = s.metric("scout_service_reads_data_total", "svc")
        pubs = s.metric("scout_service_publishes_total", "svc")
        for i in range(6):                      # six data events; the sixth closes the window
            self.kz.set("/c6/svc/id-%d" % i, b'{"host":"10.0.0.2","port":%d,"weight":1}' % (i + 1))
        wait_until(lambda: seen(s, "svc") == truth(self.kz, "/c6/svc"), what="all six changes")
        self.assertEqual(s.metric("scout_service_publishes_total", "svc") - pubs, 1, "one publish for six events")
        self.assertEqual(s.metric("scout_service_reads_data_total", "svc") - datas, 6, "each changed child read once")
        self.assertEqual(s.metric("scout_zk_requests_total{op=\"children\"}") - lists, 0, "no list read for data events")

    def test_data_rewrites_are_followed_exactly(self):
        self.kz.ensure_path("/c3/svc")
        self.scout = Scout(policy({"svc": 'path = "/c3/svc"'}), self.zk.connect).start()
        run_writers(self.zk, "/c3/svc", ops=1500, writers=3, data_every=1, seed=7)
        self.converge("/c3/svc", "svc")


    def test_delete_and_recreate_under_the_same_name_inside_a_delay(self):
        # an ephemeral provider re-registering the same id after its session expired
        self.kz.ensure_path("/c4/svc")
        self.kz.create("/c4/svc/id-x", b'{"host":"10.0.0.1","port":1,"weight":1}')
        self.scout = s = Scout(policy({"svc": 'path = "/c4/svc", protect = false, delay = 500'}),
                               self.zk.connect).start()
        wait_until(lambda: seen(s, "svc") == truth(self.kz, "/c4/svc"), what="initial")
        t = self.kz.transaction()
        t.delete("/c4/svc/id-x")
        t.create("/c4/svc/id-x", b'{"host":"10.0.0.2","port":1,"weight":1}')
        t.commit()
        wait_until(lambda: seen(s, "svc") == {"id-x": ("10.0.0.2", 1, 1)}, what="the new incarnation's data")
        self.kz.set("/c4/svc/id-x", b'{"host":"10.0.0.3","port":1,"weight":1}')     # the new node is watched
        wait_until(lambda: seen(s, "svc") == {"id-x": ("10.0.0.3", 1, 1)}, what="a change to the new node")
        eps, _ = s.endpoints("svc")
        self.assertEqual(eps[0]["zxid"], self.kz.get("/c4/svc/id-x")[1].mzxid)

    def test_a_deletion_costs_one_list_read(self):
        self.kz.ensure_path("/c5/svc")
        for i in range(3):
            self.kz.create("/c5/svc/id-%d" % i, b'{"host":"10.0.0.1","port":%d}' % (i + 1))
            self.kz.create("/c5/svc/127.0.0.1:%d" % (i + 1))
        self.scout = s = Scout(policy({"svc": 'path = "/c5/svc", protect = false'}), self.zk.connect).start()
        wait_until(lambda: len(s.ids("svc")) == 6, what="initial")
        for n, name in enumerate(("id-0", "127.0.0.1:1")):  # a data-watched child, a name-only child
            before = s.metric("scout_zk_requests_total{op=\"children\"}")
            self.kz.delete("/c5/svc/" + name)
            # the list read answered, not only sent: one still in flight when the marker is made would list it,
            # and the marker would then need no read of its own (seen once on a loaded host: 1 != 2)
            wait_until(lambda: name not in s.ids("svc")
                       and s.metric("scout_zk_requests_total{op=\"children\"}") > before
                       and s.metric("scout_zk_reads_in_flight") == 0, what="%s gone, list read" % name)
            # a later change, seen after the deletion's read: any further read for the deletion came before it
            marker = "127.0.0.1:%d" % (90 + n)
            self.kz.create("/c5/svc/" + marker)
            wait_until(lambda: marker in s.ids("svc"), what="marker %s" % marker)
            self.assertEqual(s.metric("scout_zk_requests_total{op=\"children\"}") - before, 2, "%s, then the marker" % name)


if __name__ == "__main__":
    unittest.main()

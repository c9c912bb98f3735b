"""Protection's confirmations are paced by `confirm_interval`: a drop is published after `confirm` re-reads, one per
interval, agree with it. The reads caused by the drop itself (a staggered mass deregistration, one deletion per
watch event) confirm nothing, or a rolling glitch would confirm itself in milliseconds. Real ZooKeeper, kazoo."""

import json
import unittest

from scoutharness import OneServiceCase, wait_until


class ProtectConfirm(OneServiceCase):
    def explain(self):
        status, _, body = self.scout.request("/v1/explain/svc")
        self.assertEqual(status, 200)
        return json.loads(body)

    def seen(self, node_id):
        """The agent has read the deletion of node_id: protection holds it, or it is no longer served."""
        held = [c for c in self.explain()["children"] if c["id"] == node_id and c["verdict"] == "held"]
        return held or node_id not in self.scout.ids("svc")

    def test_a_staggered_deletion_does_not_confirm_itself(self):
        # one confirmation an hour: none can come due while this test runs, however slow the machine
        s = self.start("/pc1/svc", 10, 'protect = { min_ratio = 0.95, confirm = 2, confirm_interval = "1h", '
                                       'hold = "2h" }')
        before = s.ids("svc")
        for p in range(6):                          # six watch events, six reads, each seeing one deletion more
            node_id = "127.0.0.1:%d" % (7000 + p)
            self.kz.delete("/pc1/svc/" + node_id)
            wait_until(lambda: self.seen(node_id), what="the agent read the deletion of " + node_id)
        # every deletion has been read: the drop is still held, and none of those reads was a confirmation
        self.assertEqual(s.ids("svc"), before)
        self.assertEqual(s.state("svc"), "protected")
        ex = self.explain()
        self.assertTrue(ex["protected"])
        self.assertEqual(ex["confirms"], 0)
        self.assertEqual(sorted(c["id"] for c in ex["children"] if c["verdict"] == "held"),
                         ["127.0.0.1:%d" % (7000 + p) for p in range(6)])
        self.assertNotIn("publishing the drop", s.log())

    def test_the_scheduled_re_reads_confirm_the_drop(self):
        s = self.start("/pc2/svc", 10, 'protect = { min_ratio = 0.5, confirm = 2, confirm_interval = 300, '
                                       'hold = "1h" }')
        reads = s.metric("scout_service_reads_children_total", "svc")
        t = self.kz.transaction()
        for p in range(8):
            t.delete("/pc2/svc/127.0.0.1:%d" % (7000 + p))
        t.commit()
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:7008", "127.0.0.1:7009"], what="published after confirmation")
        self.assertRegex(s.log(), r"protection: publishing the drop from 10 to 2 endpoints after 2 confirmations")
        # the read of the deletion, then one re-read per confirmation
        self.assertGreaterEqual(s.metric("scout_service_reads_children_total", "svc") - reads, 3)
        self.assertEqual(s.state("svc"), "synced")


if __name__ == "__main__":
    unittest.main()

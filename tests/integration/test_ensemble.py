"""A 3-node ZooKeeper ensemble on loopback: the agent takes the whole connect string, and when the server it is
connected to dies (found with 4lw `cons` by session id) or the leader dies, it moves to a survivor within the
same session and loses no change. Also: a chroot in the connect string."""

import re
import unittest

from churn import seen, truth
from scoutharness import Scout, policy, wait_until
from zkharness import ZooKeeper


class Ensemble(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = ZooKeeper(nodes=3).start()

    @classmethod
    def tearDownClass(cls):
        cls.zk.stop()

    def setUp(self):
        self.scout = None

    def tearDown(self):
        if self.scout:
            self.scout.stop()

    def session_id(self, s):
        m = re.search(r"established session 0x([0-9a-f]+)", s.log())
        return int(m.group(1), 16)

    def serving_node(self, sid):
        """The node whose `cons` lists our session (sid=0x...)."""
        for n in (1, 2, 3):
            try:
                out = self.zk.four("cons", n)
            except RuntimeError:
                continue
            for m in re.finditer(r"sid=0x([0-9a-f]+)", out):
                if int(m.group(1), 16) == sid:
                    return n
        return None

    def test_connected_server_and_leader_die(self):
        kz = self.zk.client()
        kz.ensure_path("/e1/svc")
        for p in range(5):
            kz.create("/e1/svc/127.0.0.1:%d" % (9000 + p))
        self.scout = s = Scout(policy({"svc": 'path = "/e1/svc"'}, session_timeout=4000), self.zk.connect).start()
        wait_until(lambda: len(s.ids("svc")) == 5, what="initial list")
        sid = self.session_id(s)
        node = wait_until(lambda: self.serving_node(sid), what="the server holding our session")

        # 1. the server the agent talks to dies; writes continue on the survivors
        self.zk.kill_node(node)
        kz = self.zk.client()
        kz.delete("/e1/svc/127.0.0.1:9000")
        kz.create("/e1/svc/127.0.0.1:9100")
        wait_until(lambda: s.state("svc") == "synced" and seen(s, "svc") == truth(kz, "/e1/svc"),
                   what="exact after the connected server died")
        moved = wait_until(lambda: self.serving_node(sid), what="session on a survivor")
        self.assertNotEqual(moved, node)
        self.zk.start_node(node)

        # 2. the leader dies (quorum survives with two of three)
        leader = wait_until(lambda: self.zk.leader(), what="a leader")
        self.zk.kill_node(leader)
        kz = self.zk.client()
        for p in range(3):
            kz.create("/e1/svc/127.0.0.1:%d" % (9200 + p))
        kz.delete("/e1/svc/127.0.0.1:9001")
        wait_until(lambda: s.state("svc") == "synced" and seen(s, "svc") == truth(kz, "/e1/svc"),
                   what="exact after the leader died")
        self.zk.start_node(leader)

        # the same session all along: no expiry, no new handle
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), 1)
        self.assertEqual(s.metric("scout_zk_session_expirations_total"), 0)
        self.assertGreaterEqual(s.metric("scout_zk_reconnects_total"), 2)

    def test_chroot_in_the_connect_string(self):
        kz = self.zk.client()
        kz.create("/tenant-a/svc/127.0.0.1:1", makepath=True)
        kz.create("/svc/127.0.0.1:2", makepath=True)          # outside the chroot: must not be seen
        self.scout = s = Scout(policy({"svc": 'path = "/svc"'}), self.zk.connect + "/tenant-a").start()
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:1"], what="list inside the chroot")
        kz.create("/tenant-a/svc/id-1", b'{"host":"10.0.0.1","port":5}')
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:1", "id-1"], what="data child inside the chroot")
        kz.set("/tenant-a/svc/id-1", b'{"host":"10.0.0.1","port":6}')
        wait_until(lambda: [e["port"] for e in s.endpoints("svc")[0] if e["id"] == "id-1"] == [6],
                   what="data watch inside the chroot")


if __name__ == "__main__":
    unittest.main()

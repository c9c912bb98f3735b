"""Ordering against a lagging follower: what a server that has not caught up says must never roll back what the
agent serves.

The ensemble has three real servers. Node 1 reaches the leader only through `zkwire.Stall` relays on its quorum
port; freezing them partitions it from the quorum while it keeps serving clients from what it has (it is left
with a long syncLimit so it does not notice for minutes, and with local sessions so a new session can open on it
without the leader, as ZooKeeper deployments with `localSessionsEnabled` do). The agent talks to the ensemble
through a `zkwire.WireProxy` that sends reconnects of its session to node 2 and, once asked, every new session to
the lagging node 1. Its session is then expired for real (SIGSTOP past the timeout): the new session lands on the
lagging follower, whose answers are older than what the agent holds:

- a child list with an older pzxid (the children gate: dropped and counted),
- a child's data with an older mzxid (the data gate: dropped and counted),
- "no node" for a path created during the partition: no Stat at all, so no zxid to compare (it must not empty
  the list, even with `protect = false`).
"""

import os
import re
import unittest

from kazoo.client import KazooClient

from scoutharness import policy, wait_until, Scout, ZkCase
from zkharness import ZooKeeper
from zkwire import Stall, WireProxy


def lagging_ensemble():
    """A 3-node ensemble whose node 1 is a follower reaching the others' quorum ports through Stall relays."""
    zk = ZooKeeper(nodes=3).start()
    try:
        if zk.leader() == 1:                      # restarting it makes it follow the new leader
            zk.stop_node(1)
            zk.start_node(1)
        zk.stop_node(1)
        cfg = os.path.join(zk.dir, "node1", "zoo.cfg")
        with open(cfg) as f:
            text = f.read()
        stalls = []
        for n in (2, 3):
            m = re.search(r"^server\.%d=127\.0\.0\.1:(\d+):(\d+)$" % n, text, re.M)
            st = Stall("127.0.0.1:%s" % m.group(1)).start()
            stalls.append(st)
            text = text.replace(m.group(0), "server.%d=127.0.0.1:%d:%s" % (n, st.port, m.group(2)))
        text = re.sub(r"^syncLimit=\d+$", "syncLimit=100000", text, flags=re.M)
        text += "localSessionsEnabled=true\nlocalSessionsUpgradingEnabled=true\n"
        with open(cfg, "w") as f:
            f.write(text)
        zk.start_node(1)
        wait_until(lambda: "Mode: follower" in zk.four("srvr", 1), what="node 1 follows again")
    except Exception:
        zk.stop()
        raise
    return zk, stalls


class Lagging(unittest.TestCase):
    def setUp(self):
        self.zk, self.stalls = lagging_ensemble()
        self.kz = self.zk.client(hosts="127.0.0.1:%d" % self.zk.port(2))      # the writer: quorum side
        self.proxy = WireProxy("127.0.0.1:%d" % self.zk.port(2)).start()
        self.scout = None

    def tearDown(self):
        try:
            if self.scout:
                self.scout.stop()
        finally:
            self.proxy.stop()
            for st in self.stalls:
                st.stop()
            self.zk.stop()

    def on_node1(self, fn):
        """fn(client) with a fresh session on node 1: what the lagging follower itself says."""
        k = KazooClient(hosts="127.0.0.1:%d" % self.zk.port(1), timeout=10)
        k.start(timeout=10)
        try:
            return fn(k)
        finally:
            k.stop()
            k.close()

    def session_id(self, s, nth):
        ids = re.findall(r"established session 0x([0-9a-f]+)", s.log())
        return int(ids[nth], 16) if len(ids) > nth else None

    def expired(self, sid):
        """The leader's own record that it expired the session (logged after it marked the session closing, so a
        reconnect from then on is refused). Not the session's absence from `cons`: that answer comes through a 3 s
        `timeout` that, on a loaded host, leaves it empty or cut short, which read as "expired" while it was not."""
        line = "Expiring session 0x%x," % sid
        for n in (1, 2, 3):
            with open(self.zk.log(n), errors="replace") as f:
                if line in f.read():
                    return True
        return False

    def test_a_lagging_follower_rolls_nothing_back(self):
        kz = self.kz
        kz.create("/g4/older/127.0.0.1:7001", makepath=True)
        kz.create("/g4/older/127.0.0.1:7002")
        kz.create("/g4/data/id-1", b'{"host":"10.0.0.1","port":1}', makepath=True)
        kz.ensure_path("/g4/was")                 # the parent of a path created during the partition
        # node 1 has all of it before the partition
        wait_until(lambda: self.on_node1(lambda k: k.exists("/g4/was") and k.exists("/g4/data/id-1")),
                   what="node 1 caught up before the partition")

        s = self.scout = Scout(policy({
            "gone": 'path = "/g4/was/gone", protect = false',
            "older": 'path = "/g4/older", protect = false',
            "data": 'path = "/g4/data", protect = false',
        }, session_timeout=1500), self.proxy.connect, log_level="debug").start()   # debug: every answer is logged
        wait_until(lambda: s.ids("older") == ["127.0.0.1:7001", "127.0.0.1:7002"] and s.ids("data") == ["id-1"]
                   and s.state("gone") == "synced", what="first lists")

        for st in self.stalls:
            st.freeze()
        # written on the quorum side only: node 1 never hears of it
        kz.create("/g4/was/gone/127.0.0.1:7101", makepath=True)
        kz.create("/g4/was/gone/127.0.0.1:7102")
        kz.create("/g4/older/127.0.0.1:7003")
        kz.set("/g4/data/id-1", b'{"host":"10.0.0.1","port":2}')
        kz.create("/g4/data/id-2", b'{"host":"10.0.0.2","port":2}')
        wait_until(lambda: s.ids("gone") == ["127.0.0.1:7101", "127.0.0.1:7102"]
                   and len(s.ids("older")) == 3
                   and [e["port"] for e in s.endpoints("data")[0]] == [2, 2], what="the agent sees the new state")
        self.assertIsNone(self.on_node1(lambda k: k.exists("/g4/was/gone")))     # node 1 lags indeed
        publishes = {n: s.metric("scout_service_publishes_total", n) for n in ("gone", "older", "data")}
        self.assertEqual(s.metric("scout_service_stale_results_dropped_total", "older"), 0)
        self.assertEqual(s.metric("scout_service_stale_results_dropped_total", "data"), 0)

        # the session expires for real; the new one lands on the lagging follower
        first = self.session_id(s, 0)
        self.proxy.route_new_sessions("127.0.0.1:%d" % self.zk.port(1))
        s.pause()
        try:
            wait_until(lambda: self.expired(first), what="the server expires the paused agent's session")
        finally:
            s.resume()
        second = wait_until(lambda: self.session_id(s, 1), what="a new session")
        # created by the lagging node 1: a session id's top byte is the id of the server that created it (not
        # `cons` on node 1: the session's connection lasts ~1 s there, its sync is never answered)
        self.assertEqual(second >> 56, 1, "session 0x%x" % second)
        # the gates drop the older answers and count them
        wait_until(lambda: s.metric("scout_service_stale_results_dropped_total", "older") >= 1,
                   what="the older child list dropped")
        wait_until(lambda: s.metric("scout_service_stale_results_dropped_total", "data") >= 1,
                   what="the older data dropped")
        self.assertEqual(len(s.ids("older")), 3)
        self.assertEqual([e["port"] for e in s.endpoints("data")[0]], [2, 2])
        # and "no node" (no Stat, no zxid) must not empty what the agent holds
        wait_until(lambda: re.search(r"established session 0x%x.*/g4/was/gone: [^\n]*does not exist" % second,
                                     s.log(), re.S), what="the lagging server's answer for the path it lacks")
        self.assertEqual(s.ids("gone"), ["127.0.0.1:7101", "127.0.0.1:7102"])
        self.assertEqual(s.ids("data"), ["id-1", "id-2"])

        # the partition heals; new sessions go to the quorum side again; one more change to wait for
        self.proxy.route_new_sessions(None)
        for st in self.stalls:
            st.thaw()
        kz.create("/g4/was/gone/127.0.0.1:7103")
        kz.create("/g4/older/127.0.0.1:7004")
        kz.set("/g4/data/id-1", b'{"host":"10.0.0.1","port":3}')
        wait_until(lambda: s.ids("gone") == ["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"]
                   and len(s.ids("older")) == 4
                   and [e["port"] for e in s.endpoints("data")[0]] == [3, 2], what="the change after the partition")
        # exactly one publication each since the partition: the older states were never published in between
        for n in ("gone", "older", "data"):
            self.assertEqual(s.metric("scout_service_publishes_total", n), publishes[n] + 1, n)



class NoNodeStillTrue(ZkCase):
    """The other side of the sync: a path really deleted with its children (one transaction, so the agent's next
    read is "no node" while it holds children) is emptied after the sync confirms it, and created again is seen."""

    def test_a_path_deleted_with_its_children_empties_the_list(self):
        kz = self.kz
        kz.create("/nn1/svc/127.0.0.1:7001", makepath=True)
        kz.create("/nn1/svc/id-1", b'{"host":"10.0.0.1","port":1}')
        s = Scout(policy({"svc": 'path = "/nn1/svc", protect = false'}), self.zk.connect).start()
        try:
            wait_until(lambda: s.ids("svc") == ["127.0.0.1:7001", "id-1"], what="first list")
            t = kz.transaction()
            t.delete("/nn1/svc/127.0.0.1:7001")
            t.delete("/nn1/svc/id-1")
            t.delete("/nn1/svc")
            t.commit()
            wait_until(lambda: s.ids("svc") == [], what="the deletion published")
            self.assertEqual(s.state("svc"), "synced")
            kz.create("/nn1/svc/127.0.0.1:7002", makepath=True)
            wait_until(lambda: s.ids("svc") == ["127.0.0.1:7002"], what="created again")
        finally:
            s.stop()


if __name__ == "__main__":
    unittest.main()

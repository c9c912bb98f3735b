"""A connection whose session handshake is lost is ended by the agent and tried again; a slow one is waited for
(issue 14: the million-endpoint restart).

A ZooKeeper 3.8 server that is loading its database accepts connections; for one that comes before its database
object exists, its close fails ("ZooKeeperServer not running", then a NullPointerException in removeCnxn) and the
socket stays open, the ConnectRequest never answered. The C client's only bound on a handshake is its receive
timeout, 2/3 of the session timeout: after a restart every session that connected in that moment waited that long
after the server was serving (20 s at a 30 s session timeout). The agent ends a handshake unanswered for 1 s once
the same server has answered a handshake begun after it (it was overtaken: lost), and the client connects again,
into the same session. A handshake that is only slow is not cut: the server would still process it, and reopening
the session there closes the connection the client made since.

A zkwire.WireProxy plays the server that never answers, or answers late; the session timeout is 60 s, so the
client's own bound (40 s) is past every wait of these tests.
"""

import unittest

from scoutharness import Scout, ZkCase, policy, wait_until
from zkwire import WireProxy


def two_services(root):
    # two sessions, one service each (services go round-robin over sessions)
    return policy({"a": 'path = "%s/a"' % root, "b": 'path = "%s/b"' % root}, session_timeout=60000,
                  zookeeper="sessions = 2")


class Handshakes(ZkCase):
    def setUp(self):
        self.scout = None
        self.proxy = WireProxy(self.zk.connect).start()

    def tearDown(self):
        if self.scout:
            self.scout.stop()
        self.proxy.stop()

    def start(self, root):
        for n in ("a", "b"):
            self.kz.create("%s/%s/127.0.0.1:100" % (root, n), makepath=True)
        s = self.scout = Scout(two_services(root), self.proxy.connect).start()
        for n in ("a", "b"):
            wait_until(lambda n=n: s.ids(n) == ["127.0.0.1:100"], what="%s listed" % n)
        return s

    def cut(self, root, name):
        """The connection of name's session goes with its next read."""
        self.proxy.cut_after(("%s/%s" % (root, name)).encode())
        self.kz.create("%s/%s/127.0.0.1:200" % (root, name))

    def test_an_overtaken_handshake_is_ended_and_tried_again(self):
        root = "/hsk1"
        s = self.start(root)
        reconnects = s.metric("scout_zk_reconnects_total")
        # a's reconnect lands on a server that never answers
        self.proxy.deafen(1)
        self.cut(root, "a")
        wait_until(lambda: self.proxy.deaf >= 1, what="a's reconnect taken in, never answered")
        # b's reconnect, begun after it, is answered: a's handshake is lost, and the agent ends it
        self.cut(root, "b")
        wait_until(lambda: self.proxy.deaf_ended >= 1, what="the agent ended a's lost handshake")
        wait_until(lambda: s.metric("scout_zk_reconnects_total") >= reconnects + 2, what="both sessions back")
        for n in ("a", "b"):
            wait_until(lambda n=n: s.ids(n) == ["127.0.0.1:100", "127.0.0.1:200"], what="%s's change" % n)
        self.assertEqual(s.metric("scout_zk_handshakes_cut_total"), 1)
        self.assertEqual(s.metric("scout_zk_session_expirations_total"), 0)
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), 2)

    def test_a_slow_handshake_is_waited_for(self):
        """Every handshake answered 1.5 s late, in order: none is cut (a cut one would still be processed by the
        server and close the connection made after it)."""
        root = "/hsk2"
        s = self.start(root)
        reconnects = s.metric("scout_zk_reconnects_total")
        self.proxy.slow_handshakes(1.5)
        self.cut(root, "a")
        wait_until(lambda: s.metric("scout_zk_reconnects_total") > reconnects, what="a back")
        self.cut(root, "b")
        wait_until(lambda: s.metric("scout_zk_reconnects_total") > reconnects + 1, what="b back")
        for n in ("a", "b"):
            wait_until(lambda n=n: s.ids(n) == ["127.0.0.1:100", "127.0.0.1:200"], what="%s's change" % n)
        self.assertEqual(s.metric("scout_zk_handshakes_cut_total"), 0)
        self.assertEqual(self.proxy.cuts, 2)


if __name__ == "__main__":
    unittest.main()

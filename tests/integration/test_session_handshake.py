"""A connection whose session handshake is never answered is ended by the agent and tried again (issue 14: the
million-endpoint restart).

A ZooKeeper 3.8 server that is loading its database accepts connections; for one that comes before its database
object exists, its close fails ("ZooKeeperServer not running", then a NullPointerException in removeCnxn) and the
socket stays open, the ConnectRequest never answered. The C client's only bound on a handshake is its receive
timeout, 2/3 of the session timeout: after a restart every session that connected in that moment waited that long
after the server was serving (20 s at a 30 s session timeout). The agent now ends a handshake nobody answers after
1 s (doubled at each cut in a row) and the client connects again, into the same session.

Here a zkwire.WireProxy plays the deaf server for the next connections, with a 60 s session timeout: the client's
own bound would be 40 s, past every wait of this test.
"""

import unittest

from scoutharness import Scout, ZkCase, policy, wait_until
from zkwire import WireProxy

PATH = "/hsk/svc"
SLOW = "/hsk/slow"


class UnansweredHandshake(ZkCase):
    def setUp(self):
        self.scout = None
        self.proxy = WireProxy(self.zk.connect).start()

    def tearDown(self):
        if self.scout:
            self.scout.stop()
        self.proxy.stop()

    def test_an_unanswered_handshake_is_ended_and_tried_again(self):
        self.kz.create("%s/127.0.0.1:100" % PATH, makepath=True)
        s = self.scout = Scout(policy({"svc": 'path = "%s"' % PATH}, session_timeout=60000),
                               self.proxy.connect).start()
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:100"], what="first list")
        reconnects = s.metric("scout_zk_reconnects_total")
        # the connection goes with the next read; the next two connections land on a server that never answers
        self.proxy.deafen(2)
        self.proxy.cut_after(PATH.encode())
        self.kz.create("%s/127.0.0.1:200" % PATH)
        wait_until(lambda: self.proxy.deaf_ended >= 2, what="the agent ended both unanswered handshakes")
        wait_until(lambda: s.metric("scout_zk_reconnects_total") > reconnects, what="the reconnect")
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:100", "127.0.0.1:200"], what="the change read after it")
        self.assertEqual(s.metric("scout_zk_handshakes_cut_total"), 2)
        self.assertEqual(s.state("svc"), "synced")
        # the same session throughout: a handshake cut is a reconnect, not an expiry
        self.assertEqual(s.metric("scout_zk_session_expirations_total"), 0)
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), 1)
        self.assertIn("no answer to the session handshake", s.log())

    def test_a_slow_server_is_still_waited_for(self):
        """The bound doubles at each cut in a row: a server that answers every handshake in 1.5 s (past the first
        bound, within the second) is reached on the second try, not cut forever."""
        self.kz.create("%s/127.0.0.1:100" % SLOW, makepath=True)
        s = self.scout = Scout(policy({"svc": 'path = "%s"' % SLOW}, session_timeout=60000),
                               self.proxy.connect).start()
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:100"], what="first list")
        reconnects = s.metric("scout_zk_reconnects_total")
        self.proxy.slow_handshakes(1.5)
        self.proxy.cut_after(SLOW.encode())
        self.kz.create("%s/127.0.0.1:200" % SLOW)
        wait_until(lambda: s.metric("scout_zk_reconnects_total") > reconnects, what="the reconnect")
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:100", "127.0.0.1:200"], what="the change read after it")
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), 1)


if __name__ == "__main__":
    unittest.main()

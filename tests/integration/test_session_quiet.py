"""An answer from ZooKeeper that asks nothing back costs no question to the client, and the session still pings.

The loop drives the single-threaded client by asking it (zookeeper_interest) for its socket, its interest and its
next deadline after every turn of zookeeper_process. During a sync that was every answer: ~770 instructions of
every loop iteration (the ask, and its timer stopped and started again). The client's answer can only change when
the turn wrote, failed, changed the connection's state, or a request was handed to it since the last ask; a turn
that only read on a connected session leaves it as it was, except that its deadline moves later, so the timer
armed from the last answer still fires in time and asks then (zk/session.c, quiet_turn;
scout_zk_interest_skips_total). Here a service's children change while its re-reads wait for a long delay: each
change is a watch event the agent reads and answers with nothing, so none of them asks the client, and the client,
asked when its timer fires, still sends the session's pings."""

import unittest

from scoutharness import Scout, policy, wait_until
from zkharness import SharedZooKeeper

CHILDREN = 40


class QuietTurns(unittest.TestCase):
    def setUp(self):
        self.zk = SharedZooKeeper().start()
        self.scout = None

    def tearDown(self):
        if self.scout:
            self.scout.stop()
        self.zk.stop()

    def test_events_that_send_nothing_ask_the_client_nothing_and_pings_go_on(self):
        kz = self.zk.client()
        kz.ensure_path("/quiet/svc")
        for k in range(CHILDREN):
            kz.create("/quiet/svc/ep-%02d" % k, b'{"host":"127.0.0.1","port":%d}' % (7000 + k))
        # re-reads wait 10 minutes: a watch event schedules one and sends nothing; no anti-entropy in the window
        svc = 'path = "/quiet/svc", codec = "plain", delay = 600000, protect = false'
        self.scout = s = Scout(policy({"svc": svc}, session_timeout=4000,
                                      extra='agent { anti_entropy = "1h" }'),
                               self.zk.connect, log_level="debug").start()
        wait_until(lambda: s.health()[0] == 200 and len(s.ids("svc")) == CHILDREN, timeout=30, what="synced")
        reconnects = s.metric("scout_zk_reconnects_total")
        events = s.metric("scout_zk_watch_events_total")
        asks = s.metric("scout_zk_interest_asks_total")

        # one data change per child in one transaction: CHILDREN watch events, read back to back
        t = kz.transaction()
        for k in range(CHILDREN):
            t.set_data("/quiet/svc/ep-%02d" % k, b'{"host":"127.0.0.1","port":%d}' % (8000 + k))
        self.assertFalse([r for r in t.commit() if isinstance(r, Exception)])
        wait_until(lambda: s.metric("scout_zk_watch_events_total") >= events + CHILDREN, timeout=30,
                   what="every data watch event read")
        asked = s.metric("scout_zk_interest_asks_total") - asks
        # the client is still asked when its own timer fires (a ping every 1/3 of the 4 s session), so a few asks
        # may fall in the window, never one per event
        self.assertLess(asked, CHILDREN // 2,
                        "%d events that sent nothing asked the client %d times" % (CHILDREN, asked))
        self.assertGreaterEqual(s.metric("scout_zk_interest_skips_total"), CHILDREN)

        # the skipped asks left the client's deadline to its timer: a ping goes out and is answered after the
        # events, on the same connection of the same session
        pings = s.log().count("Got ping response")
        wait_until(lambda: s.log().count("Got ping response") > pings, timeout=30, what="a ping answered after")
        self.assertEqual(s.metric("scout_zk_reconnects_total"), reconnects, "no reconnect")
        self.assertEqual(s.metric("scout_zk_session_expirations_total"), 0)
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), 1)
        # and the changes still wait for their delay, untouched: nothing was read early
        self.assertEqual(sorted(e["port"] for e in s.endpoints("svc")[0]), list(range(7000, 7000 + CHILDREN)))


if __name__ == "__main__":
    unittest.main()

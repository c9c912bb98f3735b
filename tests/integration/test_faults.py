"""Registry faults: ZooKeeper stopped and restarted (serve the last list as stale, then converge), and session
expiry forced by freezing the agent past its session timeout (new session, re-armed watches, exact, still
running)."""

import time
import unittest

from churn import seen, truth
from scoutharness import Scout, policy, wait_until
from zkharness import ZooKeeper


class Faults(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
        self.kz = self.zk.client()
        self.scout = None

    def tearDown(self):
        if self.scout:
            self.scout.stop()
        self.zk.stop()

    def test_zookeeper_down_keeps_last_list_as_stale_then_converges(self):
        self.kz.ensure_path("/f1/svc")
        for p in range(5):
            self.kz.create("/f1/svc/127.0.0.1:%d" % (9000 + p))
        self.scout = s = Scout(policy({"svc": 'path = "/f1/svc"'}), self.zk.connect).start()
        wait_until(lambda: len(s.ids("svc")) == 5, what="initial list")
        before = s.ids("svc")

        # a quiet service: nothing changed for a second before the disconnect, on the agent's clock
        s.wait_clock(1.0, what="a second past the last change")
        down_at = time.monotonic()
        self.zk.stop_node(1)
        wait_until(lambda: s.state("svc") == "stale", what="stale while ZooKeeper is down")
        # staleness counts from the disconnect, not from the last change (which is a second older)
        self.assertLessEqual(s.metric("scout_service_staleness_seconds", "svc"), time.monotonic() - down_at)
        status, body = s.health()
        self.assertEqual(status, 503)
        self.assertIn("session", body["reason"])
        # an outage long enough that the agent gives the session up and starts a new one (an event, not a
        # clock): every answer until then is the last list, never empty, never partial
        stale_at = time.monotonic()
        sessions = s.metric("scout_zk_sessions_created_total")
        polls = []

        def new_session():
            polls.append(s.ids("svc"))
            return s.metric("scout_zk_sessions_created_total") > sessions
        wait_until(new_session, timeout=90, what="a new session started while ZooKeeper is down")
        self.assertEqual([p for p in polls if p != before], [])
        # and staleness kept counting: at least the time since the test saw it stale
        since = time.monotonic() - stale_at
        self.assertGreaterEqual(s.metric("scout_service_staleness_seconds", "svc"), since)

        self.zk.start_node(1)
        kz = self.zk.client()
        kz.delete("/f1/svc/127.0.0.1:9000")
        kz.create("/f1/svc/127.0.0.1:9100")
        wait_until(lambda: s.state("svc") == "synced" and seen(s, "svc") == truth(kz, "/f1/svc"),
                   what="synced and exact after restart")
        self.assertEqual(s.health()[0], 200)

    def test_session_expiry_gets_a_new_session_and_stays_exact(self):
        self.kz.ensure_path("/f2/svc")
        for p in range(5):
            self.kz.create("/f2/svc/127.0.0.1:%d" % (9000 + p))
        self.kz.create("/f2/svc/id-1", b'{"host":"10.0.0.1","port":1,"weight":1}')
        # the harness's server caps sessions at 20 ticks (4 s)
        # the registration's ephemeral node shows when the server expires the frozen agent's session
        self.scout = s = Scout(policy({"svc": 'path = "/f2/svc"'}, session_timeout=2000,
                                      extra='register "r" { path = "/f2/reg", '
                                            'endpoint = { host = "127.0.0.1", port = 9999 } }'),
                               self.zk.connect).start()
        wait_until(lambda: len(s.ids("svc")) == 6, what="initial list")
        wait_until(lambda: self.kz.exists("/f2/reg") and self.kz.get_children("/f2/reg"), what="registered")

        s.pause()
        wait_until(lambda: self.kz.get_children("/f2/reg") == [], timeout=30, what="the session expired")
        self.kz.delete("/f2/svc/127.0.0.1:9000")   # changes the frozen agent cannot see
        self.kz.create("/f2/svc/127.0.0.1:9200")
        self.kz.set("/f2/svc/id-1", b'{"host":"10.0.0.1","port":1,"weight":9}')
        s.resume()

        wait_until(lambda: s.metric("scout_zk_session_expirations_total") >= 1, what="expiry noticed")
        wait_until(lambda: seen(s, "svc") == truth(self.kz, "/f2/svc"), what="exact after expiry")
        self.assertIn("session expired", s.log())
        # watches were re-armed on the new session: later changes still arrive
        self.kz.create("/f2/svc/127.0.0.1:9300")
        self.kz.set("/f2/svc/id-1", b'{"host":"10.0.0.1","port":1,"weight":3}')
        wait_until(lambda: seen(s, "svc") == truth(self.kz, "/f2/svc"), what="exact after re-arm")
        self.assertTrue(s.alive())
        self.assertEqual(s.health()[0], 200)
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), 2)


if __name__ == "__main__":
    unittest.main()

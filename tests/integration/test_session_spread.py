"""Sessions whose sockets turn ready together are served over several loop iterations, not in one.

When ZooKeeper restarts, every session's socket turns ready at once, and each costs the 3.8 client a walk over
every watch of the session (and on reconnect a copy of every path for SetWatches): at 100,000 x 10 that was 52
sessions in one iteration, 0.5-1.75 s of CPU, 21.8 s of wall clock on a loaded host, no session's pings sent until
it ended, and 7 sessions expired. Past 10 ms of an iteration the agent leaves the other ready sockets to the next
one (zk/session.c, on_io; scout_zk_io_deferred_total). Here a session event is made to cost 30 ms by the policy's
on_session hook, which runs inside the client's processing, so that a dropped server shows it at a test size."""

import unittest

from scoutharness import Scout, policy, wait_until
from zkharness import ZooKeeper

SESSIONS = 6
SLOW_HOOK = """
function on_session(state)
  local t = os.clock() + 0.03          -- 30 ms of CPU per session event, inside zookeeper_process
  while os.clock() < t do end
end
"""


class SessionsSpread(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
        self.scout = None

    def tearDown(self):
        if self.scout:
            self.scout.stop()
        self.zk.stop()

    def test_sockets_ready_together_are_served_over_iterations(self):
        kz = self.zk.client()
        services = {}
        for k in range(SESSIONS * 2):
            kz.ensure_path("/spread/svc-%02d/ep" % k)
            services["svc-%02d" % k] = 'path = "/spread/svc-%02d", protect = false' % k
        self.scout = s = Scout(policy(services, session_timeout=10000, extra=SLOW_HOOK,
                                      zookeeper="sessions = %d" % SESSIONS), self.zk.connect).start()
        wait_until(lambda: s.health()[0] == 200, timeout=30, what="every session connected")
        reconnects = s.metric("scout_zk_reconnects_total")
        created = s.metric("scout_zk_sessions_created_total")
        deferred = s.metric("scout_zk_io_deferred_total")      # the sessions' first connects count too

        # the server closes every connection at once: six sockets ready, 30 ms each
        self.zk.stop_node(1)
        wait_until(lambda: s.log().count("connection lost") >= SESSIONS, timeout=30, what="every connection lost")
        self.assertGreater(s.metric("scout_zk_io_deferred_total"), deferred,
                           "some sockets were left to a later iteration")

        # and every session comes back within itself: nothing lost by waiting an iteration
        self.zk.start_node(1)
        wait_until(lambda: s.health()[0] == 200, timeout=60, what="healthy again")
        wait_until(lambda: s.metric("scout_zk_reconnects_total") >= reconnects + SESSIONS, timeout=30,
                   what="every session reconnected")
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), created, "no session expired")
        self.assertEqual(s.metric("scout_zk_session_expirations_total"), 0)


if __name__ == "__main__":
    unittest.main()

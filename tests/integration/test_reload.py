"""SIGHUP reloads the policy without dropping the session: watched services and registrations are applied as a
difference (a kept service is judged again by its new filter, a dropped one disappears, a new one is read; a
dropped registration is deleted, a new one created), and a policy that fails to load is refused with its
file:line while the old one keeps running."""

import signal
import unittest

from scoutharness import Scout, wait_until
from zkharness import SharedZooKeeper

V1 = '''zookeeper { servers = "127.0.0.1:1", session_timeout = 4000 }
service "a" { path = "/rl/a" }
service "b" { path = "/rl/b" }
register "r1" { path = "/rl/reg", codec = "rpcx", endpoint = { host = "127.0.0.1", port = 9101, weight = 2 } }
'''

V2 = '''zookeeper { servers = "127.0.0.1:1", session_timeout = 4000 }
service "a" { path = "/rl/a", filter = function(ep) return ep.port ~= 1 end }
service "c" { path = "/rl/c" }
register "r2" { path = "/rl/reg", codec = "rpcx", endpoint = { host = "127.0.0.1", port = 9102, weight = 3 } }
'''

BROKEN = V2 + 'service "d" {\n  path = "/rl/d"\n  codec = "plain"\n}\n'


class Reload(unittest.TestCase):
    def setUp(self):
        self.zk = SharedZooKeeper().start()     # an empty tree on the pass's one server (zkharness)
        kz = self.kz = self.zk.client()
        for svc, ports in (("a", (1, 2)), ("b", (3,)), ("c", (4, 5))):
            for p in ports:
                kz.create("/rl/%s/127.0.0.1:%d" % (svc, p), makepath=True)
        self.scout = Scout(V1, self.zk.connect).start()

    def tearDown(self):
        self.scout.stop()
        self.zk.stop()

    def rewrite(self, text):
        with open(self.scout.policy_file, "w") as f:
            f.write(text)
        self.scout.proc.send_signal(signal.SIGHUP)

    def test_a_reload_applies_a_new_log_level(self):
        self.scout.stop()
        s = self.scout = Scout(V1, self.zk.connect, log_level=None).start()     # no --log-level to win over it
        wait_until(lambda: s.ids("b") == ["127.0.0.1:3"], what="v1 synced")
        self.assertNotIn(" DEBUG ", s.log())
        self.rewrite(V1 + 'agent { log_level = "debug" }\n')
        wait_until(lambda: "reloaded" in s.log(), what="reloaded")
        self.kz.create("/rl/b/127.0.0.1:6")
        wait_until(lambda: s.ids("b") == ["127.0.0.1:3", "127.0.0.1:6"], what="the change")
        wait_until(lambda: " DEBUG " in s.log(), what="debug lines after the reload")

    def test_sighup_applies_the_difference_on_the_same_session(self):
        s = self.scout
        wait_until(lambda: s.ids("a") == ["127.0.0.1:1", "127.0.0.1:2"] and s.ids("b") == ["127.0.0.1:3"],
                   what="v1 synced")
        wait_until(lambda: self.kz.get_children("/rl/reg") == ["tcp@127.0.0.1:9101"], what="r1 registered")
        reads = s.metric("scout_zk_requests_total{op=\"children\"}")

        self.rewrite(V2)
        wait_until(lambda: set(s.services()) == {"a", "c"}, what="b dropped, c added")
        wait_until(lambda: s.ids("a") == ["127.0.0.1:2"], what="a judged by its new filter")
        wait_until(lambda: s.ids("c") == ["127.0.0.1:4", "127.0.0.1:5"], what="c read")
        wait_until(lambda: self.kz.get_children("/rl/reg") == ["tcp@127.0.0.1:9102"],
                   what="r1 deleted, r2 registered")
        self.assertEqual(self.kz.get("/rl/reg/tcp@127.0.0.1:9102")[0], b"weight=3")
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), 1)      # the same session
        self.assertEqual(s.log().count("established session"), 1)
        # only the new service was read; the kept one reused its cache (anti-entropy aside)
        self.assertLessEqual(s.metric("scout_zk_requests_total{op=\"children\"}") - reads, 2)
        self.assertEqual(s.request("/v1/services/b")[0], 404)

        # the kept service still follows ZooKeeper
        self.kz.create("/rl/a/127.0.0.1:6")
        wait_until(lambda: s.ids("a") == ["127.0.0.1:2", "127.0.0.1:6"], what="a still watched")

    def test_a_broken_policy_is_refused_and_the_old_one_stays(self):
        s = self.scout
        wait_until(lambda: s.ids("a") == ["127.0.0.1:1", "127.0.0.1:2"] and s.ids("b") == ["127.0.0.1:3"],
                   what="v1 synced")
        self.rewrite(BROKEN)
        wait_until(lambda: "reload refused" in s.log(), what="refusal logged")
        self.assertRegex(s.log(), r"policy\.lua:\d+: '}' expected")
        # the refusal is logged once the reload is over: what runs now is what stays
        self.assertEqual(set(s.services()), {"a", "b"})
        self.assertEqual(s.ids("a"), ["127.0.0.1:1", "127.0.0.1:2"])
        self.assertEqual(self.kz.get_children("/rl/reg"), ["tcp@127.0.0.1:9101"])
        self.kz.create("/rl/b/127.0.0.1:7")
        wait_until(lambda: s.ids("b") == ["127.0.0.1:3", "127.0.0.1:7"], what="the old policy still running")

    def test_a_reload_that_changes_a_later_service_keeps_the_agent_up(self):
        # a regression: rebinding a kept service published while the service list still had holes
        s = self.scout
        self.kz.create("/rl/b/127.0.0.1:8")
        wait_until(lambda: s.ids("a") == ["127.0.0.1:1", "127.0.0.1:2"]
                   and s.ids("b") == ["127.0.0.1:3", "127.0.0.1:8"], what="v1 synced")
        # past the once-a-second bookkeeping that walks every service (agent.c, on_publish): the reload's
        # publish of "b" walks the list while it is rebuilt
        s.wait_clock(1.0, what="a second past v1's last publish, on the agent's clock")
        self.rewrite(V1.replace('service "b" { path = "/rl/b" }',
                                'service "b" { path = "/rl/b", filter = function(ep) return ep.port ~= 3 end }'))
        wait_until(lambda: s.ids("b") == ["127.0.0.1:8"], what="b judged by its new filter (and published)")
        self.assertTrue(s.alive())
        self.assertEqual(s.ids("a"), ["127.0.0.1:1", "127.0.0.1:2"])


if __name__ == "__main__":
    unittest.main()

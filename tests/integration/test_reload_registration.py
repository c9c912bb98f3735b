"""A reload whose registration cannot be built is refused as a whole: the running registration keeps its node (the
same node, the same session: consumers see no churn) and the old policy keeps serving. What reloads drop on a
stable session is freed once ZooKeeper has answered for it: watches do not pile up. Real ZooKeeper, kazoo; run it
under the ASan build (SCOUT_BIN=build-asan/scout) to check the lifetimes too."""

import signal
import unittest

from scoutharness import Scout, wait_until
from zkharness import SharedZooKeeper

HEAD = 'zookeeper { servers = "127.0.0.1:1", session_timeout = 4000 }\nservice "a" { path = "/rr/a" }\n'
GOOD = HEAD + ('register "r" { path = "/rr/reg", codec = "rpcx",\n'
               '  endpoint = function() return { host = "127.0.0.1", port = 9201, weight = 2 } end }\n')
RAISES = HEAD + ('register "r" { path = "/rr/reg", codec = "rpcx",\n'
                 '  endpoint = function() error("inventory service unreachable") end }\n')


class ReloadRegistration(unittest.TestCase):
    def setUp(self):
        self.zk = SharedZooKeeper().start()     # an empty tree on the pass's one server (zkharness)
        self.kz = self.zk.client()
        self.kz.create("/rr/a/127.0.0.1:1", makepath=True)
        self.scout = Scout(GOOD, self.zk.connect).start()

    def tearDown(self):
        self.scout.stop()
        self.zk.stop()

    def reg_kids(self):
        return self.kz.get_children("/rr/reg") if self.kz.exists("/rr/reg") else []

    def test_a_reload_whose_endpoint_function_raises_keeps_the_registration(self):
        s = self.scout
        wait_until(lambda: self.reg_kids() == ["tcp@127.0.0.1:9201"], what="registered")
        wait_until(lambda: s.ids("a") == ["127.0.0.1:1"], what="a synced")
        before = self.kz.get("/rr/reg/tcp@127.0.0.1:9201")[1]

        with open(s.policy_file, "w") as f:
            f.write(RAISES)
        s.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in s.log() or "reloaded" in s.log(), what="the reload's verdict")
        self.assertIn("reload refused", s.log())
        self.assertIn("inventory service unreachable", s.log())
        # a change the agent reads after the reload: whatever the reload sent ZooKeeper was applied before it
        self.kz.create("/rr/a/127.0.0.1:2")
        wait_until(lambda: s.ids("a") == ["127.0.0.1:1", "127.0.0.1:2"], what="the old policy still serving")
        self.assertEqual(self.reg_kids(), ["tcp@127.0.0.1:9201"])
        after = self.kz.get("/rr/reg/tcp@127.0.0.1:9201")[1]
        self.assertEqual((after.czxid, after.ephemeralOwner), (before.czxid, before.ephemeralOwner))
        self.assertNotIn("removed", s.log())

        # and the old policy's registration is still driven: a later good reload still applies
        with open(s.policy_file, "w") as f:
            f.write(GOOD.replace("weight = 2", "weight = 5"))
        s.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.kz.get("/rr/reg/tcp@127.0.0.1:9201")[0] == b"weight=5", what="rewritten in place")
        self.assertEqual(self.kz.get("/rr/reg/tcp@127.0.0.1:9201")[1].czxid, before.czxid)

    def test_reloads_on_a_stable_session_free_what_they_drop(self):
        s = self.scout
        wait_until(lambda: self.reg_kids() == ["tcp@127.0.0.1:9201"], what="registered")
        for p in range(3):
            self.kz.create("/rr/b/127.0.0.1:%d" % (10 + p), makepath=True)
        # each flip drops the only service on purpose: say so, or the reload guard refuses it
        shrink = 'agent { reload_max_drop = 1 }\n'
        flip = [HEAD.replace('service "a"', 'service "b"').replace("/rr/a", "/rr/b")
                + GOOD.replace(HEAD, "").replace('"r"', '"rb"').replace("9201", "9202") + shrink, GOOD + shrink]
        n = 12
        for k in range(n):                       # each reload drops a service and a registration, adds the others
            with open(s.policy_file, "w") as f:
                f.write(flip[k % 2])
            s.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: s.log().count("reloaded") == k + 1, what="reload %d" % (k + 1))
        wait_until(lambda: s.ids("a") == ["127.0.0.1:1"], what="the last policy's service read")
        wait_until(lambda: self.reg_kids() == ["tcp@127.0.0.1:9201"],
                   what="only the last policy's registration left")
        self.assertEqual(s.metric("scout_zk_watches_retired_total"), n)
        wait_until(lambda: s.metric("scout_zk_watches_released_total") == n,
                   what="every dropped watch freed on the same session")
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), 1)
        self.assertEqual(s.stop(), 0)            # under ASan: no use after free, no leak


if __name__ == "__main__":
    unittest.main()

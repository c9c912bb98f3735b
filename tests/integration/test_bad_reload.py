"""Reloads that cannot empty the agent (issue 11, item 3): a SIGHUP that lands on an empty or truncated policy file
(a config push that truncates, then writes) would drop every service. A reload that drops more than
agent.reload_max_drop (0.5 by default, read from the new policy) of the running services, or that defines nothing
at all, is refused with a clear log line, and the running policy stays; a policy that says reload_max_drop = 1
drops them."""

import signal
import unittest

from scoutharness import Scout, wait_until
from zkharness import SharedZooKeeper

HEAD = 'zookeeper { servers = "127.0.0.1:1", session_timeout = 4000 }\n'
SERVICES = ''.join('service "%s" { path = "/br/%s" }\n' % (n, n) for n in ("a", "b", "c"))


class BadReload(unittest.TestCase):
    def setUp(self):
        self.zk = SharedZooKeeper().start()     # an empty tree on the pass's one server (zkharness)
        self.kz = self.zk.client()
        for n in ("a", "b", "c"):
            self.kz.create("/br/%s/127.0.0.1:1" % n, makepath=True)
        self.scout = Scout(HEAD + SERVICES, self.zk.connect).start()
        wait_until(lambda: all(self.scout.ids(n) == ["127.0.0.1:1"] for n in ("a", "b", "c")), what="synced")

    def tearDown(self):
        self.scout.stop()
        self.zk.stop()

    def reload(self, text):
        with open(self.scout.policy_file, "w") as f:
            f.write(text)
        before = self.scout.log().count("SIGHUP: reloading")
        self.scout.proc.send_signal(signal.SIGHUP)
        # the outcome line follows the "reloading" line
        wait_until(lambda: self.scout.log().count("SIGHUP: reloading") > before
                   and ("reload refused" in self.scout.log().split("SIGHUP: reloading")[-1]
                        or "reloaded" in self.scout.log().split("SIGHUP: reloading")[-1]),
                   what="the reload's outcome")
        return self.scout.log().split("SIGHUP: reloading")[-1]

    def assert_all_served(self):
        s = self.scout
        self.assertEqual(set(s.services()), {"a", "b", "c"})
        for n in ("a", "b", "c"):
            self.assertEqual(s.ids(n), ["127.0.0.1:1"])

    def test_an_empty_policy_is_refused_and_the_running_one_stays(self):
        out = self.reload("")
        self.assertIn("reload refused", out)
        self.assertIn("defines no service and no registration (empty or truncated?) and would drop 3 services", out)
        self.assert_all_served()
        # the running policy still works: a change in ZooKeeper is published
        self.kz.create("/br/a/127.0.0.1:2")
        wait_until(lambda: self.scout.ids("a") == ["127.0.0.1:1", "127.0.0.1:2"], what="still watching")

    def test_a_truncated_policy_that_drops_most_services_is_refused(self):
        out = self.reload(HEAD + SERVICES.splitlines()[0] + "\n")        # only a survived the push
        self.assertIn("reload refused", out)
        self.assertIn("would drop 2 of 3 services", out)
        self.assert_all_served()

    def test_a_small_drop_is_applied(self):
        out = self.reload(HEAD + "".join(SERVICES.splitlines(True)[:2]))  # c goes: 1 of 3
        self.assertIn("reloaded", out)
        wait_until(lambda: set(self.scout.services()) == {"a", "b"}, what="c dropped")

    def test_the_new_policy_may_allow_a_large_drop(self):
        out = self.reload(HEAD + 'agent { reload_max_drop = 1 }\n')
        self.assertIn("reloaded", out)
        wait_until(lambda: self.scout.services() == {}, what="every service dropped on purpose")


if __name__ == "__main__":
    unittest.main()

"""Every session's re-sent watches fit: the services' child-list watches size the number of sessions.

A child's data watch can move to another session (zk/spread.c), a service's child-list watch cannot: it lives on
the session the service was dealt to. So when the child lists alone would pass half the watch budget per session
(long paths, many services, a lowered budget), the default number of sessions grows to fit, with a log line; a
policy that sets `sessions` too low is told so by `scout check`, with file:line and the number needed."""

import os
import subprocess
import tempfile
import unittest

from scoutharness import SCOUT_BIN, Scout, policy, wait_until
from zkharness import SharedZooKeeper

BUDGET = 4096
SERVICES = 40


def path(k):
    return "/sized/%s/svc-%02d" % ("p" * 180, k)        # ~200 bytes of child-list watch per service


def list_bytes():
    return sum(4 + len(path(k)) for k in range(SERVICES))   # ~8 KB: twice the budget, four times its half


class ChildListsSizeTheSessions(unittest.TestCase):
    def setUp(self):
        self.zk = SharedZooKeeper().start()
        self.scout = None

    def tearDown(self):
        if self.scout:
            self.scout.stop()
        self.zk.stop()

    def test_default_sessions_grow_to_fit_the_child_lists(self):
        kz = self.zk.client()
        for k in range(SERVICES):
            kz.create(path(k) + "/127.0.0.1:%d" % (1000 + k), makepath=True)   # no data: a list watch only
        services = {"svc%02d" % k: 'path = "%s", codec = "plain"' % path(k) for k in range(SERVICES)}
        self.scout = s = Scout(policy(services, zookeeper="watch_budget = %d" % BUDGET), self.zk.connect).start()
        wait_until(lambda: all(v["state"] == "synced" and v["endpoints"] == 1 for v in s.services().values()),
                   what="every service synced")
        m = s.metrics()
        per_session = {k: v for k, v in m.items() if k.startswith("scout_session_watch_bytes{")}
        self.assertGreater(list_bytes(), BUDGET, "the child lists alone pass one session's budget")
        self.assertEqual(sum(per_session.values()), list_bytes(), "every list watch counted once")
        self.assertGreaterEqual(len(per_session), -(-2 * list_bytes() // BUDGET))
        self.assertLessEqual(max(per_session.values()), BUDGET // 2, "each session's lists under half the budget")
        self.assertEqual(m["scout_zk_sessions_created_total"], len(per_session), "no pool session was needed")
        self.assertIn("sessions instead of 1: the child-list watches of %d services" % SERVICES, s.log())
        wait_until(lambda: s.health()[0] == 200, what="healthy")


class CheckNamesTooFewSessions(unittest.TestCase):
    def check(self, zookeeper):
        text = "zookeeper {\n  servers = \"127.0.0.1:2181\",\n  watch_budget = %d,\n%s}\n" % (BUDGET, zookeeper)
        text += "".join('service "svc%02d" { path = "%s" }\n' % (k, path(k)) for k in range(SERVICES))
        fd, name = tempfile.mkstemp(suffix=".lua")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            p = subprocess.run([SCOUT_BIN, "check", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, timeout=30)
            return p.returncode, (p.stdout + p.stderr).replace(name, "policy.lua")
        finally:
            os.unlink(name)

    def test_sessions_set_too_low_is_named_with_the_number_needed(self):
        rc, out = self.check("  sessions = 2,\n")
        self.assertEqual(rc, 0, out)
        self.assertIn("policy.lua:4: zookeeper: sessions = 2 is too few: the child-list watches of %d services need "
                      "4 sessions" % SERVICES, out)
        self.assertIn("set sessions = 4", out)
        self.assertIn("ok (%d services, 1 warning)" % SERVICES, out)

    def test_enough_sessions_or_the_default_say_nothing(self):
        for zookeeper in ("  sessions = 4,\n", ""):
            rc, out = self.check(zookeeper)
            self.assertEqual((rc, out.strip()), (0, "policy.lua: ok (%d services)" % SERVICES))


class CheckNamesHookBudgetPastTheSession(unittest.TestCase):
    """A hook budget whose wall-clock bound (4 x budget + 1 s) passes 2/3 of the session timeout is named where it is
    written: one waiting hook would lose the connection (a sandbox test's 1 s budget under a 4 s session did)."""

    def check(self, text):
        fd, name = tempfile.mkstemp(suffix=".lua")
        with os.fdopen(fd, "w") as f:
            f.write(text + 'service "svc" { path = "/svc" }\n')
        try:
            p = subprocess.run([SCOUT_BIN, "check", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, timeout=30)
            return p.returncode, (p.stdout + p.stderr).replace(name, "policy.lua")
        finally:
            os.unlink(name)

    def test_a_budget_past_the_session_is_named_where_it_is_written(self):
        rc, out = self.check('zookeeper { servers = "127.0.0.1:2181", session_timeout = "4s" }\n'
                             'agent {\n  log_level = "info",\n  hook_budget = "1s",\n}\n')
        self.assertEqual(rc, 0, out)
        self.assertIn("policy.lua:4: agent: hook_budget = 1000 ms lets a hook that waits hold the loop 5000 ms "
                      "(4 x budget + 1 s), past 2/3 of the 4000 ms session timeout", out)
        self.assertIn("raise session_timeout above 7500 ms", out)
        self.assertIn("ok (1 services, 1 warning)", out)

    def test_a_budget_within_the_session_says_nothing(self):
        for text in ('zookeeper { servers = "127.0.0.1:2181", session_timeout = "8s" }\nagent { hook_budget = "1s" }\n',
                     'zookeeper { servers = "127.0.0.1:2181" }\n'):
            rc, out = self.check(text)
            self.assertEqual((rc, out.strip()), (0, "policy.lua: ok (1 services)"))


if __name__ == "__main__":
    unittest.main()

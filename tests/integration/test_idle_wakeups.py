"""What a change costs an agent that is otherwise idle: nothing of the change's may wake it again once the change is
served. Each wakeup of the loop's thread is a context switch, which on a small host costs more than the work of a
one-endpoint change (bench/propagation); a quiet registry changes rarely, so a wakeup left behind by every change is
paid in full each time.

- The hook budget's timer: every call into Lua runs under a budget enforced by a POSIX timer (SIGALRM). Left armed
  after the call, it fired once per change, 50 ms later, into an agent waiting for nothing: one more wakeup per
  change than the change itself. The loop now disarms it before it waits (agent/policy/hook.c), so a budget timer
  only ever fires while a call is running.

Ordering, not timing: each check waits for the end of a blocking query the agent itself times (its own libev timer,
started after the change's hook call returned and far past that call's budget), so the budget timer, due earlier on
the same clock, has fired by then if it was left armed; scout_hook_alarms_total counts its signals."""

import json
import unittest

from scoutharness import Scout, wait_until
from zkharness import ZooKeeper

POLICY = '''zookeeper { servers = "127.0.0.1:1", session_timeout = 10000 }
agent { hook_budget = 20 }
service "svc" {
  path = "/idle/svc",
  delay = 0,
  on_change = function(svc, diff) end,
}
'''


class IdleWakeups(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = ZooKeeper().start()
        cls.kz = cls.zk.client()
        cls.kz.ensure_path("/idle/svc")
        cls.kz.create("/idle/svc/127.0.0.1:1")
        cls.scout = Scout(POLICY, cls.zk.connect).start()
        wait_until(lambda: cls.scout.ids("svc") == ["127.0.0.1:1"], what="initial list")

    @classmethod
    def tearDownClass(cls):
        cls.scout.stop()
        cls.zk.stop()

    def index(self):
        return int(self.scout.endpoints("svc")[1]["X-Scout-Index"])

    def quiet_wait(self, index):
        """A blocking query on an index that does not move: the agent answers it when its own wait (libev timer,
        500 ms, 25 budgets) ends."""
        status, headers, body = self.scout.request("/v1/services/svc?index=%d&wait=500ms" % index)
        self.assertEqual(status, 200)
        self.assertEqual(int(headers["X-Scout-Index"]), index)   # nothing moved: the wait ended it
        return json.loads(body)

    def test_hook_budget_timer_never_wakes_an_idle_agent(self):
        s = self.scout
        self.quiet_wait(self.index())            # whatever the start left armed has fired by now
        alarms, calls = s.metric("scout_hook_alarms_total"), s.metric("scout_hook_calls_total")
        for port in (2, 3, 4):
            before = self.index()
            self.kz.create("/idle/svc/127.0.0.1:%d" % port)
            wait_until(lambda: self.index() > before, what="change %d published" % port)
            eps = self.quiet_wait(self.index())
            self.assertIn("127.0.0.1:%d" % port, [ep["id"] for ep in eps])
        self.assertGreater(s.metric("scout_hook_calls_total"), calls)   # the changes did run Lua
        # no call ran past its budget, so no signal was due: none came
        self.assertEqual(s.metric("scout_hook_alarms_total"), alarms)


if __name__ == "__main__":
    unittest.main()

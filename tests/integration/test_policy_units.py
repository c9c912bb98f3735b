"""One rule for units in a policy, as an operator meets it: every duration key takes "500ms", "10s", "2m", "1h",
"1d" or a bare number of milliseconds; `scout check` accepts each of them and refuses a bad one at its file:line.
cache.max_age, which used to be seconds, is now milliseconds too: a bare number still loads, with a warning that
`scout check` prints and the agent logs (at start and on reload), and the agent really uses it as milliseconds.
The HTTP API's ?wait= keeps Consul's convention (seconds) and is not a policy key."""

import os
import shutil
import signal
import subprocess
import tempfile
import unittest

from scoutharness import SCOUT_BIN, Scout, policy, wait_until
from zkharness import ZooKeeper

# Every key that is a duration, where it lives, and a policy that sets it to {v}. A service needs a path and a
# register needs an endpoint; nothing else is set, so a refusal can only be about the key under test.
DURATION_KEYS = {
    "zookeeper.session_timeout": 'zookeeper {{ session_timeout = {v} }}',
    "agent.hook_budget": 'agent {{ hook_budget = {v} }}',
    "agent.anti_entropy": 'agent {{ anti_entropy = {v} }}',
    "agent.drain": 'agent {{ drain = {v} }}',
    "cache.max_age": 'cache {{ dir = "/tmp/scout-units", max_age = {v} }}',
    "service.delay": 'service "s" {{ path = "/s", delay = {v} }}',
    "service.protect.hold": 'service "s" {{ path = "/s", protect = {{ hold = {v} }} }}',
    "service.protect.confirm_interval": 'service "s" {{ path = "/s", protect = {{ confirm_interval = {v} }} }}',
    "register.check.interval":
        'register "r" {{ path = "/r", endpoint = {{ host = "h", port = 1 }}, check = {{ tcp = "h:1", interval = {v} }} }}',
    "register.check.timeout":
        'register "r" {{ path = "/r", endpoint = {{ host = "h", port = 1 }}, check = {{ tcp = "h:1", timeout = {v} }} }}',
    "render.wait.min": 'render {{ template = function() return "" end, dest = "/tmp/scout-units", wait = {{ min = {v} }} }}',
    "render.wait.max": 'render {{ template = function() return "" end, dest = "/tmp/scout-units", wait = {{ max = {v} }} }}',
}
# hook_budget, session_timeout and check timeouts cannot be 0; every key takes these
GOOD = ['"500ms"', '"10s"', '"2m"', '"1h"', '"1d"', '"1.5s"', "250"]
BAD = ['"10 s"', '"5w"', '"soon"', '"-1s"', "-1", "1.5"]   # and past a day, for all but cache.max_age


def scout(*args):
    p = subprocess.run([SCOUT_BIN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


class Check(unittest.TestCase):
    def check_text(self, text):
        fd, path = tempfile.mkstemp(suffix=".lua")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            rc, out, err = scout("check", path)
            return rc, out.replace(path, "policy.lua"), err.replace(path, "policy.lua")
        finally:
            os.unlink(path)

    def test_every_duration_key_takes_every_unit_and_a_bare_number(self):
        for key, block in DURATION_KEYS.items():
            for v in GOOD:
                with self.subTest(key=key, value=v):
                    rc, out, err = self.check_text("-- units\n" + block.format(v=v) + "\n")
                    self.assertEqual(rc, 0, err)
                    self.assertRegex(out, r"^policy\.lua: ok \(\d+ services(, 1 warning)?\)\n$")
                    if key in ("agent.hook_budget", "zookeeper.session_timeout"):
                        # a long budget or a short session may pass the session's reach: said, whatever the unit
                        self.assertRegex(err, r"^(policy(\.lua:\d+)?: agent: hook_budget = \d+ ms lets a hook that "
                                              r"waits hold the loop \d+ ms .*\n)?$")
                    elif key != "cache.max_age" or v != "250":
                        self.assertEqual(err, "")

    def test_every_duration_key_refuses_a_bad_duration_at_its_line(self):
        for key, block in DURATION_KEYS.items():
            for v in BAD + ([] if key == "cache.max_age" else ['"25h"']):
                with self.subTest(key=key, value=v):
                    rc, out, err = self.check_text("-- units\n\n" + block.format(v=v) + "\n")
                    self.assertEqual(rc, 1, out)
                    name = key.split(".")[-1]
                    self.assertRegex(err, r"^policy\.lua:3: .*%s.*must be a duration \(\"500ms\", \"10s\", \"1h\"; "
                                          r"a number is milliseconds\)" % name)

    def test_a_bare_max_age_loads_with_a_warning_at_its_line(self):
        rc, out, err = self.check_text('service "a" { path = "/a" }\n\ncache { dir = "/tmp/x", max_age = 86400 }\n')
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "policy.lua: ok (1 services, 1 warning)\n")
        self.assertEqual(err, 'policy.lua:3: cache.max_age = 86400 is milliseconds (86.4 s) since 0.2; '
                              'write "1d" if you meant 86400 seconds\n')
        rc, out, err = self.check_text('cache { dir = "/tmp/x", max_age = "24h" }\n')
        self.assertEqual((rc, out, err), (0, "policy.lua: ok (0 services)\n", ""))


class Agent(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
        self.kz = self.zk.client()
        self.cache = tempfile.mkdtemp(prefix="scout-units-")
        self.scouts = []

    def tearDown(self):
        for s in self.scouts:
            s.stop()
        self.zk.stop()
        shutil.rmtree(self.cache, ignore_errors=True)

    def agent(self, max_age, extra=""):
        s = Scout(policy({"svc": 'path = "/units/svc", delay = "0ms"'}, session_timeout=4000,
                         extra='cache { dir = "%s", max_age = %s }\nagent { hook_budget = "50ms", drain = "0s", '
                               'anti_entropy = "1m" }\n%s' % (self.cache, max_age, extra)),
                  self.zk.connect)
        self.scouts.append(s)
        return s

    def test_durations_as_strings_run_an_agent(self):
        self.kz.ensure_path("/units/svc")
        self.kz.create("/units/svc/127.0.0.1:8000")
        s = self.agent('"24h"').start()
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:8000"], what="synced")
        self.kz.create("/units/svc/127.0.0.1:8001")     # delay = "0ms": read at once
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:8000", "127.0.0.1:8001"], what="the second endpoint")
        self.assertNotIn("max_age", s.log())

    def test_session_timeout_and_hook_budget_as_strings_reach_the_agent(self):
        # 7 s is what ZooKeeper is asked for (the test's server allows 0.4 s to 60 s): `cons` shows it per
        # connection. The filter burns 200 ms of CPU: within a "1s" budget it ends and the endpoint is published;
        # under the 50 ms default it would be stopped every time.
        self.kz.ensure_path("/units/slow")
        self.kz.create("/units/slow/127.0.0.1:8000")
        s = Scout('zookeeper { servers = "127.0.0.1:1", session_timeout = "7s" }\n'
                  'agent { hook_budget = "1s" }\n'
                  'service "slow" {\n  path = "/units/slow",\n'
                  '  filter = function() local t = os.clock() while os.clock() - t < 0.2 do end return true end,\n'
                  '}\n', self.zk.connect)
        self.scouts.append(s)
        s.start()
        wait_until(lambda: s.ids("slow") == ["127.0.0.1:8000"], what="published through the slow filter")
        wait_until(lambda: "to=7000," in self.zk.four("cons"), what="a session with a 7000 ms timeout")

    def test_a_bare_max_age_is_milliseconds_and_the_agent_says_so(self):
        self.kz.ensure_path("/units/svc")
        self.kz.create("/units/svc/127.0.0.1:8000")
        first = self.agent("1500").start()
        wait_until(lambda: first.ids("svc") == ["127.0.0.1:8000"], what="first agent synced")
        self.assertEqual(first.stop(), 0)               # writes the snapshot on the way out
        warning = ("cache.max_age = 1500 is milliseconds (1.5 s) since 0.2; "
                   'write "25m" if you meant 1500 seconds')
        self.assertIn(warning, first.log())

        self.zk.stop_node(1)
        second = self.agent("1500").start()             # serves the snapshot alone: ZooKeeper is down
        self.assertEqual(second.state("svc"), "stale")
        # 1500 ms, not 1500 s: health soon names the snapshot as too old
        status, body = wait_until(lambda: (lambda h: h if "max_age" in h[1].get("reason", "") else None)(
            second.health()), what="health names the snapshot past max_age")
        self.assertEqual(status, 503)
        self.assertIn("(max_age 1.5 s)", body["reason"])
        self.assertEqual(second.log().count(warning), 1)
        second.proc.send_signal(signal.SIGHUP)          # a reload says it again
        wait_until(lambda: second.log().count(warning) == 2, what="the warning logged again on reload")
        self.zk.start_node(1)


if __name__ == "__main__":
    unittest.main()

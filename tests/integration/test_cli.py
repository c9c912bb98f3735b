"""The command line as a user meets it: `scout check` on good and bad policies (exit 1 with file:line), version,
help and usage errors. No ZooKeeper is needed: check never connects."""

import os
import subprocess
import tempfile
import unittest

from scoutharness import SCOUT_BIN, ROOT


def scout(*args, env=None):
    p = subprocess.run([SCOUT_BIN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=30,
                       env=dict(os.environ, **env) if env else None)
    return p.returncode, p.stdout + p.stderr


class Check(unittest.TestCase):
    def check_text(self, text, env=None):
        fd, path = tempfile.mkstemp(suffix=".lua")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            rc, out = scout("check", path, env=env)
            return rc, out.replace(path, "policy.lua")
        finally:
            os.unlink(path)

    def test_good_policy_and_the_examples(self):
        rc, out = self.check_text('service "a" { path = "/a" }\n')
        self.assertEqual((rc, out.strip()), (0, "policy.lua: ok (1 services)"))
        rc, out = scout("check", os.path.join(ROOT, "examples", "demo", "policy.lua"))
        self.assertEqual(rc, 0, out)

    def test_a_top_level_that_never_ends_is_stopped_by_the_load_budget_it_names(self):
        # a big policy on a busy host is honest work: the operator is told which budget ran out and what sets it
        looping = 'zookeeper { servers = "h:1" }\nlocal n = 0\nwhile true do n = n + 1 end\n'
        rc, out = self.check_text(looping, env={"SCOUT_LOAD_BUDGET": "200ms"})
        self.assertEqual(rc, 1, out)
        self.assertIn("policy.lua:3: exceeded its 200 ms budget", out)
        # CPU is what stops a runaway top level; at start the wall clock is bounded only at 12x (a busy host)
        self.assertIn("200 ms of CPU and 2400 ms of wall-clock time", out)
        self.assertIn("SCOUT_LOAD_BUDGET", out)
        rc, out = self.check_text('service "a" { path = "/a" }\n', env={"SCOUT_LOAD_BUDGET": "soon"})
        self.assertEqual(rc, 1, out)
        self.assertIn('SCOUT_LOAD_BUDGET=soon: want a duration', out)
        rc, out = self.check_text('service "a" { path = "/a" }\n', env={"SCOUT_LOAD_BUDGET": "2s"})
        self.assertEqual((rc, out.strip()), (0, "policy.lua: ok (1 services)"))

    def test_syntax_error(self):
        rc, out = self.check_text('service "a" {\n  path = "/a"\n  codec = "plain"\n}\n')
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"^policy\.lua:3: '}' expected \(to close '\{' at line 1\) near 'codec'")

    def test_unknown_key(self):
        rc, out = self.check_text('zookeeper { servers = "h:1" }\n\nservice "a" {\n  pth = "/a",\n}\n')
        self.assertEqual(rc, 1)
        # at the key's own line, with the key it is a typo of
        self.assertRegex(out, r'^policy\.lua:4: service "a": unknown key "pth" \(did you mean "path"\?')

    def test_wrong_types(self):
        cases = [
            ('service "a" { path = "/a", delay = "soon" }', r'policy\.lua:1: service "a": delay must be'),
            ('service "a" { path = "a" }', r'policy\.lua:1: service "a": path must be an absolute'),
            ('service "a" { path = "/a", codec = "nope" }', r'policy\.lua:1: service "a": codec: unknown codec'),
            ('\nzookeeper { session_timeout = -1 }', r'policy\.lua:2: zookeeper: session_timeout must be'),
            ('api { listen = 8500 }', r'policy\.lua:1: api: listen must be'),
            ('service "a" { path = "/a", filter = true }', r'policy\.lua:1: service "a": filter must be a function'),
            ('service "a" { path = "/a" }\nservice "a" { path = "/b" }', r'policy\.lua:2: service "a" declared twice'),
            ('service "a" { }', r'policy\.lua:1: service "a": path is required'),
            ('cache { dir = "tmp" }', r'policy\.lua:1: cache: dir must be an absolute directory path'),
            ('register "x" { path = "/a" }', r'policy\.lua:1: register "x": endpoint is required'),
            ('error("top-level failure")', r'policy\.lua:1: top-level failure'),
            ('service "a" { path = "/a", selector = "nope" }', r'policy\.lua:1: service "a": selector: unknown selector'),
            ('service "a" { path = "/a", route = { "host = 1.2.3.4" } }', r'policy\.lua:1: service "a": route: rule 1'),
        ]
        for text, pattern in cases:
            with self.subTest(text=text):
                rc, out = self.check_text(text + "\n")
                self.assertEqual(rc, 1, out)
                self.assertRegex(out, "^" + pattern)

    def test_each_service_is_placed_at_the_line_that_names_it(self):
        # the DSL asks C where each `service "x"` is written (scout.agent.where, not debug.getinfo): the file and
        # line of every message, and of the first declaration a second one points at, are the caller's
        cases = [
            ('\nservice "a" { path = "/a" }\n\nservice "a" { path = "/b" }',
             'policy.lua:4: service "a" declared twice (first at policy.lua:2)'),
            ('service "a" { path = "/a" }\nservice "b"\nservice "c" { path = "/c" }',
             'policy.lua:2: service "b" has no { ... } block'),
            ('\n\nservice "-a" { path = "/a" }',
             'policy.lua:3: service "-a": names are letters, digits, _ . - (starting with a letter or digit)'),
            ('for i = 1, 3 do\n  service("s" .. i % 2) {\n    path = "/s" .. i,\n  }\nend',
             'policy.lua:2: service "s1" declared twice (first at policy.lua:2)'),
            ('local s = service "late"\nservice "x" { path = "/x" }\ns { }',
             'policy.lua:1: service "late": path is required (or dubbo = { interface = ... })'),
        ]
        for text, message in cases:
            with self.subTest(text=text):
                rc, out = self.check_text(text + "\n")
                self.assertEqual(rc, 1, out)
                self.assertEqual(out.strip(), message)

    def test_missing_file(self):
        rc, out = scout("check", "/nonexistent/policy.lua")
        self.assertEqual(rc, 1)
        self.assertIn("/nonexistent/policy.lua", out)

    def test_version_and_help(self):
        rc, out = scout("version")
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"^scout \d+\.\d+\.\d+")
        rc, out = scout("--help")
        self.assertEqual(rc, 0)
        self.assertIn("scout check POLICY", out)
        rc, out = scout("frobnicate")
        self.assertEqual(rc, 2)
        self.assertIn('unknown command "frobnicate"', out)


if __name__ == "__main__":
    unittest.main()

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

    def check_files(self, files, env=None):
        """files: name -> text, written to one directory that LUA_PATH also names; checks policy.lua there and
        returns (rc, output with the directory taken out of every path)."""
        with tempfile.TemporaryDirectory(prefix="scout-check-") as d:
            for name, text in files.items():
                with open(os.path.join(d, name), "w") as f:
                    f.write(text)
            rc, out = scout("check", os.path.join(d, "policy.lua"),
                            env=dict(env or {}, LUA_PATH=d + "/?.lua;;"))
            return rc, out.replace(d + "/", "")

    def test_every_message_names_the_line_and_file_it_is_about(self):
        # A service's place is kept as its line alone while nothing is wrong (the "file:line" is made only for a
        # message): blocks at several lines, a key on its own line, services made by a function of the policy
        # and by a module's (another file, whose own name the message must give), duplicates across the two.
        mods = ('local M = {}\n'                                  # 1
                '\n'                                              # 2
                'function M.declare(service, name, path)\n'       # 3
                '  service(name) { path = path }\n'               # 4
                'end\n'                                           # 5
                'function M.named(service, name)\n'               # 6
                '  local taker = service(name)\n'                 # 7: not a tail call, whose caller is gone
                '  return taker\n'                                # 8
                'end\n'                                           # 9
                'return M\n')
        head = ('local mods = require "mods"\n'                   # 1
                'service "a" { path = "/a" }\n'                   # 2
                '\n'                                              # 3
                'local function svc(name, path)\n'               # 4
                '  service(name) {\n'                             # 5
                '    path = path,\n'                              # 6
                '  }\n'                                           # 7
                'end\n'                                           # 8
                'svc("b", "/b")\n'                                # 9
                'service "c" {\n'                                 # 10
                '  path = "/c",\n'                                # 11
                '  codec = "plain",\n'                            # 12
                '}\n')                                            # 13
        cases = [
            ('service "d" {\n  path = "/d",\n  delay = "soon",\n}\n',
             'policy.lua:16: service "d": delay must be a duration ("500ms", "10s", "1h"; a number is milliseconds) '
             'from 0 to 1d, or a function'),
            ('svc("e", "e")\n', 'policy.lua:6: service "e": path must be an absolute ZooKeeper path'),  # the key's line
            ('svc("a", "/a2")\n', 'policy.lua:5: service "a" declared twice (first at policy.lua:2)'),
            ('mods.declare(service, "m", "/m")\n\nservice "m" { path = "/m2" }\n',
             'policy.lua:16: service "m" declared twice (first at mods.lua:4)'),
            ('mods.declare(service, "c", "/c2")\n', 'mods.lua:4: service "c" declared twice (first at policy.lua:10)'),
            ('mods.declare(service, "f", "/f/")\n', 'mods.lua:4: service "f": path must not end in / or contain //'),
            ('local x = mods.named(service, "x")\nservice "y" { path = "/y" }\n',
             'mods.lua:7: service "x" has no { ... } block'),
            ('\n\nlocal z = service "z"\nz { path = "/z" }\nservice "w"\n',
             'policy.lua:18: service "w" has no { ... } block'),
        ]
        for tail, message in cases:
            with self.subTest(tail=tail):
                rc, out = self.check_files({"policy.lua": head + tail, "mods.lua": mods})
                self.assertEqual(rc, 1, out)
                self.assertEqual(out.strip(), message)
        rc, out = self.check_files({"policy.lua": head + 'mods.declare(service, "n", "/n")\n', "mods.lua": mods})
        self.assertEqual((rc, out.strip()), (0, "policy.lua: ok (4 services)"))

    def test_service_names_and_paths_follow_the_dsl_rules(self):
        # the agent checks a service's name and path in C (scout.agent.is_name, path_fault): the same verdicts and
        # phrases as the DSL's patterns, which the Lua specs check outside the agent
        names = {"a": True, "9lives": True, "a.b-c_9": True, "A-": True, "_a": False, "-a": False, ".a": False,
                 "a b": False, "a/b": False, "caf\u00e9": False, "a\u00e9": False, "": False}
        for name, good in names.items():
            with self.subTest(name=name):
                rc, out = self.check_text('\nservice "%s" { path = "/p" }\n' % name)
                if good:
                    self.assertEqual((rc, out.strip()), (0, "policy.lua: ok (1 services)"))
                else:
                    self.assertEqual(rc, 1, out)
                    self.assertEqual(out.strip(), 'policy.lua:2: service "%s": names are letters, digits, _ . - '
                                                  '(starting with a letter or digit)' % name)
        absolute = "must be an absolute ZooKeeper path"
        slashes = "must not end in / or contain //"
        dots = "must not contain . or .. components"
        paths = {"/": None, "/a": None, "/a/.b": None, "/a/b..": None, "/a..b/c": None, "/...": None,
                 "/.a": None, "": absolute, "a": absolute, "./a": absolute, "/a/": slashes, "/a//b": slashes,
                 "//": slashes, "/.": dots, "/..": dots, "/a/.": dots, "/a/..": dots, "/a/./b": dots,
                 "/a/../b": dots, "/./": slashes}
        for path, why in paths.items():
            with self.subTest(path=path):
                rc, out = self.check_text('service "s" { path = "%s" }\nregister "r" { path = "%s", '
                                          'endpoint = { host = "h", port = 1 } }\n' % (path, path))
                if why is None:
                    self.assertEqual((rc, out.strip()), (0, "policy.lua: ok (1 services)"))
                else:
                    self.assertEqual(rc, 1, out)
                    self.assertEqual(out.strip(), 'policy.lua:1: service "s": path %s' % why)
        # a register's path is held to the same rule (its block comes after the service's, which is fine)
        rc, out = self.check_text('service "s" { path = "/s" }\nregister "r" { path = "/r/..", '
                                  'endpoint = { host = "h", port = 1 } }\n')
        self.assertEqual(rc, 1, out)
        self.assertEqual(out.strip(), 'policy.lua:2: register "r": path ' + dots)

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

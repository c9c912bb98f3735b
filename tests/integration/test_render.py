"""Rendered files, consul-template's rules: a template over what scout knows is written atomically, the command
runs once per real change (a burst of changes debounced into one run; a change that leaves the bytes alone runs
nothing, also after a restart), and a broken template fails `scout check` with file:line."""

import os
import shutil
import subprocess
import tempfile
import unittest

from scoutharness import SCOUT_BIN, Scout, policy, wait_until
from zkharness import ZooKeeper

TEMPLATE = "backend orders\n$orders[[    server $id $address weight $weight\n]]"


class Render(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
        self.kz = self.zk.client()
        self.dir = tempfile.mkdtemp(prefix="scout-render-")
        self.dest = os.path.join(self.dir, "backends.cfg")
        self.runs = os.path.join(self.dir, "runs.log")
        self.scout = None

    def tearDown(self):
        if self.scout:
            self.scout.stop()
        self.zk.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def nruns(self):
        if not os.path.exists(self.runs):
            return 0
        with open(self.runs) as f:
            return len(f.read().splitlines())

    def content(self):
        with open(self.dest) as f:
            return f.read()

    def test_debounced_atomic_and_once_per_real_change(self):
        with open(os.path.join(self.dir, "haproxy.tpl"), "w") as f:
            f.write(TEMPLATE)
        self.kz.ensure_path("/r/orders")
        self.kz.create("/r/orders/a", b'{"host":"10.0.0.1","port":80,"weight":5}')
        extra = ('render { template = "%s/haproxy.tpl", dest = "%s", command = "echo run >> %s",\n'
                 '         wait = { min = "2s", max = "6s" } }' % (self.dir, self.dest, self.runs))
        self.scout = Scout(policy({"orders": 'path = "/r/orders", protect = false'}, extra=extra),
                           self.zk.connect).start()
        wait_until(lambda: self.nruns() == 1, what="first render and command")
        self.assertEqual(self.content(), "backend orders\n    server a 10.0.0.1:80 weight 5\n")
        inode = os.stat(self.dest).st_ino

        for n in "bcdef":                                   # a burst well inside wait.min: one render, one run
            self.kz.create("/r/orders/" + n, b'{"host":"10.0.0.2","port":81,"weight":1}')
        wait_until(lambda: "server f" in self.content(), what="the burst rendered")
        wait_until(lambda: self.nruns() >= 2, what="the burst's command")
        self.assertNotEqual(os.stat(self.dest).st_ino, inode, "replaced by rename, not rewritten in place")

        # a change the template does not show: same bytes, no command. The render that found the same bytes (it
        # says so in the log) is the later event: the burst's command and this change's are counted by then.
        self.kz.set("/r/orders/a", b'{"host":"10.0.0.1","port":80,"weight":5,"meta":{"rack":"r1"}}')
        wait_until(lambda: "unchanged" in self.scout.log(), what="the render of the same bytes")
        self.assertEqual(self.nruns(), 2)
        self.assertFalse([f for f in os.listdir(self.dir) if f.endswith(".scout-tmp")])

    def test_a_restart_on_the_same_truth_rewrites_nothing_and_runs_nothing(self):
        with open(os.path.join(self.dir, "haproxy.tpl"), "w") as f:
            f.write(TEMPLATE)
        self.kz.create("/r2/orders/a", b'{"host":"10.0.0.1","port":80,"weight":5}', makepath=True)
        extra = ('render { template = "%s/haproxy.tpl", dest = "%s", command = "echo run >> %s",\n'
                 '         wait = { min = "200ms", max = "1s" } }' % (self.dir, self.dest, self.runs))
        pol = policy({"orders": 'path = "/r2/orders"'}, extra=extra)
        self.scout = Scout(pol, self.zk.connect).start()
        wait_until(lambda: self.nruns() == 1, what="first render and command")
        inode = os.stat(self.dest).st_ino
        self.scout.stop()
        # a restart (or a reload) renders the same bytes: consul-template's rule, no write and no command
        self.scout = Scout(pol, self.zk.connect).start()
        wait_until(lambda: self.scout.state("orders") == "synced", what="synced again")
        wait_until(lambda: "unchanged" in self.scout.log(), what="the restart's render of the same bytes")
        self.assertEqual(self.nruns(), 1)
        self.assertEqual(os.stat(self.dest).st_ino, inode)
        # and a real change still renders and runs
        self.kz.create("/r2/orders/b", b'{"host":"10.0.0.2","port":81,"weight":1}')
        wait_until(lambda: self.nruns() == 2, what="the change rendered")
        self.assertIn("server b 10.0.0.2:81", self.content())

    def test_broken_template_fails_check(self):
        with open(os.path.join(self.dir, "bad.tpl"), "w") as f:
            f.write("$orders[[ unclosed")
        pol = os.path.join(self.dir, "policy.lua")
        with open(pol, "w") as f:
            f.write('service "orders" { path = "/x" }\n\nrender { template = "bad.tpl", dest = "/tmp/x" }\n')
        p = subprocess.run([SCOUT_BIN, "check", pol], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stdout, r"policy\.lua:3: render: template .*bad\.tpl")


if __name__ == "__main__":
    unittest.main()

"""Rendered files, consul-template's rules: a template over what scout knows is written atomically, the command
runs once per real change (a burst of changes debounced into one run; a change that leaves the bytes alone runs
nothing, also after a restart), and a broken template fails `scout check` with file:line."""

import os
import shutil
import subprocess
import tempfile
import unittest

from scoutharness import SCOUT_BIN, Scout, policy, wait_until
from zkharness import SharedZooKeeper

TEMPLATE = "backend orders\n$orders[[    server $id $address weight $weight\n]]"


class Render(unittest.TestCase):
    def setUp(self):
        self.zk = SharedZooKeeper().start()     # an empty tree on the pass's one server (zkharness)
        self.kz = self.zk.client()
        self.dir = tempfile.mkdtemp(prefix="scout-render-")
        # a cleanup, not tearDown: cleanups run last-in first-out, so a test's tmpfs is unmounted before this
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.dest = os.path.join(self.dir, "backends.cfg")
        self.runs = os.path.join(self.dir, "runs.log")
        self.scout = None

    def tearDown(self):
        if self.scout:
            self.scout.stop()
        self.zk.stop()

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

    def test_command_runs_after_its_file_is_in_place_in_order(self):
        # the write is done by a writer thread now: the command must still see the bytes of the render that
        # triggered it, and a burst of renders must reach the file and the command in order, newest last
        with open(os.path.join(self.dir, "haproxy.tpl"), "w") as f:
            f.write(TEMPLATE)
        self.kz.create("/r3/orders/a", b'{"host":"10.0.0.1","port":80,"weight":5}', makepath=True)
        extra = ('render { template = "%s/haproxy.tpl", dest = "%s", command = "cat %s >> %s; echo --- >> %s",\n'
                 '         wait = { min = "0ms", max = "0ms" } }' % (self.dir, self.dest, self.dest, self.runs,
                                                                      self.runs))
        self.scout = Scout(policy({"orders": 'path = "/r3/orders", protect = false'}, extra=extra),
                           self.zk.connect).start()
        wait_until(lambda: "server a" in self.runlog(), what="first render and command")
        for i in range(12):
            self.kz.create("/r3/orders/n%02d" % i, b'{"host":"10.0.1.%d","port":81,"weight":1}' % i)
        wait_until(lambda: "server n11" in self.content(), what="the last change rendered")
        wait_until(lambda: "server n11" in self.runlog(), what="the command saw the last file")
        runs = [r for r in self.runlog().split("---\n") if r]
        # every run saw a whole file (header first, no part), and the files it saw only grew
        counts = []
        for r in runs:
            self.assertTrue(r.startswith("backend orders\n"), r)
            counts.append(r.count("server "))
        self.assertEqual(counts, sorted(counts), "renders reached the command out of order")
        self.assertEqual(counts[-1], 13)
        self.assertGreater(self.scout.metric("scout_render_writes_total"), 0)
        self.assertFalse([f for f in os.listdir(self.dir) if f.endswith(".scout-tmp")])

    @unittest.skipUnless(os.geteuid() == 0, "mounting a tiny tmpfs needs root")
    def test_a_full_disk_keeps_the_old_file_counts_and_catches_up(self):
        # a 64 KiB tmpfs holds the first render; a render of 3,000 endpoints does not fit: ENOSPC
        mnt = os.path.join(self.dir, "full")
        os.mkdir(mnt)
        subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", mnt])
        self.addCleanup(subprocess.call, ["umount", mnt])
        dest = os.path.join(mnt, "backends.cfg")
        with open(os.path.join(self.dir, "haproxy.tpl"), "w") as f:
            f.write(TEMPLATE)
        self.kz.create("/r4/orders/a", b'{"host":"10.0.0.1","port":80,"weight":5}', makepath=True)
        # the command logs how many lines the file had when it ran
        extra = ('render { template = "%s/haproxy.tpl", dest = "%s", command = "wc -l < %s >> %s",\n'
                 '         wait = { min = "0ms", max = "0ms" } }' % (self.dir, dest, dest, self.runs))
        self.scout = Scout(policy({"orders": 'path = "/r4/orders", protect = false'}, extra=extra),
                           self.zk.connect).start()
        wait_until(lambda: self.nruns() == 1, what="first render and command")
        with open(dest) as f:
            first = f.read()
        tx = self.kz.transaction()
        for i in range(3000):
            tx.create("/r4/orders/node-with-a-long-name-%05d" % i,
                      b'{"host":"10.1.%d.%d","port":8080,"weight":1}' % (i >> 8, i & 255))
        tx.commit()
        wait_until(lambda: self.scout.metric("scout_render_write_failures_total") >= 1, what="the failure counted")
        with open(dest) as f:
            self.assertEqual(f.read(), first, "the old file must stay whole")
        self.assertEqual(sorted(os.listdir(mnt)), ["backends.cfg"], "no temp file left behind")
        self.assertIn("No space left on device", self.scout.log())
        # room again: the next change writes the whole newest state and runs the command
        subprocess.check_call(["mount", "-o", "remount,size=4m", mnt])
        self.kz.create("/r4/orders/z", b'{"host":"10.0.0.9","port":80,"weight":1}')
        wait_until(lambda: self.runlog().endswith("3003\n"), what="the command after the disk came back")
        with open(dest) as f:
            text = f.read()
        self.assertEqual(text.count("server "), 3002)
        self.assertIn("server z 10.0.0.9:80", text)
        # one run per file written, each seeing its whole file: none for the write that failed
        self.assertEqual(self.runlog().split(), ["2", "3003"])

    def runlog(self):
        if not os.path.exists(self.runs):
            return ""
        with open(self.runs) as f:
            return f.read()

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

"""A test run stopped by SIGTERM or SIGINT (`kill`, Ctrl-C) stops at once and leaves nothing behind.

Why: unittest records any exception a test raises and goes on with the next test; a killed run used to go on,
and what the killed test had started (a ZooKeeper in its own session, an agent, a test's own child) and its
temp dirs could stay behind. A run of signal_fixture.py under tests/integration/run.py, with its own $TMPDIR, is
signalled once its first test has an agent, a ZooKeeper and a child of its own up (their pids, printed by the
test); then the run must exit 128+signal with its count line, the second test never started, each of those
processes gone and its $TMPDIR empty. tests/run.sh likewise, signalled once its integration run has an agent up.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import unittest

from scoutharness import wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def mentioning(text):
    """Pids whose command line mentions text."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    if text.encode() in f.read():
                        out.append(int(name))
            except OSError:
                pass
    return out


class RunSignals(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="scout-it-sig-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def kill_run(self, sig):
        env = dict(os.environ, TMPDIR=self.tmp)
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "run.py"), "signal_fixture.py"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        chunks = []
        reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: p.stdout.read1(4096), b"")), daemon=True)
        reader.start()
        ready = wait_until(lambda: re.search(r"READY scout=(\d+) java=(\d+) own=(\d+) dir=(\S+)",
                                             b"".join(chunks).decode()), timeout=120, what="the first test's READY")
        pids = [int(x) for x in ready.groups()[:3]]
        self.addCleanup(self.reap, pids)        # after p's kill: what a broken run left is not left to the next test
        self.assertTrue(all(alive(x) for x in pids), pids)
        self.assertTrue(ready.group(4).startswith(self.tmp), ready.group(4))   # the run's temp dirs are under $TMPDIR
        p.send_signal(sig)
        rc = p.wait(timeout=120)
        reader.join(120)                       # a process a broken run left may hold the pipe
        out = b"".join(chunks).decode()
        self.assertEqual(rc, 128 + sig, out)
        self.assertNotIn("SECOND TEST STARTED", out)
        self.assertIn("interrupted by %s in signal_fixture.Killed.test_1_interrupted" % signal.Signals(sig).name, out)
        self.assertRegex(out.rstrip().splitlines()[-1], r"^0 passed, 1 failed$")
        self.assertEqual([x for x in pids if alive(x)], [])
        self.assertEqual(mentioning(self.tmp), [])
        self.assertEqual(os.listdir(self.tmp), [])

    def reap(self, pids):
        for pid in set(pids + mentioning(self.tmp)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def test_sigterm_to_tests_run_sh_stops_every_suite_and_prints_the_summary(self):
        # tests/run.sh runs its suites in the background and passes the signal on: the integration run it started
        # stops at once and cleans up, the summary counts it and the interruption as failed
        env = dict(os.environ, TMPDIR=self.tmp, SUITES="integration")
        env.pop("SCOUT_BIN", None)
        p = subprocess.Popen([os.path.join(ROOT, "tests", "run.sh")], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        self.addCleanup(self.reap, [])
        chunks = []
        reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: p.stdout.read1(4096), b"")), daemon=True)
        reader.start()
        # an agent of the nested run is up (its policy file is under our $TMPDIR)
        wait_until(lambda: any(b"scout" in open("/proc/%d/cmdline" % x, "rb").read().split(b"\0")[0]
                               for x in mentioning(self.tmp)), timeout=120, what="an agent of the nested run")
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=120)
        reader.join(120)                       # a process a broken run left may hold the pipe
        out = b"".join(chunks).decode()
        self.assertEqual(rc, 143, out[-3000:])
        self.assertIn("interrupted:TERM", out)
        self.assertRegex(out.rstrip().splitlines()[-1], r"^\d+ passed, [1-9]\d* failed, \d+ skipped$")
        self.assertEqual(mentioning(self.tmp), [])
        self.assertEqual(os.listdir(self.tmp), [])

    def test_sigterm_stops_the_run_and_leaves_nothing(self):
        self.kill_run(signal.SIGTERM)

    def test_sigint_stops_the_run_and_leaves_nothing(self):
        self.kill_run(signal.SIGINT)

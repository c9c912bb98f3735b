"""signal_fixture — a run for test_run_signals.py to kill (not a test module itself: run.py only finds test_*.py).

Why: the meta-test needs a run caught in the middle of a test, with what tests start alive: a ZooKeeper (java,
in its own session), an agent, and a process no harness knows of. The first test starts them, prints their pids
(the meta-test's ordering fact) and waits to be interrupted; the second must never start when it is.
"""

import os
import subprocess
import sys
import threading
import unittest

from scoutharness import Scout, policy, wait_until
from zkharness import ZooKeeper


class Killed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = ZooKeeper().start()

    @classmethod
    def tearDownClass(cls):
        cls.zk.stop()

    def test_1_interrupted(self):
        self.zk.client().ensure_path("/sig/svc")
        scout = Scout(policy({"svc": 'path = "/sig/svc"'}), self.zk.connect).start()
        wait_until(lambda: scout.state("svc") == "synced", what="svc synced")
        own = subprocess.Popen(["sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # no harness stops it
        with open(os.path.join(self.zk.dir, "node1", "pid")) as f:
            java = int(f.read())
        sys.stdout.write("\nREADY scout=%d java=%d own=%d dir=%s\n" % (scout.proc.pid, java, own.pid, self.zk.dir))
        sys.stdout.flush()
        threading.Event().wait(600)                        # the meta-test's signal ends this
        self.fail("no signal came")

    def test_2_after(self):
        print("\nSECOND TEST STARTED")

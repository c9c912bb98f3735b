"""What a change costs an agent that is otherwise idle: nothing of the change's may wake it again once the change is
served. Each wakeup of the loop's thread is a context switch, which on a small host costs more than the work of a
one-endpoint change (bench/propagation); a quiet registry changes rarely, so a wakeup left behind by every change is
paid in full each time.

- The hook budget's timer: every call into Lua runs under a budget enforced by a POSIX timer (SIGALRM). Left armed
  after the call, it fired once per change, 50 ms later, into an agent waiting for nothing: one more wakeup per
  change than the change itself. The loop now disarms it before it waits (agent/policy/hook.c), so a budget timer
  only ever fires while a call is running.
- The shared-memory snapshot's writer thread: it woke the loop (ev_async) after every generation it wrote, only for
  the loop to free the job. A generation written without error now wakes nobody; the loop collects it when it next
  looks (its next generation), and is woken only for a failure (to retry) or when it asked while the job ran
  (agent/publish/writer.c). scout_writer_wakeups_total counts these wakeups.
- The same thread's own wakeup: handing a generation over to it cost the loop three futex calls and the thread a
  wakeup per change, more than writing a small snapshot (~1 us for 12 KB). A generation whose snapshot was small
  is now written on the loop (agent/publish/shmpub.c): scout_writer_handoffs_total does not move, and
  scout_shm_inline_writes_total counts it.

Ordering, not timing: each check waits for the end of a blocking query the agent itself times (its own libev timer,
started after the change's hook call returned and far past that call's budget), so the budget timer, due earlier on
the same clock, has fired by then if it was left armed. scout_hook_idle_alarms_total counts the signals that came
while the loop waited; scout_hook_alarms_total counts them all, and also moves on a loaded host when the rest of an
iteration that ran a hook is preempted past the budget (the timer is disarmed only before the wait), which is not
a wakeup."""

import json
import os
import subprocess
import tempfile
import unittest

import test_shm
from scoutharness import ROOT, Scout, wait_until
from zkharness import SharedZooKeeper

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
        cls.zk = SharedZooKeeper().start()
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
        alarms, calls = s.metric("scout_hook_idle_alarms_total"), s.metric("scout_hook_calls_total")
        for port in (2, 3, 4):
            before = self.index()
            self.kz.create("/idle/svc/127.0.0.1:%d" % port)
            wait_until(lambda: self.index() > before, what="change %d published" % port)
            eps = self.quiet_wait(self.index())
            self.assertIn("127.0.0.1:%d" % port, [ep["id"] for ep in eps])
        self.assertGreater(s.metric("scout_hook_calls_total"), calls)   # the changes did run Lua
        # the timer was disarmed before each wait, so no signal found the loop waiting
        self.assertEqual(s.metric("scout_hook_idle_alarms_total"), alarms)


class CpuClockReads(unittest.TestCase):
    """The loop's thread CPU clock (a syscall here, not in the vDSO) was read again after every idle pause: by the
    stall clock at every iteration that began 10 ms after the last reading, and by the hook budget at every call 1/8
    of a budget after its own: a quiet registry paid both for every change, and for every request. Both now count
    from one reading for as long as the loop has not been *busy* 10 ms since it, however long it slept: iterations
    in wall time, plus 50 us per poll (agent/loop.c). So the reads follow the loop's busy time, which /metrics shows
    (scout_loop_stall_seconds_sum, _count), not the number of pauses: a relation between counters, whatever the
    host's speed (ASan, load)."""

    @classmethod
    def setUpClass(cls):
        cls.zk = SharedZooKeeper().start()
        cls.kz = cls.zk.client()
        cls.kz.ensure_path("/idle/clock")
        cls.kz.create("/idle/clock/127.0.0.1:1")
        # a budget whose eighth (25 ms) is past the loop's 10 ms: the hook calls always start from the loop's reading
        cls.scout = Scout(POLICY.replace("hook_budget = 20", "hook_budget = 200").replace("/idle/svc", "/idle/clock"),
                          cls.zk.connect).start()
        wait_until(lambda: cls.scout.ids("svc") == ["127.0.0.1:1"], what="initial list")

    @classmethod
    def tearDownClass(cls):
        cls.scout.stop()
        cls.zk.stop()

    def index(self):
        return int(self.scout.endpoints("svc")[1]["X-Scout-Index"])

    def test_quiet_changes_read_the_cpu_clock_per_busy_time_not_per_pause(self):
        s = self.scout
        m0 = s.metrics()
        for port in range(2, 7):
            before = self.index()
            self.kz.create("/idle/clock/127.0.0.1:%d" % port)
            wait_until(lambda: self.index() > before, what="change %d published" % port)
            # a pause the agent itself ends (its own 100 ms wait): a quiet registry's idle loop between changes
            status, headers, _ = s.request("/v1/services/svc?index=%d&wait=100ms" % self.index())
            self.assertEqual(status, 200)
        m1 = s.metrics()
        self.assertGreaterEqual(m1["scout_hook_calls_total"] - m0["scout_hook_calls_total"], 5)   # Lua ran each time
        iterations = m1["scout_loop_stall_seconds_count"] - m0["scout_loop_stall_seconds_count"]
        busy = m1["scout_loop_stall_seconds_sum"] - m0["scout_loop_stall_seconds_sum"] + iterations * 50e-6
        reads = m1["scout_cpu_clock_reads_total"] - m0["scout_cpu_clock_reads_total"]
        # one reading per 10 ms of that, and one more for the first and a last: before, one per pause (>= 15 here)
        self.assertLessEqual(reads, 2 + busy / 0.010, "%d reads for %.1f ms busy over %d iterations"
                             % (reads, busy * 1e3, iterations))


class ShmSnapshot:
    """An agent writing a shm snapshot at cls.path, and a reader of it (libscout.so from luajit)."""

    @classmethod
    def tearDownClass(cls):
        cls.scout.stop()
        cls.zk.stop()
        for f in (cls.path, cls.path + ".lua"):
            if os.path.exists(f):
                os.unlink(f)

    def read(self):
        env = dict(os.environ, SCOUT_LIB=os.path.join(ROOT, "build", "libscout.so"))
        script = self.path + ".lua"
        with open(script, "w") as f:
            f.write(test_shm.READER % {"root": ROOT})
        p = subprocess.run(["luajit", script, self.path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, env=env, timeout=30)
        if p.returncode != 0:
            raise ValueError(p.stderr)
        return json.loads(p.stdout)

    def seen(self, port, gen):
        snap = self.read()
        ids = [i.split("=")[0] for i in snap["services"]["svc"]["ids"]]
        return snap["generation"] if snap["generation"] > gen and "127.0.0.1:%d" % port in ids else None


class ShmWriterWakeups(ShmSnapshot, unittest.TestCase):
    """A small snapshot's generations (one service of a few endpoints) are written on the loop: each change is
    waited for in the snapshot (its generation moved and it holds the new endpoint)."""

    CHANGES = 5

    @classmethod
    def setUpClass(cls):
        cls.zk = SharedZooKeeper().start()
        cls.kz = cls.zk.client()
        cls.kz.ensure_path("/idle/shm")
        cls.kz.create("/idle/shm/127.0.0.1:1")
        cls.path = tempfile.mktemp(prefix="scout-shm-idle-", dir="/dev/shm")
        cls.scout = Scout('zookeeper { servers = "127.0.0.1:1", session_timeout = 10000 }\n'
                          'shm { path = "%s" }\n'
                          'service "svc" { path = "/idle/shm", delay = 0 }\n' % cls.path, cls.zk.connect).start()
        wait_until(lambda: cls.scout.ids("svc") == ["127.0.0.1:1"], what="initial list")

    def test_a_small_generation_is_written_without_the_writer_thread(self):
        s = self.scout
        gen = wait_until(lambda: self.seen(1, 0), what="the first list in the snapshot")
        handoffs, inline = s.metric("scout_writer_handoffs_total"), s.metric("scout_shm_inline_writes_total")
        for port in range(10, 10 + self.CHANGES):
            self.kz.create("/idle/shm/127.0.0.1:%d" % port)
            gen = wait_until(lambda: self.seen(port, gen), what="change %d in the snapshot" % port)
        # every change reached readers, none through the thread (no other writer is configured here)
        self.assertEqual(s.metric("scout_writer_handoffs_total"), handoffs)
        self.assertGreaterEqual(s.metric("scout_shm_inline_writes_total") - inline, self.CHANGES)


class ShmBigGeneration(ShmSnapshot, unittest.TestCase):
    """The other side: a snapshot past 128 KB (800 endpoints with ~190-byte names here; 12 MB at 10,000 services,
    1-3 ms to write) still goes to the writer thread, so that no generation holds the loop. And a generation the
    thread wrote does not wake the loop: each change is waited for in the snapshot, so every generation is a job of
    its own; the loop collects each when it submits the next. Only a generation the loop looked at while it was still
    being written may wake it (the loop has a change waiting on it); with 5 changes a gap of 0.1 s apart that leaves
    room for one, not for every one."""

    BIG = 800
    CHANGES = 5

    @classmethod
    def setUpClass(cls):
        cls.zk = SharedZooKeeper().start()
        cls.kz = cls.zk.client()
        cls.kz.ensure_path("/idle/big")
        label = "a" * 60
        t = cls.kz.transaction()
        for i in range(cls.BIG):
            t.create("/idle/big/h%04d.%s.%s.%s:80" % (i, label, label, label))
        assert all(r is True or isinstance(r, str) for r in t.commit())
        cls.path = tempfile.mktemp(prefix="scout-shm-big-", dir="/dev/shm")
        cls.scout = Scout('zookeeper { servers = "127.0.0.1:1", session_timeout = 10000 }\n'
                          'shm { path = "%s" }\n'
                          'service "svc" { path = "/idle/big", delay = 0 }\n' % cls.path, cls.zk.connect).start()
        wait_until(lambda: len(cls.scout.ids("svc")) == cls.BIG, what="initial list")

    def whole(self):
        """The snapshot's generation once it holds the whole list."""
        snap = self.read()
        return snap["generation"] if len(snap["services"]["svc"]["ids"]) >= self.BIG else None

    def test_a_big_generation_is_written_by_the_writer_thread(self):
        s = self.scout
        gen = wait_until(self.whole, what="the whole list in the snapshot")
        handoffs, inline = s.metric("scout_writer_handoffs_total"), s.metric("scout_shm_inline_writes_total")
        self.kz.create("/idle/big/127.0.0.1:2")
        wait_until(lambda: self.seen(2, gen), what="the change in the snapshot")
        self.assertGreater(s.metric("scout_writer_handoffs_total"), handoffs)
        self.assertEqual(s.metric("scout_shm_inline_writes_total"), inline)

    def test_a_generation_written_does_not_wake_the_loop(self):
        s = self.scout
        gen = wait_until(self.whole, what="the whole list in the snapshot")
        wakeups = s.metric("scout_writer_wakeups_total")
        for port in range(3, 3 + self.CHANGES):
            self.kz.create("/idle/big/127.0.0.1:%d" % port)
            gen = wait_until(lambda: self.seen(port, gen), what="change %d in the snapshot" % port)
        self.assertLessEqual(s.metric("scout_writer_wakeups_total") - wakeups, 1)


if __name__ == "__main__":
    unittest.main()

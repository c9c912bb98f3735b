"""The disk snapshot's journal: after a full snapshot (the base), a write appends only the services that changed to
scout.snapshot.journal, and a restart serves base + journal exactly as the last write left them, with ZooKeeper
down. A torn or garbage tail loses only the torn record; a journal that names another base (a crash between a
compaction's rename and the journal's removal) is never applied, and the log says so; the journal is compacted
into a new base once it passes a quarter of the base's size, and at SIGTERM; a journal changed under the agent is
never copied into the next base (its records are read back from it, checked, not kept in memory). Every state is
awaited on the files themselves (snapjournal.py folds them: the state the agent's readers serve), never on time."""

import os
import shutil
import signal
import struct
import tempfile
import unittest

import snapjournal
from scoutharness import Scout, policy, wait_until
from test_bad_files import xxh64
from test_outputs_churn import read_disk
from zkharness import ZooKeeper

NSVC = 30

EARLY_GATE_MODULE = '''-- held by the test: the load waits for a line on the FIFO named by EARLY_GATE
local gate = os.getenv("EARLY_GATE")
if gate then
  local f = assert(io.open(gate, "r"))
  f:read("*l")
  f:close()
end
return {}
'''


def _release(gate):
    """A load held on the gate goes on (nothing when none waits); True when one was waiting."""
    try:
        fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        os.write(fd, b"go\n")
    finally:
        os.close(fd)
    return True


class Journal(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
        self.kz = self.zk.client()
        self.cache = tempfile.mkdtemp(prefix="scout-journal-")
        self.snap = os.path.join(self.cache, "scout.snapshot")
        self.journal = os.path.join(self.cache, snapjournal.JOURNAL)
        self.scouts = []
        for s in range(NSVC):
            for e in range(3):
                self.kz.create("%s/127.0.%d.%d:%d" % (self.path(s), s, e, 1000 + e), makepath=True)

    def tearDown(self):
        for s in self.scouts:
            s.stop(sig=signal.SIGKILL)
        self.zk.stop()
        shutil.rmtree(self.cache, ignore_errors=True)

    @staticmethod
    def path(s):
        return "/jn/s%02d" % s

    def agent(self, cache_arg=False, gated=False):
        svcs = {"s%02d" % s: 'path = "%s", protect = false' % self.path(s) for s in range(NSVC)}
        extra = 'cache { dir = "%s" }' % self.cache
        if gated:                       # the load can be held on a FIFO (test_early.py's module)
            extra += '\nlocal gate = require "earlygate"'
        a = Scout(policy(svcs, extra=extra), self.zk.connect,
                  extra_args=["--cache-dir", self.cache] if cache_arg else [])
        self.scouts.append(a)
        return a

    def api(self, a):
        out = {}
        for s in range(NSVC):
            eps, headers = a.endpoints("s%02d" % s)
            out["s%02d" % s] = (int(headers["X-Scout-Index"]),
                                {ep["id"]: (ep["host"], ep["port"], ep["weight"]) for ep in eps})
        return out

    def change(self, a, k):
        """One new endpoint in service k % NSVC, served, then on disk: the API's state, as the files hold it."""
        s = k % NSVC
        self.kz.create("%s/127.1.%d.%d:%d" % (self.path(s), s, k, 2000 + k))
        wait_until(lambda: "127.1.%d.%d:%d" % (s, k, 2000 + k) in self.api(a)["s%02d" % s][1],
                   what="change %d served" % k)
        api = self.api(a)
        wait_until(lambda: read_disk(self.snap) == api, what="change %d on disk" % k)
        return api

    def synced(self, a):
        wait_until(lambda: all(st["state"] == "synced" for st in a.services().values()), what="first sync")
        api = self.api(a)
        wait_until(lambda: read_disk(self.snap) == api, what="the first snapshot")
        return api

    def crash(self, a):
        a.stop(sig=signal.SIGKILL)

    def restart_without_zookeeper(self):
        self.zk.stop_node(1)
        b = self.agent().start()
        return b, self.api(b)

    def test_changes_after_the_base_survive_a_restart_from_base_and_journal(self):
        a = self.agent().start()
        self.synced(a)
        # the sync can take more than one whole write (a publication while the first is in flight is written
        # whole too): the base is settled once a change has gone to the journal, which names it
        k = 0
        while not (os.path.exists(self.journal) and snapjournal.records(open(self.journal, "rb").read())[0]):
            self.change(a, k)
            k += 1
            self.assertLess(k, 20, "no change went to the journal")
        settled = len(snapjournal.records(open(self.journal, "rb").read())[0])
        # (the counters move on the loop once the writer thread is done: after the file, so waited for)
        wait_until(lambda: a.metric("scout_snapshot_journal_appends_total") >= settled, what="the appends counted")
        base, whole = open(self.snap, "rb").read(), a.metric("scout_snapshot_compactions_total")
        for k in range(k, k + 3):
            api = self.change(a, k)
        # the changes went to the journal: the base is the file it names, byte for byte
        self.assertEqual(open(self.snap, "rb").read(), base)
        wait_until(lambda: a.metric("scout_snapshot_journal_appends_total") >= settled + 3,
                   what="three more appends counted")
        self.assertEqual(a.metric("scout_snapshot_compactions_total"), whole)
        recs, end = snapjournal.records(open(self.journal, "rb").read())
        self.assertEqual(len(recs), settled + 3)
        self.assertEqual(end, os.path.getsize(self.journal))
        self.assertTrue(all(len(svcs) == 1 for _, _, _, svcs in recs))     # one changed service each
        self.crash(a)
        b, served = self.restart_without_zookeeper()
        self.assertEqual(served, api)
        self.assertEqual(b.state("s00"), "stale")
        self.assertRegex(b.log(), r"journal \S+: %d records applied" % len(recs))

    def test_the_early_answers_serve_base_and_journal(self):
        # the same command line again, with --cache-dir: the side file (written with the base, naming it) lets the
        # start answer from the snapshot before its policy is loaded; what it serves is base + journal
        a = self.agent(cache_arg=True).start()
        self.synced(a)
        for k in range(2):
            api = self.change(a, k)
        wait_until(lambda: os.path.exists(os.path.join(self.cache, "scout.snapshot.policy")), what="the side file")
        a.stop(sig=signal.SIGKILL)
        self.zk.stop_node(1)
        a.start()
        self.assertEqual(self.api(a), api)
        wait_until(lambda: "as the early start read it" in a.log(), what="the hand-over")
        self.assertRegex(a.log(), r"early: journal \S+: \d+ records? applied")

    def test_an_early_start_after_a_crash_answers_each_service_from_its_newest_record(self):
        # what the readers index where it is (base + journal, never folded) is what a start with ZooKeeper down
        # answers before its policy is loaded: every service from its newest record -- an endpoint removed after
        # the base is not served, a service changed in two records answers the second, an emptied and refilled
        # service and a removed and re-created endpoint answer their last state. The policy's load is held on a
        # FIFO (test_early.py's module: LUA_PATH is part of what the side file vouches for, EARLY_GATE is not),
        # so each answer below is the early server's: an ordering fact, no timing.
        moddir = os.path.join(self.cache + "-mod")
        os.mkdir(moddir)
        self.addCleanup(shutil.rmtree, moddir, True)
        with open(os.path.join(moddir, "earlygate.lua"), "w") as f:
            f.write(EARLY_GATE_MODULE)
        gate = os.path.join(moddir, "gate")
        os.mkfifo(gate)
        old_env = {k: os.environ.get(k) for k in ("LUA_PATH", "EARLY_GATE")}

        def restore():
            for k, v in old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.addCleanup(restore)
        self.addCleanup(_release, gate)
        os.environ["LUA_PATH"] = moddir + "/?.lua;;"
        os.environ.pop("EARLY_GATE", None)
        for s in range(10, NSVC):       # a base large enough for the journal to hold every change below
            for e in range(3, 12):
                self.kz.create("%s/127.0.%d.%d:%d" % (self.path(s), s, e, 1000 + e))
        a = self.agent(cache_arg=True, gated=True).start()
        self.synced(a)
        base = open(self.snap, "rb").read()
        ep = lambda s, e: "%s/127.0.%d.%d:%d" % (self.path(s), s, e, 1000 + e)     # noqa: E731

        def step(change, svc, ids, what):
            """change, then svc serves exactly ids, then that state is on disk (its own write: one record)."""
            change()
            wait_until(lambda: sorted(self.api(a)[svc][1]) == sorted(ids), what=what + " served")
            api = self.api(a)
            wait_until(lambda: read_disk(self.snap) == api, what=what + " on disk")
        first3 = lambda s: ["127.0.%d.%d:%d" % (s, e, 1000 + e) for e in range(3)]     # noqa: E731
        step(lambda: self.kz.delete(ep(1, 0)), "s01", first3(1)[1:], "s01 loses an endpoint")
        step(lambda: self.kz.create("%s/127.1.2.1:2001" % self.path(2)), "s02", first3(2) + ["127.1.2.1:2001"],
             "s02 gains one")
        step(lambda: self.kz.delete("%s/127.1.2.1:2001" % self.path(2)), "s02", first3(2), "s02 loses it again")
        step(lambda: self.kz.create("%s/127.1.3.1:2001" % self.path(3)), "s03", first3(3) + ["127.1.3.1:2001"],
             "s03 gains one")
        step(lambda: [self.kz.delete(ep(4, e)) for e in range(3)], "s04", [], "s04 emptied")
        step(lambda: self.kz.create(ep(4, 1)), "s04", first3(4)[1:2], "s04 refilled")
        step(lambda: self.kz.delete(ep(5, 2)), "s05", first3(5)[:2], "s05 loses an endpoint")
        step(lambda: self.kz.create(ep(5, 2)), "s05", first3(5), "s05 gets it back")
        want = self.api(a)
        self.assertEqual(open(self.snap, "rb").read(), base)       # all in the journal
        recs, _ = snapjournal.records(open(self.journal, "rb").read())
        self.assertGreaterEqual(len(recs), 8)
        self.assertNotIn("127.0.1.0:1000", want["s01"][1])
        self.assertNotIn("127.1.2.1:2001", want["s02"][1])
        self.assertEqual(sorted(want["s04"][1]), ["127.0.4.1:1001"])
        self.assertIn("127.0.5.2:1002", want["s05"][1])
        wait_until(lambda: os.path.exists(os.path.join(self.cache, "scout.snapshot.policy")), what="the side file")
        self.crash(a)
        self.zk.stop_node(1)
        os.environ["EARLY_GATE"] = gate
        a.start(wait=False)
        os.environ.pop("EARLY_GATE", None)
        wait_until(lambda: "serving the disk snapshot" in a.log(), what="the early server")
        self.assertEqual(self.api(a), want)
        self.assertEqual({k: v["endpoints"] for k, v in a.services().items()},
                         {k: len(v[1]) for k, v in want.items()})
        self.assertRegex(a.log(), r"early: journal \S+: %d records applied" % len(recs))
        self.assertNotIn("as the early start read it", a.log())     # the load is still held: early answers
        # the early server can answer before the loader has opened the gate: a release before that would find no
        # reader and do nothing (seen under ASan), so wait for the reader (the open succeeds once it is there)
        wait_until(lambda: _release(gate), what="the load waiting on its gate")
        wait_until(lambda: "as the early start read it" in a.log(), what="the hand-over")
        self.assertEqual(self.api(a), want)

    def test_a_torn_or_garbage_tail_loses_only_the_torn_record(self):
        a = self.agent().start()
        self.synced(a)
        before = self.change(a, 0)
        after = self.change(a, 1)
        self.crash(a)
        recs, end = snapjournal.records(open(self.journal, "rb").read())
        self.assertGreaterEqual(len(recs), 2)
        # garbage after the last record: ignored, everything before it holds
        with open(self.journal, "ab") as f:
            f.write(b"\x40\x00\x00\x00" + os.urandom(40))
        self.assertEqual(read_disk(self.snap), after)
        # the last record torn (its last 5 bytes never reached the disk): the one before it holds
        with open(self.journal, "r+b") as f:
            f.truncate(end - 5)
        self.assertEqual(read_disk(self.snap), before)
        b, served = self.restart_without_zookeeper()
        self.assertEqual(served, before)
        self.assertIn("ignored", b.log())

    def test_a_journal_naming_another_base_is_never_applied(self):
        a = self.agent().start()
        self.synced(a)
        self.change(a, 0)
        self.crash(a)
        old = open(self.journal, "rb").read()
        # a new agent writes a new base (its first write is always whole) and removes the journal; put the old one
        # back beside it: what a crash between the compaction's rename and the journal's removal leaves
        b = self.agent().start()
        self.change(b, 1)
        wait_until(lambda: b.metric("scout_snapshot_compactions_total") >= 1, what="the new base")
        self.crash(b)
        with open(self.journal, "wb") as f:
            f.write(old)
        self.assertEqual(snapjournal.load(self.snap)[1], "ignored")
        base = read_disk(self.snap)
        c, served = self.restart_without_zookeeper()
        self.assertEqual(served, base)
        self.assertIn("written for another snapshot", c.log())

    def test_a_stopped_agent_leaves_the_base_alone(self):
        # SIGTERM writes the whole file when a journal is on disk: the next start reads one file, no journal
        a = self.agent().start()
        self.synced(a)
        api = self.change(a, 0)
        self.assertTrue(os.path.exists(self.journal))
        self.assertEqual(a.stop(), 0)
        self.assertFalse(os.path.exists(self.journal))
        self.assertEqual(snapjournal.load(self.snap), (open(self.snap, "rb").read(), "none"))
        b, served = self.restart_without_zookeeper()
        self.assertEqual(served, api)

    def test_a_journal_edited_under_the_agent_is_not_copied_into_the_next_base(self):
        # a service appended to the journal is not kept in memory either (the base's are not): the next whole write
        # reads it back from the journal, and bytes that are not what the agent appended there never reach the base
        a = self.agent().start()
        self.synced(a)
        # (the sync itself may have appended: it is a change of this test's that must be in the journal)
        for k in range(20):
            api = self.change(a, k)
            s = k % NSVC
            recs = snapjournal.records(open(self.journal, "rb").read())[0] if os.path.exists(self.journal) else []
            mine = [r for r in recs if b"s%02d" % s in r[3]]
            if mine:
                break
        else:
            self.fail("no change went to the journal")
        off, length, _, _ = mine[-1]            # the service's newest record
        host = b"127.0.%d.1" % s
        with open(self.journal, "r+b") as f:    # in place, the very file the agent appends to; still a valid journal
            data = bytearray(f.read())
            at = data.index(struct.pack("<I", len(host)) + host, off) + 4 + len(host) - 1   # the host, not the id
            data[at:at + 1] = b"9"
            struct.pack_into("<Q", data, off + 4, xxh64(bytes(data[off + 12:off + length])))
            f.seek(0)
            f.write(data)
        self.assertEqual(read_disk(self.snap)["s%02d" % s][1]["127.0.%d.1:1001" % s][0], "127.0.%d.9" % s)
        # SIGTERM writes the whole file (a journal is on disk): from the journal's bytes, checked, so refused and
        # every service encoded again
        self.assertEqual(a.stop(), 0)
        self.assertRegex(a.log(), r"scout\.snapshot\.journal changed under the agent \(the record of \"s%02d\"" % s)
        self.assertFalse(os.path.exists(self.journal))
        self.assertEqual(read_disk(self.snap), api)

    def test_the_journal_is_compacted_into_a_new_base(self):
        a = self.agent().start()
        self.synced(a)
        base_size = os.path.getsize(self.snap)
        # every whole write counts as a compaction, the sync's too (under load the sync can take two): so it is a
        # compaction after the journal was appended to that this waits for, not a number of them
        k = 0
        compactions_at_append = None
        while True:
            api = self.change(a, k)
            k += 1
            self.assertLess(k, 100, "no compaction of a journal after 100 changes")
            if compactions_at_append is None:
                if a.metric("scout_snapshot_journal_appends_total") > 0:
                    compactions_at_append = a.metric("scout_snapshot_compactions_total")
            elif a.metric("scout_snapshot_compactions_total") > compactions_at_append:
                break
        self.assertGreater(a.metric("scout_snapshot_journal_appends_total"), 0)
        # the new base holds every change; the journal, if any, names it and stays under a quarter of it
        hdr = struct.unpack_from("<8sIIQQ", open(self.snap, "rb").read(), 0)
        self.assertGreater(hdr[3] + 32, base_size)
        if os.path.exists(self.journal):
            jh = struct.unpack_from("<8sIIQQ", open(self.journal, "rb").read(), 0)
            self.assertEqual((jh[3], jh[4]), (hdr[3], hdr[4]))
            self.assertLessEqual(os.path.getsize(self.journal), hdr[3] // 4)
        self.crash(a)
        _, served = self.restart_without_zookeeper()
        self.assertEqual(served, api)


if __name__ == "__main__":
    unittest.main()

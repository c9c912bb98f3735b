"""The outputs after many changes across many services: the disk snapshot and the shared-memory snapshot hold
exactly what ZooKeeper holds (endpoints and each service's index), although the agent now encodes a service's
record only when it changed and the writer thread assembles the file from kept records. Every read of the disk
file on the way is a whole, checksummed file ("nothing partial"), and an agent killed (SIGKILL) while changes
flow leaves a valid snapshot that the next agent serves with ZooKeeper down. An unchanged service's record is read
back from the file the agent wrote last, and a file edited under it is never copied forward."""

import json
import os
import random
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import unittest

import snapjournal
from churn import truth
from scoutharness import ROOT, Scout, policy, wait_until
from test_bad_files import xxh64
from zkharness import ZooKeeper

NSVC = 30

SHM_READER = r'''
package.path = "%(root)s/lua/?.lua;%(root)s/lua/?/init.lua;" .. package.path
local shm = require "scout.shm"
local cjson = require "cjson"
local r = assert(shm.open(arg[1]))
local snap = assert(r:read())
local out = {}
for name, s in pairs(snap.services) do
  local eps = {}
  for _, ep in ipairs(s.endpoints) do eps[ep.id] = { ep.host, ep.port, ep.weight } end
  out[name] = { index = tonumber(s.index), eps = eps }
end
print(cjson.encode(out))
'''


def read_disk(path):
    """docs/snapshot.md's reader, the journal beside the file folded in as the agent's readers do
    (snapjournal.py): {name: (index, {id: (host, port, weight)})}; raises on a bad file."""
    data, _ = snapjournal.load(path)
    magic, version, flags, body_len, checksum = struct.unpack_from("<8sIIQQ", data, 0)
    body = data[32:]
    if magic != b"SCOUTSNP" or version != 1 or flags != 0 or len(body) != body_len or xxh64(body) != checksum:
        raise AssertionError("snapshot file not whole: %d of %d body bytes" % (len(body), body_len))
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, body, pos)[0]
        pos += struct.calcsize(fmt)
        return v

    def string():
        nonlocal pos
        n = take("<I")
        pos += n
        return body[pos - n:pos].decode()
    string(), string(), take("<q")
    out = {}
    for _ in range(take("<I")):
        name, _path, index, _pz, _mz = string(), string(), take("<Q"), take("<q"), take("<q")
        eps = {}
        for _ in range(take("<I")):
            id_, host, _status = string(), string(), string()
            port, weight, _zxid = take("<i"), take("<i"), take("<q")
            for _ in range(take("<I")):
                string(), string()
            eps[id_] = (host, port, weight)
        out[name] = (index, eps)
    assert pos == len(body)
    return out


class OutputsChurn(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
        self.kz = self.zk.client()
        self.dir = tempfile.mkdtemp(prefix="scout-outputs-")
        self.cache = os.path.join(self.dir, "cache")
        self.shm = tempfile.mktemp(prefix="scout-outputs-shm-", dir="/dev/shm")
        self.scouts = []
        for s in range(NSVC):
            self.kz.ensure_path(self.path(s))
            for e in range(3):
                self.kz.create("%s/127.0.%d.%d:%d" % (self.path(s), s, e, 1000 + e))

    def tearDown(self):
        for s in self.scouts:
            s.stop(sig=signal.SIGKILL if getattr(s, "crash", False) else signal.SIGTERM)
        self.zk.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        for f in (self.shm, self.shm + ".lua"):
            if os.path.exists(f):
                os.unlink(f)

    @staticmethod
    def path(s):
        return "/oc/s%02d" % s

    def agent(self):
        # declared against name order: the outputs keep their slots in name order, which must not mix services up
        svcs = {"s%02d" % s: 'path = "%s", protect = false' % self.path(s) for s in reversed(range(NSVC))}
        a = Scout(policy(svcs, extra='cache { dir = "%s" }\nshm { path = "%s" }' % (self.cache, self.shm)),
                  self.zk.connect)
        self.scouts.append(a)
        return a

    def churn(self, ops, seed):
        """ops creates, deletes and data changes spread over every service, from three clients at once."""
        errors = []

        def writer(w):
            rnd = random.Random(seed * 10 + w)
            kz = self.zk.client()
            try:
                for i in range(ops // 3):
                    p = self.path(rnd.randrange(NSVC))
                    kids = [k for k in kz.get_children(p) if k.startswith("id-%d-" % w)]
                    r = rnd.random()
                    if kids and r < 0.3:
                        kz.delete("%s/%s" % (p, rnd.choice(kids)))
                    elif kids and r < 0.6:
                        kz.set("%s/%s" % (p, rnd.choice(kids)), self.data(rnd))
                    else:
                        kz.create("%s/id-%d-%d" % (p, w, i), self.data(rnd))
            except Exception as e:  # surfaced by the test
                errors.append(e)
            finally:
                kz.stop()
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    @staticmethod
    def data(rnd):
        return json.dumps({"host": "10.%d.%d.%d" % (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)),
                           "port": rnd.randrange(1, 65535), "weight": rnd.randint(1, 100)}).encode()

    def want(self):
        return {"s%02d" % s: truth(self.kz, self.path(s)) for s in range(NSVC)}

    def api(self, a):
        out = {}
        for s in range(NSVC):
            eps, headers = a.endpoints("s%02d" % s)
            out["s%02d" % s] = (int(headers["X-Scout-Index"]),
                                {ep["id"]: (ep["host"], ep["port"], ep["weight"]) for ep in eps})
        return out

    def read_shm(self):
        env = dict(os.environ, SCOUT_LIB=os.path.join(ROOT, "build", "libscout.so"))
        with open(self.shm + ".lua", "w") as f:
            f.write(SHM_READER % {"root": ROOT})
        p = subprocess.run(["luajit", self.shm + ".lua", self.shm], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, env=env, timeout=30)
        if p.returncode != 0:
            raise ValueError(p.stderr)
        return {name: (s["index"], {i: tuple(v) for i, v in s["eps"].items()})
                for name, s in json.loads(p.stdout).items()}

    def test_snapshots_hold_what_zookeeper_holds_after_churn(self):
        a = self.agent().start()
        wait_until(lambda: all(st["state"] == "synced" for st in a.services().values()), what="first sync")
        self.churn(900, seed=1)
        want = self.want()
        wait_until(lambda: {n: eps for n, (_, eps) in self.api(a).items()} == want, what="the API on the truth")
        api = self.api(a)
        snap = os.path.join(self.cache, "scout.snapshot")
        # the file catches up with the API (index and endpoints, every service); each read on the way is whole
        wait_until(lambda: os.path.exists(snap) and read_disk(snap) == api, timeout=60,
                   what="the disk snapshot on the truth")
        self.assertGreater(a.metric("scout_snapshot_writes_total"), 1)
        wait_until(lambda: self.read_shm() == api, what="the shm snapshot on the truth")
        self.assertEqual(a.metric("scout_snapshot_services_left_out_total"), 0)

        # a last change that only deletes: the child list's zxid moves, no data zxid does; both files follow
        for s in range(NSVC):
            kids = sorted(self.kz.get_children(self.path(s)))
            self.kz.delete("%s/%s" % (self.path(s), kids[0]))
        want = self.want()
        wait_until(lambda: {n: eps for n, (_, eps) in self.api(a).items()} == want, what="the API after the deletes")
        api = self.api(a)
        wait_until(lambda: read_disk(snap) == api, timeout=60, what="the disk snapshot after the deletes")
        wait_until(lambda: self.read_shm() == api, what="the shm snapshot after the deletes")

        # one service alone changes: only its slot is named, and it must be that service's (the slots are in
        # name order, the policy declares them the other way round)
        kids = sorted(self.kz.get_children(self.path(3)))
        self.kz.delete("%s/%s" % (self.path(3), kids[0]))
        want = self.want()
        wait_until(lambda: {n: eps for n, (_, eps) in self.api(a).items()} == want, what="the API after one delete")
        api = self.api(a)
        wait_until(lambda: read_disk(snap) == api, timeout=60, what="the disk snapshot after one delete")
        wait_until(lambda: self.read_shm() == api, what="the shm snapshot after one delete")

    def test_a_snapshot_edited_under_the_agent_is_not_copied_into_the_next(self):
        # an unchanged service's record is not kept in memory but read back from the file the agent wrote last;
        # bytes that are not what it wrote there must never reach the next file: every service is encoded again
        a = self.agent().start()
        wait_until(lambda: all(st["state"] == "synced" for st in a.services().values()), what="first sync")
        snap = os.path.join(self.cache, "scout.snapshot")
        api = self.api(a)
        wait_until(lambda: read_disk(snap) == api, timeout=60, what="the disk snapshot on the first sync")
        with open(snap, "r+b") as f:                    # in place, the very file the agent wrote; still whole
            data = bytearray(f.read())
            at = data.index(struct.pack("<I", 9) + b"127.0.7.1") + 4    # the host, not the id
            data[at:at + 9] = b"127.0.7.9"
            struct.pack_into("<Q", data, 24, xxh64(bytes(data[32:])))
            f.seek(0)
            f.write(data)
        self.assertEqual(read_disk(snap)["s07"][1]["127.0.7.1:1001"][0], "127.0.7.9")
        self.kz.create("%s/127.0.0.9:1009" % self.path(0))
        wait_until(lambda: "127.0.0.9:1009" in self.api(a)["s00"][1], what="the change served")
        api = self.api(a)
        wait_until(lambda: read_disk(snap) == api, timeout=60, what="the disk snapshot after the change")
        self.assertEqual(a.metric("scout_snapshot_read_back_failures_total"), 1)
        self.assertEqual(a.metric("scout_snapshot_write_failures_total"), 0)

    def test_a_kill_while_changes_flow_leaves_a_valid_snapshot(self):
        a = self.agent().start()
        wait_until(lambda: all(st["state"] == "synced" for st in a.services().values()), what="first sync")
        snap = os.path.join(self.cache, "scout.snapshot")
        wait_until(lambda: a.metric("scout_snapshot_writes_total") >= 1, what="a first snapshot write")
        writes = a.metric("scout_snapshot_writes_total")
        t = threading.Thread(target=self.churn, args=(1500, 2))
        t.start()
        try:
            # killed while it writes again: the churn keeps it dirty, the writer busy
            wait_until(lambda: a.metric("scout_snapshot_writes_total") >= writes + 2, timeout=60,
                       what="writes during the churn")
            a.proc.send_signal(signal.SIGKILL)
            a.proc.wait()
        finally:
            t.join()
        a.crash = True
        held = read_disk(snap)                          # whole and checksummed, whatever the kill interrupted
        self.assertEqual(set(held), {"s%02d" % s for s in range(NSVC)})
        self.zk.stop_node(1)
        b = self.agent().start()
        self.assertEqual(self.api(b), held)             # served at once from what the file held
        self.assertEqual(b.state("s00"), "stale")


if __name__ == "__main__":
    unittest.main()

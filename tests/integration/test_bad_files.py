"""Files and paths (issue 11, item 4): the disk snapshot (and a rendered file's old content) is read only when it is
a regular file -- a FIFO at its path used to hang start-up forever before the API opened -- and what is read back is trusted no more than ZooKeeper: a
snapshot with a valid checksum but port 70000, weight -7, status "UP!!" or host "not a host; rm -rf /" has those
endpoints dropped and counted, and the rest served."""

import os
import shutil
import struct
import tempfile
import unittest

from scoutharness import Scout, policy, wait_until
from zkharness import ZooKeeper

M64 = (1 << 64) - 1
P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63,
                      0x27D4EB2F165667C5)


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def _round(acc, v):
    return (_rotl((acc + v * P2) & M64, 31) * P1) & M64


def xxh64(data, seed=0):
    """XXH64 as specified (xxhash's doc/xxhash_spec.md); checked below against a file the agent wrote."""
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + P1 + P2) & M64, (seed + P2) & M64, seed, (seed - P1) & M64]
        while i + 32 <= n:
            for k in range(4):
                v[k] = _round(v[k], struct.unpack_from("<Q", data, i + 8 * k)[0])
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & M64
        for k in range(4):
            h = ((h ^ _round(0, v[k])) * P1 + P4) & M64
    else:
        h = (seed + P5) & M64
    h = (h + n) & M64
    while i + 8 <= n:
        h = (_rotl(h ^ _round(0, struct.unpack_from("<Q", data, i)[0]), 27) * P1 + P4) & M64
        i += 8
    if i + 4 <= n:
        h = (_rotl(h ^ ((struct.unpack_from("<I", data, i)[0] * P1) & M64), 23) * P2 + P3) & M64
        i += 4
    while i < n:
        h = (_rotl(h ^ ((data[i] * P5) & M64), 11) * P1) & M64
        i += 1
    h = ((h ^ (h >> 33)) * P2) & M64
    h = ((h ^ (h >> 29)) * P3) & M64
    return h ^ (h >> 32)


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<I", len(b)) + b


def snapshot(ensemble, services):
    """A version-1 snapshot (docs/snapshot.md): services = [(name, path, [(id, host, status, port, weight)])]."""
    body = _str("scout test") + _str(ensemble) + struct.pack("<QI", 1700000000000, len(services))
    for name, path, eps in sorted(services):
        body += _str(name) + _str(path) + struct.pack("<QQQI", 5, 0, 0, len(eps))
        for id_, host, status, port, weight in sorted(eps):
            body += _str(id_) + _str(host) + _str(status)
            body += struct.pack("<IIQI", port & 0xFFFFFFFF, weight & 0xFFFFFFFF, 0, 0)
    return b"SCOUTSNP" + struct.pack("<IIQQ", 1, 0, len(body), xxh64(body)) + body


class BadFiles(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
        self.kz = self.zk.client()
        self.cache = tempfile.mkdtemp(prefix="scout-bf-")
        self.file = os.path.join(self.cache, "scout.snapshot")
        self.scouts = []

    def tearDown(self):
        for s in self.scouts:
            s.stop()
        self.zk.stop()
        shutil.rmtree(self.cache, ignore_errors=True)

    def agent(self):
        s = Scout(policy({"svc": 'path = "/bf/svc"'}, extra='cache { dir = "%s" }' % self.cache), self.zk.connect)
        self.scouts.append(s)
        return s

    def test_a_fifo_at_the_snapshot_path_is_not_read_and_start_up_goes_on(self):
        self.kz.create("/bf/svc/127.0.0.1:1", makepath=True)
        os.mkfifo(self.file)
        s = self.agent().start()             # waits for the API: it used to hang in open() before it
        self.assertRegex(s.log(), r"ignoring the snapshot: snapshot .*scout\.snapshot: not a regular file \(a FIFO\)")
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:1"], what="synced from ZooKeeper")
        # the first write replaces the FIFO with a snapshot
        wait_until(lambda: s.metric("scout_snapshot_writes_total") >= 1, what="a snapshot written")
        self.assertTrue(os.path.isfile(self.file) and not os.path.islink(self.file))

    def test_a_fifo_at_a_rendered_file_is_replaced_not_read(self):
        self.kz.create("/bf/svc/127.0.0.1:1", makepath=True)
        dest = os.path.join(self.cache, "out.txt")
        os.mkfifo(dest)
        extra = ('cache { dir = "%s" }\nrender { dest = "%s", wait = { min = "10ms", max = "100ms" },\n'
                 '  template = function(v) return "n=" .. #v.svc .. "\\n" end }' % (self.cache, dest))
        s = Scout(policy({"svc": 'path = "/bf/svc"'}, extra=extra), self.zk.connect)
        self.scouts.append(s)
        s.start()                            # the loop reading the FIFO would never answer
        wait_until(lambda: os.path.isfile(dest) and open(dest).read() == "n=1\n", what="rendered over the FIFO")

    def test_a_symlink_at_the_snapshot_path_is_not_followed(self):
        target = os.path.join(self.cache, "elsewhere")
        with open(target, "wb") as f:
            f.write(snapshot("x", []))
        os.symlink(target, self.file)
        s = self.agent().start()
        self.assertIn("is a symbolic link; not followed", s.log())

    def test_invalid_endpoints_in_a_checksummed_snapshot_are_dropped_and_counted(self):
        # the checksum code here is checked against a snapshot the agent wrote itself
        self.kz.create("/bf/svc/127.0.0.1:1", makepath=True)
        first = self.agent().start()
        wait_until(lambda: first.ids("svc") == ["127.0.0.1:1"], what="first agent synced")
        self.assertEqual(first.stop(), 0)
        with open(self.file, "rb") as f:
            written = f.read()
        self.assertEqual(struct.unpack_from("<Q", written, 24)[0], xxh64(written[32:]))
        ensemble = written[32 + 4 + struct.unpack_from("<I", written, 32)[0]:]
        ensemble = ensemble[4:4 + struct.unpack_from("<I", ensemble, 0)[0]].decode()

        with open(self.file, "wb") as f:
            f.write(snapshot(ensemble, [("svc", "/bf/svc", [
                ("good", "10.0.0.1", "up", 80, 1),
                ("port-high", "10.0.0.2", "up", 70000, 1),
                ("port-neg", "10.0.0.3", "up", -1, 1),
                ("weight-neg", "10.0.0.4", "up", 80, -7),
                ("status", "10.0.0.5", "UP!!", 80, 1),
                ("host", "not a host; rm -rf /", "up", 80, 1),
            ])]))
        self.zk.stop_node(1)                 # the snapshot is all the agent has
        second = self.agent().start()
        self.assertEqual(second.ids("svc"), ["good"])
        self.assertEqual(second.state("svc"), "stale")
        self.assertEqual(second.metric("scout_service_rejected_total", "svc"), 5)
        self.assertRegex(second.log(), r"service svc: dropped 5 invalid endpoints, serving the other 1")


if __name__ == "__main__":
    unittest.main()

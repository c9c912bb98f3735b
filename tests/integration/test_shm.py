"""The shared-memory snapshot as an nginx worker sees it: the agent publishes every change into a file, and the
LuaJIT FFI reader (lua/scout/shm.lua over build/libscout.so) reads the same endpoints, states and settings the
API shows, with the generation moving forward on each change. Format version 2 (docs/shm.md): a change hashes
only the 64 KB chunks it rewrote (scout_shm_chunks_hashed_total), `shm { format = 1 }` still writes version 1,
and docs/shm.md's own Python reader reads both and refuses a scribbled chunk."""

import ctypes
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import types
import unittest

from scoutharness import ROOT, Scout, policy, wait_until
from zkharness import SharedZooKeeper

READER = r'''
package.path = "%(root)s/lua/?.lua;%(root)s/lua/?/init.lua;" .. package.path
local shm = require "scout.shm"
local cjson = require "cjson"
local r = assert(shm.open(arg[1]))
local snap = assert(r:read())
local out = { generation = tonumber(snap.generation), services = {} }
for name, s in pairs(snap.services) do
  local ids = {}
  for i, ep in ipairs(s.endpoints) do ids[i] = ep.id .. "=" .. ep.host .. ":" .. ep.port .. "/" .. ep.weight end
  out.services[name] = { state = s.state, index = tonumber(s.index), ids = ids, settings = s.settings }
end
print(cjson.encode(out))
'''


def docs_reader():
    """read_snapshot() from docs/shm.md's "A reader in Python", run as a user would paste it. Its xxhash is
    python3-xxhash when installed, else the same XXH3-64 from libxxhash (libxxhash-dev, which the build needs)
    through ctypes."""
    with open(os.path.join(ROOT, "docs", "shm.md")) as f:
        text = f.read()
    code = text.split("## A reader in Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    try:
        import xxhash  # noqa: F401
    except ImportError:
        lib = ctypes.CDLL("libxxhash.so.0")
        lib.XXH3_64bits.restype = ctypes.c_uint64
        lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        fake = types.ModuleType("xxhash")
        fake.xxh3_64_intdigest = lambda b: lib.XXH3_64bits(bytes(b), len(b))
        sys.modules["xxhash"] = fake
    ns = {}
    exec(compile(code, "docs/shm.md", "exec"), ns)
    return ns["read_snapshot"]


def shm_geometry(path):
    """(version, chunk_size, current slot's offset, its body length) of a snapshot file (docs/shm.md)."""
    with open(path, "rb") as f:
        data = f.read()
    version, header_size, gen, slot_size = struct.unpack_from("<IIQQ", data, 8)
    chunk = struct.unpack_from("<I", data, 48)[0]
    slot = header_size + (gen & 1) * slot_size
    return version, chunk, slot, struct.unpack_from("<Q", data, slot + 8)[0]


class Shm(unittest.TestCase):
    def setUp(self):
        self.zk = SharedZooKeeper().start()     # an empty tree on the pass's one server (zkharness)
        self.kz = self.zk.client()
        self.path = tempfile.mktemp(prefix="scout-shm-test-", dir="/dev/shm")
        self.scout = None

    def tearDown(self):
        if self.scout:
            self.scout.stop()
        self.zk.stop()
        for f in (self.path, self.path + ".lua"):
            if os.path.exists(f):
                os.unlink(f)

    def read(self):
        env = dict(os.environ, SCOUT_LIB=os.path.join(ROOT, "build", "libscout.so"))
        script = self.path + ".lua"
        with open(script, "w") as f:
            f.write(READER % {"root": ROOT})
        p = subprocess.run(["luajit", script, self.path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, env=env, timeout=30)
        if p.returncode != 0:
            raise ValueError(p.stderr)
        return json.loads(p.stdout)

    def test_readers_see_what_the_api_shows(self):
        self.kz.ensure_path("/shm/svc")
        self.kz.create("/shm/svc/127.0.0.1:1")
        self.kz.create("/shm/svc/id-2", b'{"host":"10.0.0.2","port":2,"weight":7}')
        self.scout = s = Scout(policy({"svc": 'path = "/shm/svc", selector = "chash", route = { { tag = true } }',
                                       "later": 'path = "/shm/later"'},
                                      extra='shm { path = "%s" }' % self.path), self.zk.connect).start()
        want = ["127.0.0.1:1=127.0.0.1:1/1", "id-2=10.0.0.2:2/7"]
        snap = wait_until(lambda: (lambda r: r if r["services"].get("svc", {}).get("ids") == want
                                   and r["services"].get("later", {}).get("state") == "synced" else None)(
            self.read()), what="the snapshot in shared memory")
        svc = snap["services"]["svc"]
        self.assertEqual(svc["state"], "synced")
        self.assertEqual(svc["index"], int(s.endpoints("svc")[1]["X-Scout-Index"]))
        self.assertEqual(json.loads(svc["settings"]),
                         {"selector": "chash", "selector_options": None, "route": [{"tag": True}]})
        self.assertFalse(snap["services"]["later"]["ids"])   # known service, no endpoints (yet)
        self.assertEqual(snap["services"]["later"]["state"], "synced")

        gen = snap["generation"]
        self.kz.delete("/shm/svc/127.0.0.1:1")
        snap2 = wait_until(lambda: (lambda r: r if r["services"]["svc"]["ids"] == want[1:] else None)(self.read()),
                           what="the change in shared memory")
        self.assertGreater(snap2["generation"], gen)
        self.assertEqual(s.ids("svc"), ["id-2"])

    def test_a_change_is_copied_around_what_the_service_says_changed(self):
        # issue 14: a changed service's slice is made from its last one, told by the service which ids it put or
        # deleted since; every other endpoint is copied without a look. Each change must reach the readers (an id
        # left out would leave its old record there) and encode its own endpoints only (a log kept past the slice
        # it was taken for would encode the last change's again)
        self.kz.ensure_path("/shm/many")
        for p in range(20):
            self.kz.create("/shm/many/ep-%02d" % p, self.ep(p, 1))
        self.scout = s = Scout(policy({"many": 'path = "/shm/many"'}, extra='shm { path = "%s" }' % self.path),
                               self.zk.connect).start()
        want = ["ep-%02d=10.0.0.%d:80/1" % (p, p) for p in range(20)]
        wait_until(lambda: (lambda m: m.get("ids") == want and m.get("state") == "synced")(
            self.read()["services"].get("many", {})), what="the list in shared memory")
        steps = [("set", 3, 5), ("set", 11, 7), ("delete", 15, 0), ("create", 21, 2), ("set", 0, 9)]
        for op, p, w in steps:
            known, encoded = s.metric("scout_shm_slices_known_total"), s.metric("scout_shm_endpoints_encoded_total")
            path = "/shm/many/ep-%02d" % p
            if op == "delete":
                self.kz.delete(path)
                want = [i for i in want if not i.startswith("ep-%02d=" % p)]
            else:
                getattr(self.kz, op)(path, self.ep(p, w))
                want = sorted([i for i in want if not i.startswith("ep-%02d=" % p)]
                              + ["ep-%02d=10.0.0.%d:80/%d" % (p, p, w)])
            wait_until(lambda: self.read()["services"]["many"]["ids"] == want, what="%s %s in shm" % (op, path))
            self.assertEqual(s.metric("scout_shm_slices_known_total") - known, 1, (op, p))
            self.assertEqual(s.metric("scout_shm_endpoints_encoded_total") - encoded, 0 if op == "delete" else 1,
                             (op, p))
        self.assertEqual(s.ids("many"), [i.split("=")[0] for i in want])

    @staticmethod
    def ep(p, weight):
        return json.dumps({"host": "10.0.0.%d" % p, "port": 80, "weight": weight}).encode()

    def test_a_state_change_without_a_publish_reaches_readers(self):
        # protection holds a mass deletion: the list (and so the index) stays, only the state moves to "protected";
        # readers learn it although the service published nothing and no other service exists to publish
        self.kz.ensure_path("/shm/held")
        for p in range(10):
            self.kz.create("/shm/held/127.0.0.1:%d" % (7000 + p))
        self.scout = s = Scout(policy({"held": 'path = "/shm/held", protect = { min_ratio = 0.5, confirm = 3, '
                                               'confirm_interval = "1h", hold = "2h" }'},
                                      extra='shm { path = "%s" }' % self.path), self.zk.connect).start()
        wait_until(lambda: len(self.read()["services"].get("held", {}).get("ids") or []) == 10,
                   what="the full list in shared memory")
        index = int(s.endpoints("held")[1]["X-Scout-Index"])
        t = self.kz.transaction()                   # one drop, in one read: nothing of it is published
        for p in range(8):
            t.delete("/shm/held/127.0.0.1:%d" % (7000 + p))
        self.assertTrue(all(r is True for r in t.commit()))
        wait_until(lambda: s.state("held") == "protected", what="the API says protected")
        snap = wait_until(lambda: (lambda r: r if r["services"]["held"]["state"] == "protected" else None)(
            self.read()), what="readers see protected")
        self.assertEqual(len(snap["services"]["held"]["ids"]), 10)     # the list stands
        self.assertEqual(snap["services"]["held"]["index"], index)      # nothing was published

    def test_a_service_its_policy_fails_on_does_not_hold_an_adopted_snapshot(self):
        # The next agent adopts the file and writes nothing over the last agent's snapshot until each service has
        # something to say. One whose filter never returns (its whole update stopped by the budget, again and
        # again) has nothing better to say later, and must not keep the other services' changes from the readers.
        self.kz.create("/adopt/good/127.0.0.1:1", makepath=True)
        self.kz.create("/adopt/bad/127.0.0.1:2", makepath=True)
        services = {"good": 'path = "/adopt/good"', "bad": 'path = "/adopt/bad"'}
        first = Scout(policy(services, extra='shm { path = "%s" }' % self.path), self.zk.connect).start()
        wait_until(lambda: (lambda r: r if r["services"].get("bad", {}).get("ids") else None)(self.read()),
                   what="the first agent's snapshot")
        self.assertEqual(first.stop(), 0)
        services["bad"] = 'path = "/adopt/bad", filter = function(ep) while true do end end'
        self.scout = s = Scout(policy(services, extra='agent { hook_budget = 50 }\nshm { path = "%s" }' % self.path),
                               self.zk.connect).start()
        wait_until(lambda: s.metric("scout_hook_timeouts_total") > 0, what="bad's update stopped by its budget")
        self.kz.create("/adopt/good/127.0.0.1:3")
        wait_until(lambda: s.ids("good") == ["127.0.0.1:1", "127.0.0.1:3"], what="the change in the API")
        snap = wait_until(lambda: (lambda r: r if len(r["services"]["good"]["ids"]) == 2 else None)(self.read()),
                          what="the change in shared memory")
        self.assertNotEqual(snap["services"]["bad"]["state"], "synced")

    # 40 services of 2 endpoints carrying a 16 KB meta value each: a ~1.3 MB body, 20 chunks of 64 KB
    BLOB = "b" * 16000

    def chunky(self, fmt=""):
        for i in range(40):
            for e in range(2):
                self.kz.create("/chunks/s%02d/ep-%d" % (i, e), self.ep_data(i, e, 10), makepath=True)
        services = {"s%02d" % i: 'path = "/chunks/s%02d"' % i for i in range(40)}
        self.scout = Scout(policy(services, extra='shm { path = "%s"%s }' % (self.path, fmt)),
                           self.zk.connect).start()
        return wait_until(lambda: (lambda r: r if len(r["services"]) == 40 and all(
            len(v["ids"]) == 2 for v in r["services"].values()) else None)(self.read()), what="every service in shm")

    def ep_data(self, i, e, weight):
        return json.dumps({"host": "10.0.%d.%d" % (i, e), "port": 80, "weight": weight,
                           "meta": {"blob": self.BLOB}}).encode()

    def change(self, i, weight):
        """Endpoint 0 of service i gets weight (two digits: every string keeps its length); the reader's snapshot
        once it shows it."""
        self.kz.set("/chunks/s%02d/ep-0" % i, self.ep_data(i, 0, weight))
        want = "ep-0=10.0.%d.0:80/%d" % (i, weight)
        return wait_until(lambda: (lambda r: r if r["services"]["s%02d" % i]["ids"][0] == want else None)(
            self.read()), what="weight %d in shm" % weight)

    def test_a_change_hashes_only_the_chunks_it_rewrote(self):
        s = self.chunky()
        version, chunk, _, n = shm_geometry(self.path)
        self.assertEqual((version, chunk), (2, 65536))
        nchunks = (n + chunk - 1) // chunk
        self.assertGreaterEqual(nchunks, 19)
        # three changes: the file has grown once, and each slot is then written in place from what it held
        for k, i in enumerate((3, 17, 29)):
            s = self.change(i, 11 + k)
        before, gen = self.scout.metric("scout_shm_chunks_hashed_total"), s["generation"]
        self.assertGreater(before, 0)
        for k, i in enumerate((8, 33)):
            s = self.change(i, 21 + k)
        # the counter moves before the generation readers just saw: it holds every chunk those generations hashed
        hashed, gens = self.scout.metric("scout_shm_chunks_hashed_total") - before, s["generation"] - gen
        self.assertGreaterEqual(gens, 2)
        # a generation rewrites the services changed since its slot's body (two generations back: this change's
        # and the last one's): their records (all in chunk 0 here, with the generation) and 32 KB of strings each
        # (a chunk or two): at most 5 chunks, not the body's 20
        self.assertLessEqual(hashed, 5 * gens, "%d chunks hashed in %d generations of %d chunks"
                             % (hashed, gens, nchunks))

        # docs/shm.md's reader reads the same file
        g, out = docs_reader()(self.path)
        self.assertGreaterEqual(g, s["generation"])
        self.assertEqual(len(out), 40)
        self.assertEqual(out["s33"]["endpoints"][0]["weight"], 22)
        self.assertEqual(out["s33"]["endpoints"][0]["meta"], {"blob": self.BLOB})

    def test_a_scribbled_chunk_is_refused_by_the_docs_reader(self):
        self.chunky()
        version, chunk, slot, n = shm_geometry(self.path)
        copy = self.path + ".copy"
        shutil.copyfile(self.path, copy)            # the agent's own file stays whole
        try:
            read_snapshot = docs_reader()
            self.assertEqual(len(read_snapshot(copy)[1]), 40)
            with open(copy, "r+b") as f:
                at = slot + 64 + 5 * chunk + 1000    # a byte of a meta value, in the sixth chunk
                f.seek(at)
                b = f.read(1)
                f.seek(at)
                f.write(bytes([b[0] ^ 0x20]))
            with self.assertRaisesRegex(RuntimeError, "torn, retry"):
                read_snapshot(copy)
        finally:
            os.unlink(copy)

    def test_format_1_writes_version_1_for_older_readers(self):
        self.chunky(fmt=", format = 1")
        self.assertEqual(shm_geometry(self.path)[:2], (1, 0))
        s = self.change(5, 42)                       # the Lua reader (libscout) reads version 1
        g, out = docs_reader()(self.path)
        self.assertEqual(g, s["generation"])
        self.assertEqual(out["s05"]["endpoints"][0]["weight"], 42)
        self.assertIn("scout_shm_chunks_hashed_total", self.scout.metrics())
        self.assertEqual(self.scout.metric("scout_shm_chunks_hashed_total"), 0)


if __name__ == "__main__":
    unittest.main()

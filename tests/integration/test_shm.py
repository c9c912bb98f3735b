"""The shared-memory snapshot as an nginx worker sees it: the agent publishes every change into a file, and the
LuaJIT FFI reader (lua/scout/shm.lua over build/libscout.so) reads the same endpoints, states and settings the
API shows, with the generation moving forward on each change."""

import json
import os
import subprocess
import tempfile
import unittest

from scoutharness import ROOT, Scout, policy, wait_until
from zkharness import ZooKeeper

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


class Shm(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
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


if __name__ == "__main__":
    unittest.main()

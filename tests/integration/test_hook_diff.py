"""What on_change is handed for a removed endpoint, under a service whose endpoints live in C between changes
(scout.keep): the removed endpoint and svc.endpoints are made again from C's published set (policy/endpoint_lua.c
stores their fields under names kept in the registry). The hook must see every field as it was published: id,
host, port, weight, status, zxid (the node's mzxid) and meta, and the list after the change."""

import json
import os
import shutil
import tempfile
import unittest

from scoutharness import Scout, wait_until
from zkharness import SharedZooKeeper

# A module with the real globals (a policy may not open files): one JSON line per removed endpoint, with the list
# the hook's view gives after the change.
MODULE = '''local json = require "cjson"
local out = assert(io.open(assert(os.getenv("SCOUT_HOOK_DIFF_OUT")), "w"))
local M = {}
local function plain(ep)
  local meta = {}
  for k, v in pairs(ep.meta) do meta[k] = v end
  return { id = ep.id, host = ep.host, port = ep.port, weight = ep.weight, status = ep.status, zxid = ep.zxid,
           meta = meta }
end
function M.on_change(svc, diff)
  for _, ep in ipairs(diff.removed) do
    local after = {}
    for k, e in ipairs(svc.endpoints) do after[k] = plain(e) end
    out:write(json.encode({ removed = plain(ep), after = after }), "\\n")
  end
  out:flush()
end
return M
'''

POLICY = '''zookeeper { servers = "127.0.0.1:1", session_timeout = 4000 }
local hookdiff = require "hookdiff"
service "svc" { path = "/hd/svc", codec = "plain", on_change = hookdiff.on_change }
'''


class HookDiff(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="scout-hookdiff-")
        cls.out = os.path.join(cls.tmp, "diff.jsonl")
        with open(os.path.join(cls.tmp, "hookdiff.lua"), "w") as f:
            f.write(MODULE)
        cls.zk = SharedZooKeeper().start()
        cls.kz = cls.zk.client()
        cls.kz.ensure_path("/hd/svc")
        cls.kz.create("/hd/svc/127.0.0.1:1")
        saved = {k: os.environ.get(k) for k in ("LUA_PATH", "SCOUT_HOOK_DIFF_OUT")}
        os.environ["LUA_PATH"] = cls.tmp + "/?.lua;;"
        os.environ["SCOUT_HOOK_DIFF_OUT"] = cls.out
        try:
            cls.scout = Scout(POLICY, cls.zk.connect).start()
        finally:
            for k, v in saved.items():
                if v is None:
                    del os.environ[k]
                else:
                    os.environ[k] = v
        wait_until(lambda: cls.scout.ids("svc") == ["127.0.0.1:1"], what="initial list")

    @classmethod
    def tearDownClass(cls):
        cls.scout.stop()
        cls.zk.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def lines(self):
        with open(self.out) as f:
            return [json.loads(ln) for ln in f if ln.strip()]

    def test_a_removed_endpoint_reaches_the_hook_as_it_was_published(self):
        s = self.scout
        data = {"host": "10.1.2.3", "port": 8081, "weight": 7, "status": "up", "meta": {"zone": "a", "v": "2"}}
        self.kz.create("/hd/svc/ep-1", json.dumps(data).encode())
        self.kz.create("/hd/svc/127.0.0.1:2")
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:1", "127.0.0.1:2", "ep-1"], what="three published")
        _, stat = self.kz.get("/hd/svc/ep-1")
        before = len(self.lines())
        self.kz.delete("/hd/svc/ep-1")
        wait_until(lambda: len(self.lines()) > before, what="the hook's line for ep-1")
        line = self.lines()[before]
        self.assertEqual(line["removed"], {"id": "ep-1", "host": "10.1.2.3", "port": 8081, "weight": 7,
                                           "status": "up", "zxid": stat.mzxid, "meta": {"zone": "a", "v": "2"}})
        # the view after the change: the two others, as published (a name-only child's zxid is not its mzxid)
        self.assertEqual([(e["id"], e["host"], e["port"], e["weight"], e["status"]) for e in line["after"]],
                         [("127.0.0.1:1", "127.0.0.1", 1, 1, "up"), ("127.0.0.1:2", "127.0.0.1", 2, 1, "up")])
        self.assertEqual([e["meta"] for e in line["after"]], [{}, {}])
        self.kz.delete("/hd/svc/127.0.0.1:2")
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:1"], what="back to start")


if __name__ == "__main__":
    unittest.main()

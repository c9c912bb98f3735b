"""scout's own Lua runs from the bytecode built with the agent only while the file on disk is the source it came
from: an agent started on an unchanged copy of lua/ loads its modules from bytecode, and one started on a copy with
edited modules runs the edits (those parsed from source, the others still from bytecode), whether the module is
loaded before the sandbox hardens the VM (runtime.lua) or after, through its searcher (the codec). `/metrics`:
`scout_lua_modules_bytecode_total`, `scout_lua_modules_source_total`."""

import os
import shutil
import tempfile
import unittest

from scoutharness import ROOT, Scout, ZkCase, policy, wait_until

MARK = 'local agent = package.loaded["scout.agent"]\n'
EDIT = MARK + 'if agent then agent.log(2, "the edited runtime.lua runs") end\n'
LATE = 'do local a = package.loaded["scout.agent"]; if a then a.log(2, "the edited codec/plain.lua runs") end end\n'


class OwnLua(ZkCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="scout-it-luabc-")
        self.lua = os.path.join(self.dir, "lua")
        shutil.copytree(os.path.join(ROOT, "lua"), self.lua)
        self.kz.ensure_path("/luabc/svc/127.0.0.1:7000")
        self.scout = None

    def tearDown(self):
        if self.scout is not None:
            self.scout.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self):
        self.scout = Scout(policy({"svc": 'path = "/luabc/svc"'}), self.zk.connect,
                           extra_args=("--lua-dir", self.lua)).start()
        wait_until(lambda: self.scout.health()[0] == 200, what="health 200")
        return self.scout

    def test_unchanged_lua_loads_from_bytecode(self):
        s = self.start()
        self.assertEqual(s.ids("svc"), ["127.0.0.1:7000"])
        self.assertGreaterEqual(s.metric("scout_lua_modules_bytecode_total"), 10)
        self.assertEqual(s.metric("scout_lua_modules_source_total"), 0)
        self.assertNotIn("the edited runtime.lua runs", s.log())

    def test_edited_modules_run_as_edited(self):
        path = os.path.join(self.lua, "scout", "runtime.lua")
        with open(path) as f:
            text = f.read()
        self.assertEqual(text.count(MARK), 1)
        with open(path, "w") as f:
            f.write(text.replace(MARK, EDIT))
        path = os.path.join(self.lua, "scout", "codec", "plain.lua")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(LATE + text)
        s = self.start()
        self.assertEqual(s.ids("svc"), ["127.0.0.1:7000"])
        self.assertIn("the edited runtime.lua runs", s.log())
        self.assertIn("the edited codec/plain.lua runs", s.log())
        self.assertEqual(s.metric("scout_lua_modules_source_total"), 2)
        self.assertGreaterEqual(s.metric("scout_lua_modules_bytecode_total"), 10)


if __name__ == "__main__":
    unittest.main()

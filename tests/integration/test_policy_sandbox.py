"""A policy cannot block, exit or blow up the agent (issue 10, item 3).

scout is one thread: a filter that ran os.execute("sleep 15"), os.exit(7), string.rep("x", 1.5e9) or jit.on() and a
loop used to expire the ZooKeeper session (every registration gone), kill the agent, or take gigabytes. Each attack
here is reached at run time in a way `scout check` cannot see (a computed field name, or a module the policy
requires, which runs with the real globals), against a real ZooKeeper, a registration and a 10 s session: the hook
is stopped and logged with file:line and counted, the session and the registration stay, health answers, the last
good list stands. scout.exec, the asynchronous replacement, delivers its result on the loop.

The session is 10 s (a 500 ms tick lets the server grant it), not 4 s: a hook's 1000 ms CPU budget may take up to
4 x 1000 + 1000 ms of wall clock, and filling the 64 MB heap (0.3 s of CPU) took 2.6-3.5 s of wall clock with the
host at load 16; with 4 s the session expired there and every later test of the class failed with it.
"""

import os
import shutil
import signal
import tempfile
import unittest

from scoutharness import Scout, wait_until
from zkharness import SharedZooKeeper, ZooKeeper

MODULE = '''-- a module a policy requires: it runs with the real globals, which the agent has hardened too
local M = {}
function M.jit_loop()
  jit.on()
  while true do end
end
function M.execute() local rc = os.execute("sleep 15"); return rc end
return M
'''

POLICY = '''zookeeper { servers = "127.0.0.1:1", session_timeout = 10000 }
agent { hook_budget = 1000, lua_memory = "64MB" }
local mod = require "sbmod"
-- (the filter's line numbers below are named by the tests)
register "me" { path = "/sb/reg", endpoint = { host = "127.0.0.1", port = 7000 } }
service "svc" {
  path = "/sb/svc",
  filter = function(ep)
    local b = ep.meta.boom
    if b == "execute" then os["exe" .. "cute"]("sleep 15") end
    if b == "exit" then os["ex" .. "it"](7) end
    if b == "rep" then local s = string.rep("x", 1.5e9); return #s > 0 end
    if b == "rep100" then local s = string.rep("y", 100e6); return #s > 0 end
    if b == "store" then local t = {}; for k = 1, 1000 do t[k] = string.rep("z", 4e6) .. k end end
    if b == "jit" then mod.jit_loop() end
    if b == "modexec" then mod.execute() end
    if b == "jitenv" then jit["o" .. "n"](); while true do end end
    if b == "exec" then
      scout.exec("echo out-$((40 + 2)); exit 3", { timeout = "5s" }, function(ok, out, code)
        print(string.format("exec done ok=%s out=%s code=%s", tostring(ok), out:gsub("%s+$", ""), tostring(code)))
      end)
    end
    if b == "exec-timeout" then
      scout.exec("sleep 30", { timeout = "300ms" }, function(ok, out, code, err)
        print(string.format("exec timeout ok=%s code=%s err=%s", tostring(ok), tostring(code), tostring(err)))
      end)
    end
    if b == "exec-cb-error" then
      scout.exec("true", {}, function() error("callback broke") end)
    end
    return true
  end,
}
'''


class PolicySandbox(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = ZooKeeper(tick=500).start()     # sessions up to 20 ticks: 10 s
        cls.kz = cls.zk.client()
        cls.kz.ensure_path("/sb/svc")
        cls.kz.ensure_path("/sb/reg")
        cls.kz.create("/sb/svc/127.0.0.1:1")
        cls.moddir = tempfile.mkdtemp(prefix="scout-sbmod-")
        with open(os.path.join(cls.moddir, "sbmod.lua"), "w") as f:
            f.write(MODULE)
        old = os.environ.get("LUA_PATH")
        os.environ["LUA_PATH"] = cls.moddir + "/?.lua;;"
        try:
            cls.scout = Scout(POLICY, cls.zk.connect).start()
        finally:
            if old is None:
                del os.environ["LUA_PATH"]
            else:
                os.environ["LUA_PATH"] = old
        wait_until(lambda: cls.scout.ids("svc") == ["127.0.0.1:1"], what="initial list")
        assert "(timeout 10000 ms)" in cls.scout.log(), "the server did not grant the 10 s session"
        wait_until(lambda: cls.kz.get_children("/sb/reg"), what="registration")
        cls.reg = "/sb/reg/" + cls.kz.get_children("/sb/reg")[0]
        cls.owner = cls.kz.exists(cls.reg).ephemeralOwner
        # every change of the registration's parent is recorded: it must never lose its child
        cls.reg_events = []
        cls.kz.ChildrenWatch("/sb/reg", lambda kids: cls.reg_events.append(list(kids)))

    @classmethod
    def tearDownClass(cls):
        cls.scout.stop()
        cls.zk.stop()
        shutil.rmtree(cls.moddir, ignore_errors=True)

    def assert_unharmed(self):
        s = self.scout
        self.assertTrue(s.alive(), s.log()[-2000:])
        self.assertEqual(s.request("/v1/health")[0], 200)
        stat = self.kz.exists(self.reg)
        self.assertIsNotNone(stat, "the registration disappeared")
        self.assertEqual(stat.ephemeralOwner, self.owner, "the session was replaced")
        self.assertTrue(all(self.reg_events), "the registration was gone for a while: %r" % self.reg_events)
        self.assertEqual(s.metric("scout_zk_session_expirations_total"), 0)

    def forget(self, path):
        """Deletes path if a test left it (a cleanup: gone already is fine)."""
        if self.kz.exists(path):
            self.kz.delete(path)

    def poison(self, kind, counter):
        """A child whose filter call attacks: the counter moves, only that child is held (the other change is
        published, the service says degraded), nothing else is harmed, and all is well once it is gone."""
        s = self.scout
        before = s.metric(counter)
        node = "/sb/svc/poison-" + kind
        # the class shares one agent and one tree: a test that fails half-way must not leave its children to the
        # next one (NodeExistsError there would hide the first failure's cause behind a cascade)
        for left in (node, "/sb/svc/127.0.0.1:2"):
            self.addCleanup(self.forget, left)
        self.kz.create(node, b'{"host":"10.9.9.9","port":9,"meta":{"boom":"%s"}}' % kind.encode())
        self.kz.create("/sb/svc/127.0.0.1:2")
        try:
            wait_until(lambda: s.metric(counter) > before, what="%s counted" % counter)
        except AssertionError:
            raise AssertionError("%s did not move; log:\n%s" % (counter, s.log()[-3000:]))
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:1", "127.0.0.1:2"], what="the other child published")
        status, body = s.health()
        self.assertEqual(status, 503)
        self.assertIn("poison-" + kind, body["reason"])
        self.assertEqual(s.state("svc"), "degraded")
        self.kz.delete(node)
        self.kz.delete("/sb/svc/127.0.0.1:2")
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:1"] and s.health()[0] == 200, what="back to start")
        self.assert_unharmed()

    def test_os_execute_is_refused(self):
        self.poison("execute", "scout_hook_refused_total")
        self.assertRegex(self.scout.log(), r"policy\.lua:10: os\.execute is not available in a policy: "
                                           r"use scout\.exec\(cmd, opts, callback\)")

    def test_os_exit_is_refused(self):
        self.poison("exit", "scout_hook_refused_total")
        self.assertRegex(self.scout.log(), r"policy\.lua:11: os\.exit is not available in a policy")

    def test_a_huge_string_is_stopped_at_the_heap_cap(self):
        self.poison("rep", "scout_hook_memory_errors_total")
        self.assertRegex(self.scout.log(), r"policy\.lua:12: not enough memory: the policy's Lua heap reached its cap")

    def test_the_heap_cap_is_the_policys(self):
        # 100 MB fits the default 512 MB cap: only agent { lua_memory = "64MB" } stops it
        self.poison("rep100", "scout_hook_memory_errors_total")
        self.assertRegex(self.scout.log(), r"policy\.lua:13: not enough memory")

    def test_a_growing_heap_is_stopped_and_the_agent_goes_on(self):
        # a filter that keeps what it builds: stopped at the cap, its garbage collected, later calls work
        self.poison("store", "scout_hook_memory_errors_total")
        self.assertRegex(self.scout.log(), r"policy\.lua:14: not enough memory")
        self.assertLessEqual(self.scout.metric("scout_lua_memory_bytes"), 64 * 1024 * 1024)

    def test_jit_on_in_a_module_is_refused_so_the_loop_never_runs(self):
        self.poison("jit", "scout_hook_refused_total")
        self.assertRegex(self.scout.log(), r"sbmod\.lua:4: jit\.on is not available in a policy")

    def test_jit_on_in_the_policy_is_refused(self):
        self.poison("jitenv", "scout_hook_refused_total")
        self.assertRegex(self.scout.log(), r"policy\.lua:17: jit\.on is not available in a policy")

    def test_os_execute_in_a_module_is_refused(self):
        self.poison("modexec", "scout_hook_refused_total")
        self.assertRegex(self.scout.log(), r"sbmod\.lua:7: os\.execute is not available in a policy")

    def test_scout_exec_delivers_its_result_on_the_loop(self):
        s = self.scout
        self.addCleanup(self.forget, "/sb/svc/exec-1")
        self.kz.create("/sb/svc/exec-1", b'{"host":"10.9.9.8","port":8,"meta":{"boom":"exec"}}')
        wait_until(lambda: "exec done" in s.log(), what="exec callback")
        self.assertIn("exec done ok=false out=out-42 code=3", s.log())
        self.kz.delete("/sb/svc/exec-1")
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:1"], what="back to start")
        self.assert_unharmed()

    def test_scout_exec_kills_a_command_at_its_timeout_while_the_agent_serves(self):
        s = self.scout
        self.addCleanup(self.forget, "/sb/svc/exec-2")
        self.kz.create("/sb/svc/exec-2", b'{"host":"10.9.9.7","port":7,"meta":{"boom":"exec-timeout"}}')
        # the filter returned at once: the endpoint is published while the command still runs
        wait_until(lambda: "exec-2" in s.ids("svc"), what="published before the command ends")
        self.assertNotIn("exec timeout", s.log())
        wait_until(lambda: "exec timeout" in s.log(), what="exec timeout callback")
        self.assertIn("exec timeout ok=false code=nil err=timeout", s.log())
        self.kz.delete("/sb/svc/exec-2")
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:1"], what="back to start")
        self.assert_unharmed()

    def test_a_failing_exec_callback_is_logged_with_its_line_and_counted(self):
        s = self.scout
        before = s.metric("scout_hook_errors_total")
        self.addCleanup(self.forget, "/sb/svc/exec-3")
        self.kz.create("/sb/svc/exec-3", b'{"host":"10.9.9.6","port":6,"meta":{"boom":"exec-cb-error"}}')
        wait_until(lambda: "scout.exec callback" in s.log(), what="callback error logged")
        self.assertRegex(s.log(), r"scout\.exec callback: .*policy\.lua:\d+: callback broke")
        self.assertGreater(s.metric("scout_hook_errors_total"), before)
        self.kz.delete("/sb/svc/exec-3")
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:1"], what="back to start")
        self.assert_unharmed()

    def test_a_reload_that_loops_at_load_is_stopped_by_the_load_budget(self):
        # the load runs on a loader thread, not on the loop: its budget is a start's (5 s of CPU), no longer a
        # share of the session timeout, and its timer is the thread's own
        s = self.scout
        with open(s.policy_file) as f:
            good = f.read()
        mark = s.log().count("reload refused")
        try:
            with open(s.policy_file, "w") as f:
                f.write(good.replace("local mod = require", "while true do end\nlocal mod = require"))
            s.proc.send_signal(signal.SIGHUP)
            # 5 s of the loader thread's CPU: on two cores shared with a busy suite that can take longer than
            # wait_until's default 30 s of wall time, so wait as long as the agent's own bound, the load's
            # wall-clock limit (12 x 5 s), and a margin
            wait_until(lambda: s.log().count("reload refused") > mark, timeout=75, what="reload refused")
        finally:
            with open(s.policy_file, "w") as f:
                f.write(good)
        self.assert_unharmed()
        self.assertRegex(s.log(), r"reload refused.*policy\.lua:3: exceeded its 5000 ms budget \(loading the policy "
                                  r"may take 5000 ms of CPU")
        self.assertEqual(s.ids("svc"), ["127.0.0.1:1"])


if __name__ == "__main__":
    unittest.main()


EXIT_POLICY = '''zookeeper { servers = "%s", session_timeout = 4000 }
service "svc" {
  path = "/sbexit/svc",
  filter = function(ep)
    scout.exec("echo $$ > %s; exec sleep 120", { timeout = "300s" }, function() end)
    return true
  end,
}
'''


class ExecAtExit(unittest.TestCase):
    """A scout.exec command still running when the agent is told to stop is stopped with it: the fast exit
    (the registry's memory left to the process exit) still kills the commands' process groups."""

    def test_running_command_is_stopped_at_exit(self):
        zk = SharedZooKeeper().start()
        d = tempfile.mkdtemp(prefix="scout-sbexit-")
        pid = None
        try:
            kz = zk.client()
            kz.create("/sbexit/svc/127.0.0.1:1", makepath=True)
            pidfile = os.path.join(d, "pid")
            s = Scout(EXIT_POLICY % (zk.connect, pidfile), zk.connect).start()
            wait_until(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(), what="command started")
            pid = int(open(pidfile).read())
            os.kill(pid, 0)                      # running now
            self.assertEqual(s.stop(), 0)

            def gone():
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
                # a zombie of a reaped-late parent counts as gone
                with open("/proc/%d/stat" % pid) as f:
                    return f.read().split(") ")[1].startswith("Z")
            wait_until(gone, what="the command stopped with the agent")
            pid = None
            kz.stop()
        finally:
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            zk.stop()
            shutil.rmtree(d, ignore_errors=True)

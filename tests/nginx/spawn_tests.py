"""nginx tests of spawn_agent (resty.scout.agent): nginx starts the agent itself, reports one that cannot start,
restarts it, and stops it on quit and reload without holding a worker's loop. Run by run.py (its ZooKeeper, its
helpers: `run`), which prints the count line; `run.py -k NAME` picks from both files.
"""

import os
import shutil
import signal
import tempfile
import threading

import run
from nginxharness import Nginx, free_port, wait_until
from run import STATUS, proxy, scout_http
from scoutharness import SCOUT_BIN


def setUpModule():
    run.setUpModule()


def tearDownModule():
    run.tearDownModule()


class SpawnedAgentTest(run.NginxCase):
    def agent_dir(self, prefix, mode):
        """A dir for a spawned agent's policy (service "orders") and log, readable by the workers (nobody, when run
        as root) with `mode`; kept with the nginx prefix when the test failed. -> (dir, policy file, agent log)"""
        pdir = tempfile.mkdtemp(prefix=prefix)
        os.chmod(pdir, mode)
        self.addCleanup(lambda: self._failed() or shutil.rmtree(pdir, True))
        policy_file = os.path.join(pdir, "policy.lua")
        with open(policy_file, "w") as f:
            f.write(self.policy({"orders": ""}))
        os.chmod(policy_file, 0o644)
        agent_log = os.path.join(pdir, "agent.log")
        open(agent_log, "w").close()
        os.chmod(agent_log, 0o666)
        return pdir, policy_file, agent_log

    def test_agent_that_cannot_start_is_reported(self):
        """spawn_agent with a policy path that does not exist, then with a binary that does not: every worker
        logs why at error level, once (not per request), and balance() returns that reason, so the 502's own
        log line names it too."""
        cases = [("policy", {"bin": SCOUT_BIN, "policy": "/nonexistent/scout-test-policy.lua"},
                  r"/nonexistent/scout-test-policy\.lua: No such file or directory"),
                 ("bin", {"bin": "/nonexistent/scout-test-bin", "policy": "/dev/null"},
                  r"/nonexistent/scout-test-bin: No such file or directory")]
        for what, spec, reason in cases:
            with self.subTest(what):
                spawn = ('assert(require("resty.scout").spawn_agent{ bin = "%s", policy = "%s", '
                         'backoff = { min = 0.05, max = 0.2 } })' % (spec["bin"], spec["policy"]))
                agent_loc = """
        location = /agent {
            content_by_lua_block {
                local a = require("resty.scout").agent()
                ngx.say(ngx.worker.pid(), " ", a and a.attempts or "-")
            }
        }
"""
                ng = self.ng = Nginx(http=scout_http(self.shm, ["orders"], init=spawn),
                                     server=proxy("orders") + STATUS + agent_loc, workers=2)
                ng.start()
                worker_line = r"\[error\].*scout: the agent cannot start: " + reason
                wait_until(lambda: ng.count_log(worker_line) == 2, what="both workers to report")
                for _ in range(4):
                    self.assertEqual(ng.get("/orders/")[0], 502)
                # worker 0 tries again and again (and the other worker checks once a second): none of that
                # is news while the reason stays the same
                wait_until(lambda: any(int(v) >= 12 for v in ng.per_worker("/agent").values() if v != "-"),
                           what="a dozen start attempts")
                ng.stop()
                self.assertEqual(ng.count_log(r"\[error\].*scout orders: the agent cannot start: " + reason), 4)
                self.assertEqual(ng.count_log(worker_line), 2)
                ng.check_log([r"scout: the agent cannot start: ", r"scout orders: the agent cannot start: ",
                               r"no live upstreams"])
                ng.cleanup()
                self.ng = None

    def test_spawned_agent_supervised(self):
        """nginx starts the agent itself (spawn_agent from worker 0 on Debian's nginx), restarts it when it
        exits and again on `nginx -s reload`, with no failed request meanwhile, and stops it (no zombie left)
        with nginx."""
        self.backend("a")
        self.register("orders", "a", port=self.backends["a"].port)
        pdir, policy_file, agent_log = self.agent_dir("scout-nginx-spawn-", 0o755)   # the workers start the agent
        api = "127.0.0.1:%d" % free_port()
        env = ""
        if os.environ.get("ASAN_OPTIONS"):
            env = ', env = { ASAN_OPTIONS = "%s" }' % os.environ["ASAN_OPTIONS"]
        spawn = """
        assert(require("resty.scout").spawn_agent{ bin = "%s", policy = "%s", log = "%s",
            args = { "--zk", "%s", "--api", "%s" }, backoff = { min = 0.2 } %s })
""" % (SCOUT_BIN, policy_file, agent_log, run.ZK.connect, api, env)
        agent_loc = """
        location = /agent {
            content_by_lua_block {
                local a = require("resty.scout").agent()
                ngx.say(ngx.worker.pid(), " ", a and a.pid and (a.pid .. " " .. a.starts) or "-")
            }
        }
"""
        self.ng = Nginx(http=scout_http(self.shm, ["orders"], init=spawn),
                        server=proxy("orders") + STATUS + agent_loc, workers=2).start()

        def agent_pid():
            """(pid, starts) of the agent, asked until worker 0 answers."""
            for _ in range(50):
                parts = self.ng.body("/agent").split()
                if parts[1] != "-":
                    return int(parts[1]), int(parts[2])
            return None

        def count(n):
            return sum(1 for _ in range(n) if self.ng.get("/orders/")[1].strip() == "a")

        statuses = []
        stop = threading.Event()

        def load():
            while not stop.is_set():
                statuses.append(self.ng.get("/orders/")[0])
        t = None
        pids = []
        try:
            pid, starts = wait_until(agent_pid, what="worker 0 to report its agent")
            self.assertEqual(starts, 1)
            pids.append(pid)
            # the agent's first generation lists the service as syncing and empty: wait for the one with "a"
            self.wait_peers("orders", [self.backends["a"].addr])
            self.assertEqual(count(5), 5)
            # from here on, a client must never see a failure: workers keep serving the last snapshot while
            # the agent restarts (the new agent's first, "syncing" and empty, does not blank the service)
            t = threading.Thread(target=load)
            t.start()
            wait_until(lambda: len(statuses) >= 20, what="load running")
            os.kill(pid, signal.SIGTERM)
            pid2, _ = wait_until(lambda: (agent_pid() or (0, 0))[1] == 2 and agent_pid(), what="the restart")
            self.assertNotEqual(pid2, pid)
            pids.append(pid2)
            x = self.backend("x").port
            self.register("orders", "x", port=x)            # the new agent publishes into the same file
            self.wait_peers("orders", [self.backends["a"].addr, "127.0.0.1:%d" % x])
            run.KZ.delete("%s/orders/127.0.0.1:%d" % (self.base, x))
            self.wait_peers("orders", [self.backends["a"].addr])
            # nginx -s reload: the old worker 0 stops its agent, the new worker 0 starts one
            old_workers = self.ng.workers()
            os.kill(self.ng.pid, signal.SIGHUP)
            wait_until(lambda: not set(old_workers) & set(self.ng.workers()), what="the old workers to exit")
            pid3, _ = wait_until(agent_pid, what="the new worker 0's agent")
            self.assertNotIn(pid3, pids)
            pids.append(pid3)
            self.register("orders", "x", port=x)
            self.wait_peers("orders", [self.backends["a"].addr, "127.0.0.1:%d" % x])
            run.KZ.delete("%s/orders/127.0.0.1:%d" % (self.base, x))
            self.wait_peers("orders", [self.backends["a"].addr])
            n = len(statuses)
            wait_until(lambda: len(statuses) >= n + 20, what="20 more requests")
        finally:
            stop.set()
            if t:
                t.join()
            self.ng.stop()
        self.assertGreater(len(statuses), 50)
        self.assertEqual([s for s in statuses if s != 200], [])
        for p in pids:
            wait_until(lambda: not os.path.exists("/proc/%d" % p), 10, what="agent %d to be gone" % p)
        with open(agent_log) as f:
            log = f.read()
        self.assertNotIn("Sanitizer", log)
        self.ng.check_log()

    def test_reload_waits_for_the_spawned_agent_without_holding_the_old_worker(self):
        """`nginx -s reload` while the spawned agent is slow to exit (stopped with SIGSTOP by the test): the old
        worker 0 sends it SIGTERM and waits for it on a timer, so a request still in flight on that worker is
        served meanwhile (it used to busy-wait up to 2 s, serving nothing); the worker exits only after its agent;
        the new worker 0 starts its agent once the old one is gone (its pid in the shared dict), at the first
        try, rather than one that refuses while the old one still holds the snapshot file."""
        self.backend("a")
        self.register("orders", "a", port=self.backends["a"].port)
        pdir, policy_file, agent_log = self.agent_dir("scout-nginx-slowstop-", 0o777)  # ... and write the flag's dir
        flag = os.path.join(pdir, "release")
        env = ""
        if os.environ.get("ASAN_OPTIONS"):
            env = ', env = { ASAN_OPTIONS = "%s" }' % os.environ["ASAN_OPTIONS"]
        # stop_timeout: far past this test's steps, so the old worker never escalates while the test holds it
        spawn = """
        assert(require("resty.scout").spawn_agent{ bin = "%s", policy = "%s", log = "%s", stop_timeout = 600,
            args = { "--zk", "%s", "--api", "127.0.0.1:%d" }, backoff = { min = 0.2 } %s })
""" % (SCOUT_BIN, policy_file, agent_log, run.ZK.connect, free_port(), env)
        locs = """
        location = /agent {
            content_by_lua_block {
                local a = require("resty.scout").agent()
                ngx.say(ngx.worker.pid(), " ", a and a.pid and (a.pid .. " " .. a.starts .. " " .. a.attempts) or "-")
            }
        }
        location = /hold {
            content_by_lua_block {
                ngx.log(ngx.NOTICE, "hold: in flight on ", ngx.worker.pid())
                local f = io.open("%s")
                while not f do
                    ngx.sleep(0.01)
                    f = io.open("%s")
                end
                f:close()
                ngx.say(ngx.worker.pid())
            }
        }
""" % (flag, flag)
        ng = self.ng = Nginx(http=scout_http(self.shm, ["orders"], init=spawn),
                             server=proxy("orders") + STATUS + locs, workers=1).start()

        def agent_status():
            parts = ng.body("/agent").split()
            return parts[1:] if parts[1] != "-" else None

        def state(pid):
            try:
                with open("/proc/%d/stat" % pid) as f:
                    return f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                return None

        old_pid = int(wait_until(agent_status, what="worker 0 to report its agent")[0])
        leftovers = [old_pid]

        def reap():                              # a failed run leaves nothing stopped or running behind
            for p in leftovers:
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    try:
                        os.kill(p, sig)
                    except OSError:
                        pass
        self.addCleanup(reap)
        self.wait_peers("orders", [self.backends["a"].addr])
        old_worker = ng.workers()[0]
        leftovers.append(old_worker)
        held = []
        t = threading.Thread(target=lambda: held.append(ng.request("/hold", timeout=3600)))
        t.daemon = True
        t.start()
        wait_until(lambda: ng.count_log(r"hold: in flight on %d" % old_worker) == 1, what="the request in flight")
        os.kill(old_pid, signal.SIGSTOP)         # slow to exit: it acts on SIGTERM only once continued
        wait_until(lambda: state(old_pid) == "T", what="the agent stopped")
        os.kill(ng.pid, signal.SIGHUP)
        wait_until(lambda: ng.count_log(r"scout: stopping the agent \(pid %d\); waiting for it to exit" % old_pid),
                   what="the old worker 0 stopping its agent")
        wait_until(lambda: ng.count_log(r"scout: waiting for the last agent \(pid %d\) to exit" % old_pid),
                   what="the new worker 0 waiting for the old agent")
        self.assertIsNone(agent_status())         # the new worker 0 has started none yet
        open(flag, "w").close()
        wait_until(lambda: held, what="the request in flight on the old worker to be served")
        st, body, _ = held[0]
        self.assertEqual((st, body.strip()), (200, str(old_worker)))
        # served while the old agent still has not exited, and the old worker is still there, waiting for it
        self.assertEqual(state(old_pid), "T")
        self.assertNotIn(state(old_worker), (None, "Z"))
        self.assertEqual(ng.count_log(r"scout: the agent \(pid %d\) exited" % old_pid), 0)
        os.kill(old_pid, signal.SIGCONT)
        wait_until(lambda: ng.count_log(r"scout: the agent \(pid %d\) exited" % old_pid), what="the old agent's exit")
        wait_until(lambda: state(old_worker) is None, what="the old worker to exit after its agent")
        new = wait_until(agent_status, what="the new worker 0's agent")
        leftovers.append(int(new[0]))
        self.assertNotEqual(int(new[0]), old_pid)
        self.assertEqual(new[1:], ["1", "1"])    # one start, at the first attempt: no refused start before it
        x = self.backend("x").port                # the new agent publishes into the same file
        self.register("orders", "x", port=x)
        self.wait_peers("orders", [self.backends["a"].addr, "127.0.0.1:%d" % x])
        ng.stop()
        wait_until(lambda: state(int(new[0])) is None, what="the new agent to be gone with nginx")
        self.assertEqual(ng.count_log(r"exited; starting it again"), 0)
        with open(agent_log) as f:
            self.assertNotIn("Sanitizer", f.read())
        ng.check_log()

"""The disk snapshot served before the policy is loaded (issue 14): a restarted agent whose --cache-dir holds a
snapshot and the side file that ties it to this policy answers /v1/services and /v1/services/NAME at once, marked
stale, while its policy loads on another thread; /v1/health says it is loading; pick waits and is answered by the
loaded agent; the loaded agent's answers are the early ones byte for byte. An edited module means a normal start;
a policy that fails to load still exits non-zero with its file:line message.

The policy's load is held by a module that reads a FIFO when EARLY_GATE names one (the environment is not part of
the fingerprint, the module's text is): every early answer below is taken while the load cannot have ended, and the
test releases it by writing the FIFO -- an ordering fact, no timing."""

import http.client
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import unittest

from scoutharness import Scout, free_port, wait_until
from zkharness import ZooKeeper

MODULE = '''-- held by the test: the load waits for a line on the FIFO named by EARLY_GATE
local gate = os.getenv("EARLY_GATE")
if gate then
  local f = assert(io.open(gate, "r"))
  f:read("*l")
  f:close()
end
if os.getenv("EARLY_FAIL") then error("failing on purpose") end
return { weight = 1 }
'''

POLICY = '''zookeeper { servers = "127.0.0.1:1", session_timeout = 4000 }
local gate = require "earlygate"
service "beta" { path = "/early/beta" }
service "alpha" { path = "/early/alpha", selector = "rr" }
service "gamma" { path = "/early/gamma" }
'''


class Early(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
        self.kz = self.zk.client()
        self.dir = tempfile.mkdtemp(prefix="scout-early-")
        self.cache = os.path.join(self.dir, "cache")
        self.moddir = os.path.join(self.dir, "mod")
        os.mkdir(self.moddir)
        self.module = os.path.join(self.moddir, "earlygate.lua")
        with open(self.module, "w") as f:
            f.write(MODULE)
        self.policy = os.path.join(self.dir, "policy.lua")
        with open(self.policy, "w") as f:
            f.write(POLICY)
        self.gate = os.path.join(self.dir, "gate")
        os.mkfifo(self.gate)
        self.api = "127.0.0.1:%d" % free_port()
        self.old_env = {k: os.environ.get(k) for k in ("LUA_PATH", "EARLY_GATE", "EARLY_FAIL")}
        os.environ["LUA_PATH"] = self.moddir + "/?.lua;;"
        self.scouts = []

    def tearDown(self):
        try:                            # a load still held: let it go
            fd = os.open(self.gate, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"go\n")
            os.close(fd)
        except OSError:
            pass
        try:
            for s in self.scouts:
                s.stop()
        finally:                        # a failed stop leaves nothing behind either
            for k, v in self.old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            self.zk.stop()
            shutil.rmtree(self.dir, ignore_errors=True)

    def agent(self, gate=False, fail=False, log_level="info"):
        s = Scout("-- replaced\n", self.zk.connect, api=self.api, log_level=log_level,
                  extra_args=["--cache-dir", self.cache])
        s.args[s.args.index("-c") + 1] = self.policy    # the same file every time: its path is fingerprinted
        os.environ.pop("EARLY_GATE", None)
        os.environ.pop("EARLY_FAIL", None)
        if gate:
            os.environ["EARLY_GATE"] = self.gate
        if fail:
            os.environ["EARLY_FAIL"] = "1"
        s.start(wait=False)
        os.environ.pop("EARLY_GATE", None)
        os.environ.pop("EARLY_FAIL", None)
        self.scouts.append(s)
        return s

    def release(self):
        with open(self.gate, "w") as f:
            f.write("go\n")

    def first_run(self):
        """An agent that syncs with ZooKeeper and leaves the snapshot and its side file behind."""
        self.kz.ensure_path("/early/alpha")
        self.kz.ensure_path("/early/beta")
        for p in range(3):
            self.kz.create("/early/alpha/127.0.0.1:%d" % (7000 + p))
        self.kz.create("/early/beta/127.0.0.1:7100")
        first = self.agent()
        wait_until(lambda: first.alive() and _ok(first, "/v1/health"), what="first agent synced")
        self.assertIn("no usable side file", first.log())
        self.assertEqual(first.stop(), 0)
        self.assertTrue(os.path.exists(os.path.join(self.cache, "scout.snapshot.policy")))

    def test_snapshot_served_before_the_policy_loads_then_the_same_bytes(self):
        self.first_run()
        self.zk.stop_node(1)
        second = self.agent(gate=True, log_level="debug")
        wait_until(lambda: _answers(second, "/v1/services"), what="early answer")
        # the load is held by the gate: everything until release() is the early server's
        early_list = second.request("/v1/services")
        early_alpha = second.request("/v1/services/alpha")
        early_gamma = second.request("/v1/services/gamma")
        early_missing = second.request("/v1/services/nope")
        health = second.request("/v1/health")
        self.assertIn("serving the disk snapshot", second.log())
        self.assertNotIn("the loaded agent serves", second.log())
        self.assertEqual(early_list[0], 200)
        self.assertEqual([(s["name"], s["endpoints"], s["state"]) for s in json.loads(early_list[2])],
                         [("beta", 1, "stale"), ("alpha", 3, "stale"), ("gamma", 0, "stale")])
        self.assertEqual(early_alpha[0], 200)
        self.assertEqual(early_alpha[1]["X-Scout-State"], "stale")
        self.assertEqual(sorted(e["id"] for e in json.loads(early_alpha[2])),
                         ["127.0.0.1:%d" % (7000 + p) for p in range(3)])
        self.assertEqual(early_missing[0], 404)
        self.assertEqual(health[0], 503)
        self.assertIn("loading the policy", json.loads(health[2])["reason"])

        # pick and a blocking query wait for the policy: parked (the log says so), answered once it is loaded
        picked, blocked = {}, {}
        beta_index = json.loads(early_list[2])[0]["index"]         # beta: the policy's first service
        t = threading.Thread(target=lambda: picked.update(r=second.request("/v1/pick/alpha")))
        t.start()
        wait_until(lambda: "GET /v1/pick/alpha parked until the policy is loaded" in second.log(),
                   what="pick parked")
        b = threading.Thread(target=lambda: blocked.update(
            r=second.request("/v1/services/beta?index=%d&wait=1s" % beta_index)))
        b.start()
        wait_until(lambda: "GET /v1/services/beta parked until the policy is loaded" in second.log(),
                   what="blocking query parked")
        self.release()
        t.join(30)
        b.join(30)
        self.assertEqual(picked["r"][0], 200, picked)
        self.assertIn(json.loads(picked["r"][2])["id"], ["127.0.0.1:%d" % (7000 + p) for p in range(3)])
        # the loaded agent's index has not moved (ZooKeeper is down): its wait ends, with the same list
        self.assertEqual(blocked["r"][0], 200, blocked)
        self.assertEqual([e["id"] for e in json.loads(blocked["r"][2])], ["127.0.0.1:7100"])
        wait_until(lambda: "the loaded agent serves" in second.log(), what="hand-over")
        self.assertIn("2 of them parked and answered now", second.log())

        # the loaded agent answers the same bytes for the same snapshot
        for early, path in ((early_list, "/v1/services"), (early_alpha, "/v1/services/alpha"),
                            (early_gamma, "/v1/services/gamma"), (early_missing, "/v1/services/nope")):
            late = second.request(path)
            self.assertEqual(late[0], early[0], path)
            self.assertEqual(late[2], early[2], path)
            for h in ("X-Scout-Index", "X-Scout-State", "Content-Type"):
                self.assertEqual(late[1].get(h), early[1].get(h), (path, h))
        self.assertNotIn("loading the policy", json.loads(second.request("/v1/health")[2])["reason"])

        # and becomes fully itself: ZooKeeper back, synced
        self.zk.start_node(1)
        wait_until(lambda: _ok(second, "/v1/health"), what="synced after ZooKeeper came back")
        self.assertEqual(second.stop(), 0)

    def test_the_hand_over_seeds_in_slices_while_the_early_server_answers(self):
        """The hand-over decodes the services' lists from what the early start read, then builds and seeds the
        services, in slices: between them the loop polls, and requests that came meanwhile are answered by the early
        server, before the loaded agent takes the socket (the agent counts them: an ordering fact). The seeds are
        the snapshot's lists. Nothing after it walks the registry in one iteration either: the name index was
        sorted by the loader thread, and the side file's bytes for the next start are made in slices of at most
        512 services, the loaded API answering between them (the agent counts those too)."""
        many = 1500                     # > SEED_SLICE_MAX (128) services: at least that many slices
        with open(self.policy, "a") as f:
            f.write('for i = 1, %d do\n  local n = string.format("m%%04d", i)\n'
                    '  service(n) { path = "/early/many/" .. n }\nend\n' % many)
        self.kz.ensure_path("/early/many")
        pending = [self.kz.create_async("/early/many/m%04d" % i) for i in range(1, many + 1)]
        for r in pending:
            r.get(timeout=30)
        pending = [self.kz.create_async("/early/many/m%04d/127.0.0.1:%d" % (i, 8000 + p))
                   for i in range(1, many + 1) for p in range(2)]
        for r in pending:
            r.get(timeout=30)
        self.first_run()
        self.zk.stop_node(1)
        host, port = self.api.rsplit(":", 1)
        seen_early = seen_after = False
        for attempt in range(4):        # the clients are other processes' turns: each try is a fresh start
            agent = self.agent(gate=True)
            wait_until(lambda: _answers(agent, "/v1/services/m0001"), what="early answer")
            stop, answered = threading.Event(), []

            def client():
                c = http.client.HTTPConnection(host, int(port), timeout=10)
                try:
                    while not stop.is_set():
                        c.request("GET", "/v1/services/m0001")
                        r = c.getresponse()
                        answered.append((r.status, r.getheader("X-Scout-State"), r.read()))
                except OSError:
                    pass
                finally:
                    c.close()
            clients = [threading.Thread(target=client) for _ in range(4)]
            for t in clients:
                t.start()
            try:
                self.release()
                try:
                    wait_until(lambda: "the hand-over decoded" in agent.log(), what="the hand-over's slices")
                except AssertionError:
                    print(agent.log()[-5000:])
                    raise
                wait_until(lambda: "the loaded agent serves" in agent.log(), what="hand-over")
                # the steps after it, the clients still asking
                wait_until(lambda: "after the hand-over:" in agent.log(), what="the steps after the hand-over")
            finally:
                stop.set()
                for t in clients:
                    t.join(30)
            log = agent.log()
            m = re.search(r"the hand-over decoded (\d+) services' lists from the early index in (\d+) slices "
                          r"\(longest [\d.]+ ms, [\d.]+ ms in all\) and built and seeded the services in (\d+) "
                          r"\(longest [\d.]+ ms, [\d.]+ ms in all; \d+ on a session already connected\); (\d+) early requests came "
                          r"meanwhile; .*?the name index sorted by the loader thread", log)
            self.assertIsNotNone(m, log[-3000:])
            self.assertEqual(int(m.group(1)), many + 3)
            self.assertGreaterEqual(int(m.group(2)), (many + 3) // 128)     # decoded in slices
            self.assertGreaterEqual(int(m.group(3)), (many + 3) // 128)     # and built in slices
            # the early answers (stale, the snapshot's two endpoints) and the loaded agent's agree
            self.assertTrue(answered)
            for st, state, body in answered:
                self.assertEqual(st, 200)
                self.assertEqual(len(json.loads(body)), 2)
            # seeded from the early index, not the file read again: every service's list, as before
            self.assertIn("serving %d services from" % (many + 3), log)
            self.assertIn("as the early start read it", log)
            listed = agent.services()
            self.assertEqual(sum(1 for s in listed.values() if s["name"].startswith("m") and s["endpoints"] == 2
                                 and s["state"] == "stale"), many)
            self.assertEqual(agent.ids("alpha"), ["127.0.0.1:%d" % (7000 + p) for p in range(3)])
            # found by name through the loader's index, each service in its place (beta comes first in the policy)
            self.assertEqual(agent.ids("beta"), ["127.0.0.1:7100"])
            self.assertEqual(agent.ids("m%04d" % many), ["127.0.0.1:8000", "127.0.0.1:8001"])
            # the last iteration is the outputs and the API alone: the early server's freeing, the marking of what
            # ZooKeeper listed meanwhile and the side file for the next start (both in slices of at most 512
            # services) and the heap's steps come in later iterations, after the loaded agent serves
            after = re.search(r"after the hand-over: (\d+) steps in later iterations, .*?the early server freed in "
                              r"(\d+), the services ZooKeeper listed meanwhile marked in (\d+) slices, "
                              r"the side file for the next start with its bytes in (\d+) slices of at most 512 "
                              r"services and (\d+) API requests answered between the first and the last", log)
            self.assertIsNotNone(after, log[-3000:])
            slices = -(-(many + 3) // 512)
            self.assertGreaterEqual(int(after.group(2)), 1)
            self.assertGreaterEqual(int(after.group(3)), slices)
            self.assertGreaterEqual(int(after.group(4)), slices)
            self.assertEqual(int(after.group(1)), 3 + sum(int(after.group(g)) for g in (2, 3, 4)))
            self.assertLess(log.index("the loaded agent serves"), after.start())
            self.assertEqual(agent.stop(), 0)
            seen_early |= int(m.group(4)) > 0   # a request came between two slices: the early server answered it
            seen_after |= int(after.group(5)) > 0   # and between two of the side file's: the loaded API did
            if seen_early and seen_after:
                break
        else:
            self.fail("no request came between the slices in 4 starts (early: %s, after: %s)"
                      % (seen_early, seen_after))

    def test_with_zookeeper_up_the_hand_over_never_overwrites_its_listing(self):
        """ZooKeeper up while the hand-over builds the services in slices: a session may connect between two of
        them, and a service's first listing must replace its seed, never the other way round. The truth moved
        since the snapshot (a fourth alpha endpoint, a second beta one): the loaded agent must publish it, synced."""
        many = 4000                     # services on alpha's path: slices for the session to connect between
        with open(self.policy, "a") as f:
            f.write('for i = 1, %d do\n  service(string.format("m%%04d", i)) { path = "/early/alpha" }\nend\n'
                    % many)
        self.first_run()
        self.kz.create("/early/alpha/127.0.0.1:7003")
        self.kz.create("/early/beta/127.0.0.1:7101")
        second = self.agent(gate=True)
        wait_until(lambda: _answers(second, "/v1/services/m0001"), what="early answer")
        self.assertEqual(len(second.endpoints("m0600")[0]), 3)        # the snapshot's, early
        self.release()
        wait_until(lambda: "the loaded agent serves" in second.log(), what="hand-over")
        self.assertIn("as the early start read it", second.log())
        wait_until(lambda: _ok(second, "/v1/health"), what="synced")
        want = ["127.0.0.1:%d" % (7000 + p) for p in range(4)]
        listed = second.services()
        for name in ["alpha"] + ["m%04d" % i for i in range(1, many + 1)]:
            self.assertEqual(listed[name]["state"], "synced", name)
            self.assertEqual(listed[name]["endpoints"], 4, name)
        self.assertEqual(second.ids("alpha"), want)
        self.assertEqual(second.ids("m%04d" % many), want)
        self.assertEqual(second.ids("beta"), ["127.0.0.1:7100", "127.0.0.1:7101"])
        self.assertEqual(second.stop(), 0)
        # and the snapshot it left has ZooKeeper's lists, not the seeds: a service listed before the snapshot took
        # records is marked after the hand-over; the next start's early answers (its load held) show which
        third = self.agent(gate=True)
        wait_until(lambda: _answers(third, "/v1/services/m0001"), what="early answer")
        for name in ["alpha"] + ["m%04d" % i for i in range(1, many + 1, 333)] + ["m%04d" % many]:
            self.assertEqual(third.ids(name), want, name)
        self.assertEqual(third.ids("beta"), ["127.0.0.1:7100", "127.0.0.1:7101"])
        self.release()
        wait_until(lambda: "the loaded agent serves" in third.log(), what="third hand-over")
        self.assertEqual(third.stop(), 0)

    def test_an_edited_module_means_a_normal_start(self):
        self.first_run()
        self.zk.stop_node(1)
        with open(self.module, "a") as f:
            f.write("-- edited\n")
        second = self.agent(gate=True)
        wait_until(lambda: "the disk snapshot is served once the policy is loaded" in second.log(),
                   what="the early check's verdict")
        self.assertIn("a module it loads", second.log())
        # the load is held by the gate and nothing listens before it: a normal start
        with self.assertRaises(ConnectionRefusedError):
            second.request("/v1/services")
        self.release()
        wait_until(lambda: _answers(second, "/v1/services/alpha"), what="normal start")
        self.assertEqual(second.services()["alpha"]["state"], "stale")
        self.assertEqual(len(second.endpoints("alpha")[0]), 3)
        self.assertEqual(second.stop(), 0)

    def test_a_side_file_vouches_for_its_snapshot_only(self):
        self.first_run()
        snap = os.path.join(self.cache, "scout.snapshot")
        with open(snap, "rb") as f:
            old = f.read()
        # another run moves the truth: a new snapshot and a new side file
        self.kz.create("/early/alpha/127.0.0.1:7005")
        again = self.agent()
        wait_until(lambda: _answers(again, "/v1/services/alpha") and len(again.endpoints("alpha")[0]) == 4,
                   what="second agent synced")
        wait_until(lambda: open(snap, "rb").read() != old, what="snapshot rewritten")
        self.assertEqual(again.stop(), 0)
        # the old snapshot back under the new side file (what a crash between the two renames would leave)
        with open(snap, "wb") as f:
            f.write(old)
        self.zk.stop_node(1)
        third = self.agent(gate=True)
        wait_until(lambda: "the disk snapshot is served once the policy is loaded" in third.log(),
                   what="the early check's verdict")
        self.assertIn("the side file vouches for another snapshot", third.log())
        with self.assertRaises(ConnectionRefusedError):
            third.request("/v1/services")
        self.release()
        wait_until(lambda: _answers(third, "/v1/services/alpha"), what="normal start")
        self.assertEqual(len(third.endpoints("alpha")[0]), 3)      # the snapshot on disk, as a normal start serves it
        self.assertEqual(third.stop(), 0)

    def test_a_start_that_read_the_snapshot_whole_leaves_the_side_file(self):
        self.first_run()
        side = os.path.join(self.cache, "scout.snapshot.policy")
        os.unlink(side)
        self.zk.stop_node(1)                            # nothing is written while ZooKeeper is down
        second = self.agent()
        wait_until(lambda: _answers(second, "/v1/services/alpha"), what="normal start")
        self.assertIn("no usable side file", second.log())
        self.assertEqual(second.stop(), 0)
        self.assertTrue(os.path.exists(side))
        third = self.agent(gate=True)
        wait_until(lambda: _answers(third, "/v1/services/alpha"), what="early answer")
        self.assertIn("serving the disk snapshot", third.log())
        self.release()
        wait_until(lambda: "the loaded agent serves" in third.log(), what="hand-over")
        self.assertEqual(third.stop(), 0)

    def test_an_early_start_leaves_the_side_file_beside_its_next_snapshot(self):
        """After an early start the side file for the next snapshot is made in a step after the hand-over (not in its
        last iteration): the writer thread still writes it beside the next snapshot, so the start after that one is
        early again, with that snapshot."""
        self.first_run()
        side = os.path.join(self.cache, "scout.snapshot.policy")
        with open(side, "rb") as f:
            before = f.read()
        second = self.agent()
        wait_until(lambda: "after the hand-over:" in second.log(), what="the steps after the hand-over")
        self.assertIn("serving the disk snapshot", second.log())
        self.kz.create("/early/alpha/127.0.0.1:7003")
        wait_until(lambda: len(second.ids("alpha")) == 4, what="the fourth alpha endpoint")

        def rewritten():
            with open(side, "rb") as f:
                return f.read() != before
        wait_until(rewritten, what="the side file beside the new snapshot")
        self.assertEqual(second.stop(), 0)
        self.zk.stop_node(1)
        third = self.agent(gate=True)
        wait_until(lambda: _answers(third, "/v1/services/alpha"), what="early answer")
        self.assertIn("serving the disk snapshot", third.log())
        self.assertEqual(sorted(e["id"] for e in third.endpoints("alpha")[0]),
                         ["127.0.0.1:%d" % (7000 + p) for p in range(4)])
        self.release()
        wait_until(lambda: "the loaded agent serves" in third.log(), what="hand-over")
        self.assertEqual(third.stop(), 0)

    def test_after_a_reload_the_side_file_names_the_new_policy(self):
        self.kz.ensure_path("/early/alpha")
        self.kz.create("/early/alpha/127.0.0.1:7000")
        self.kz.ensure_path("/early/delta")
        self.kz.create("/early/delta/127.0.0.1:7300")
        first = self.agent()
        wait_until(lambda: _ok(first, "/v1/health"), what="first agent synced")
        with open(self.policy, "a") as f:
            f.write('service "delta" { path = "/early/delta" }\n')
        first.proc.send_signal(signal.SIGHUP)
        side = os.path.join(self.cache, "scout.snapshot.policy")
        wait_until(lambda: os.path.exists(side) and b"delta" in open(side, "rb").read(),
                   what="the side file names the reloaded policy")
        self.assertEqual(first.stop(), 0)
        self.zk.stop_node(1)
        second = self.agent(gate=True)
        wait_until(lambda: _answers(second, "/v1/services/delta"), what="early answer")
        self.assertIn("serving the disk snapshot", second.log())
        self.assertEqual([e["id"] for e in second.endpoints("delta")[0]], ["127.0.0.1:7300"])
        self.release()
        wait_until(lambda: "the loaded agent serves" in second.log(), what="hand-over")
        self.assertEqual(second.stop(), 0)

    def test_a_stop_during_the_early_load_stops_it_and_exits_cleanly(self):
        # SIGTERM while the early start's load runs (held before or in the gate): the stop cancels the load, waits
        # for it to come out of its C call (released on the log line that says it waits), and the agent exits 0
        # with no second signal; under build-asan LeakSanitizer says nothing (it reported 5.7 KB before the fix)
        self.first_run()
        self.zk.stop_node(1)
        second = self.agent(gate=True)
        wait_until(lambda: _answers(second, "/v1/services/alpha"), what="early answer")
        second.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "stopped while the policy loads: its load is stopped, waiting for it" in second.log(),
                   what="the stop waiting for the load")
        # the cancelled load may have stopped before the gate (no reader: ENXIO) or right after its open returned
        # (EPIPE): either way it is released, and it must not pass the gate into a loaded agent
        try:
            fd = os.open(self.gate, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd, b"go\n")
            finally:
                os.close(fd)
        except (BrokenPipeError, OSError):
            pass
        wait_until(lambda: not second.alive(), what="the agent exits")
        self.assertEqual(second.stop(sig=signal.SIGKILL), 0, second.log())   # exited already: its code
        # a load caught in a C call past the stop's 5 s wait is left to the exit ("stuck in a C call"): still exit
        # 0 and, under build-asan, no leak reported (the abandoned start stays reachable)
        self.assertNotIn("the loaded agent serves", second.log())

    def test_a_policy_that_fails_to_load_exits_with_its_message(self):
        self.first_run()
        self.zk.stop_node(1)
        second = self.agent(gate=True, fail=True)
        wait_until(lambda: _answers(second, "/v1/services/alpha"), what="early answer")
        self.release()
        wait_until(lambda: not second.alive(), what="the agent exits")
        self.assertEqual(second.stop(sig=signal.SIGKILL), 1)   # exited already: its code
        # Lua shortens a long chunk name to its last ~60 characters ("...tail"): a run's temp dir can be that long
        m = re.search(r"^scout: (\.\.\.)?(\S+):8: failing on purpose$", second.log(), re.M)
        self.assertIsNotNone(m, second.log())
        self.assertTrue(self.module.endswith(m.group(2)), (m.group(2), self.module))


def _answers(s, path):
    try:
        return s.request(path)[0] == 200
    except OSError:
        return False


def _ok(s, path):
    try:
        return s.request(path)[0] == 200
    except OSError:
        return False


if __name__ == "__main__":
    unittest.main()

"""Host names of the connect string are resolved off the loop; IP literals are never resolved.

The C client would call getaddrinfo() inside zookeeper_init() and on every connection loss, on the agent's only
thread: a DNS server that does not answer would hold the loop (API, health, ZooKeeper pings) for as long as the
lookup blocks. A preloaded getaddrinfo() (gated_resolver.c) blocks names ending in ".gated.test" until the test opens
a gate file, which is how a dead DNS server looks from inside the process."""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from scoutharness import Scout, policy, wait_until
from zkharness import ZooKeeper

HERE = os.path.dirname(os.path.abspath(__file__))


def build_shim(dir):
    out = os.path.join(dir, "gated_resolver.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", out, os.path.join(HERE, "gated_resolver.c"), "-ldl"],
                   check=True)
    return out


class Resolve(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
        self.scout = None
        self.dir = tempfile.mkdtemp(prefix="scout-resolve-")
        self.gate = os.path.join(self.dir, "gate")
        self.waiting = self.gate + ".waiting"

    def tearDown(self):
        open(self.gate, "w").close()            # release any lookup still blocked
        if self.scout:
            self.scout.stop()
        self.zk.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start_scout(self, connect, env=None):
        kz = self.zk.client()
        kz.ensure_path("/res/svc")
        if not kz.exists("/res/svc/a"):
            kz.create("/res/svc/a", json.dumps({"host": "10.0.0.1", "port": 80}).encode())
        self.scout = Scout(policy({"svc": 'path = "/res/svc"'}), connect)
        saved = dict(os.environ)
        os.environ.update(env or {})
        try:
            self.scout.start(wait=False)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return kz

    def restart_zk_and_publish(self, kz, name):
        s = self.scout
        reconnects = s.metric("scout_zk_reconnects_total")
        self.zk.stop_node(1)
        self.zk.start_node(1)
        kz = self.zk.client()
        kz.create("/res/svc/" + name, json.dumps({"host": "10.0.0.2", "port": 81}).encode())
        wait_until(lambda: name in s.ids("svc"), timeout=30, what="a change after the restart published")
        self.assertGreater(s.metric("scout_zk_reconnects_total"), reconnects)
        return kz

    def test_host_name_works_and_is_resolved_again_on_connection_loss(self):
        kz = self.start_scout("localhost:%d" % self.zk.port())
        s = self.scout
        wait_until(lambda: s.request("/v1/health")[0] == 200, timeout=30, what="healthy through localhost")
        self.assertEqual(s.ids("svc"), ["a"])
        first = s.metric("scout_zk_name_resolutions_total")
        self.assertGreaterEqual(first, 1)
        self.restart_zk_and_publish(kz, "b")
        wait_until(lambda: s.metric("scout_zk_name_resolutions_total") > first, what="resolved again after the loss")
        self.assertIn("ZooKeeper servers localhost:%d are 127.0.0.1:%d" % (self.zk.port(), self.zk.port()), s.log())

    def test_ip_literal_is_never_resolved(self):
        kz = self.start_scout("127.0.0.1:%d" % self.zk.port())
        s = self.scout
        wait_until(lambda: s.request("/v1/health")[0] == 200, timeout=30, what="healthy")
        self.restart_zk_and_publish(kz, "b")
        self.assertEqual(s.metric("scout_zk_name_resolutions_total"), 0)

    def test_blocked_lookup_does_not_hold_the_loop(self):
        shim = build_shim(self.dir)
        env = {"LD_PRELOAD": shim, "SCOUT_TEST_GATE": self.gate,
               "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:verify_asan_link_order=0"}
        kz = self.start_scout("zk.gated.test:%d" % self.zk.port(), env)
        s = self.scout
        # the first lookup is stuck; the API answers all the same, and says why it is not ready
        wait_until(lambda: os.path.exists(self.waiting), what="the first lookup blocked")
        wait_until(lambda: s.request("/v1/health")[0] == 503, timeout=30, what="the API answering during the lookup")
        status, body = s.health()
        self.assertEqual(status, 503)
        self.assertIn("session 0 connecting", body["reason"])
        self.assertTrue(os.path.exists(self.waiting), "still blocked while the API answered")

        open(self.gate, "w").close()
        wait_until(lambda: s.health()[0] == 200, timeout=30, what="healthy once the name resolved")
        self.assertEqual(s.ids("svc"), ["a"])

        # the gate closes again: the re-resolution after a connection loss blocks, and the agent reconnects to
        # the addresses it already has and publishes a change made after the restart, meanwhile
        os.unlink(self.gate)
        before = s.metric("scout_zk_name_resolutions_total")
        # the client made after the restart: the one from before may have lost its session to the restart (it
        # did under ASan on a loaded machine: SessionExpiredError on the create below)
        kz = self.restart_zk_and_publish(kz, "b")
        wait_until(lambda: s.metric("scout_zk_name_resolutions_total") > before, what="a re-resolution started")
        wait_until(lambda: os.path.exists(self.waiting), what="the re-resolution blocked")
        wait_until(lambda: s.health()[0] == 200, timeout=30, what="healthy while the lookup is blocked")
        kz.create("/res/svc/c", json.dumps({"host": "10.0.0.3", "port": 82}).encode())
        wait_until(lambda: "c" in s.ids("svc"), what="a change published while the lookup is blocked")
        self.assertTrue(os.path.exists(self.waiting), "the lookup was blocked throughout")


if __name__ == "__main__":
    unittest.main()

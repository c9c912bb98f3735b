"""Cold start from the disk snapshot ("fail static"): an agent restarted while ZooKeeper is down serves what it
last published, marked stale, and health says so once the snapshot passes max_age; when ZooKeeper comes back
with a different truth the agent converges exactly. A corrupt snapshot is rejected with a clear log line and the
agent runs on."""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from churn import seen, truth
from scoutharness import SCOUT_BIN, Scout, policy, wait_until
from zkharness import ZooKeeper


class ColdStart(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
        self.kz = self.zk.client()
        self.cache = tempfile.mkdtemp(prefix="scout-cache-")
        self.scouts = []

    def tearDown(self):
        for s in self.scouts:
            s.stop()
        self.zk.stop()
        shutil.rmtree(self.cache, ignore_errors=True)

    def agent(self, max_age=86400):
        s = Scout(policy({"svc": 'path = "/cs/svc"'},
                         extra='cache { dir = "%s", max_age = "%ds" }' % (self.cache, max_age)),
                  self.zk.connect)
        self.scouts.append(s)
        return s

    def test_restart_while_zookeeper_is_down_then_converge(self):
        self.kz.ensure_path("/cs/svc")
        for p in range(4):
            self.kz.create("/cs/svc/127.0.0.1:%d" % (8000 + p))
        self.kz.create("/cs/svc/id-1", b'{"host":"10.0.0.1","port":1,"weight":5}')
        first = self.agent(max_age=2).start()
        wait_until(lambda: len(first.ids("svc")) == 5, what="first agent synced")
        before = seen(first, "svc")
        self.assertEqual(first.stop(), 0)              # writes the snapshot on the way out
        self.assertTrue(os.path.exists(os.path.join(self.cache, "scout.snapshot")))

        # the truth moves while no agent runs, then ZooKeeper goes away
        self.kz.delete("/cs/svc/127.0.0.1:8000")
        self.kz.create("/cs/svc/127.0.0.1:8100")
        self.kz.set("/cs/svc/id-1", b'{"host":"10.0.0.1","port":1,"weight":9}')
        want = truth(self.kz, "/cs/svc")
        self.zk.stop_node(1)

        second = self.agent(max_age=2).start()
        self.assertEqual(seen(second, "svc"), before)   # served at once from disk
        self.assertEqual(second.state("svc"), "stale")
        # the policy knows the snapshot's list too (it learns it lazily): explain names each endpoint
        st, _, body = second.request("/v1/explain/svc")
        self.assertEqual(st, 200)
        self.assertEqual({c["id"]: c["verdict"] for c in json.loads(body)["children"]},
                         {i: "snapshot" for i in second.ids("svc")})
        # and pick chooses among them
        st, _, body = second.request("/v1/pick/svc")
        self.assertEqual(st, 200)
        self.assertIn(json.loads(body)["id"], second.ids("svc"))
        self.assertEqual(second.health()[0], 503)
        # past max_age, health names the snapshot
        wait_until(lambda: "max_age" in second.health()[1].get("reason", ""), what="max_age passed")
        status, body = second.health()
        self.assertEqual(status, 503)
        self.assertIn("snapshot", body["reason"])
        self.assertIn("max_age", body["reason"])
        self.assertEqual(seen(second, "svc"), before)   # and keeps serving it

        self.zk.start_node(1)
        wait_until(lambda: second.state("svc") == "synced" and seen(second, "svc") == want,
                   what="converged on ZooKeeper's truth")
        self.assertEqual(second.health()[0], 200)

    def test_a_change_published_just_before_sigterm_is_in_the_snapshot(self):
        # the snapshot timer writes a change a second after it is published; SIGTERM sooner than that must still
        # leave it on disk (the exit flushes the snapshot, whatever memory it leaves to the process exit)
        self.kz.ensure_path("/cs/svc")
        self.kz.create("/cs/svc/127.0.0.1:8000")
        first = self.agent().start()
        wait_until(lambda: first.ids("svc") == ["127.0.0.1:8000"], what="first agent synced")
        wait_until(lambda: first.metric("scout_snapshot_writes_total") >= 1, what="the first snapshot write")
        self.kz.create("/cs/svc/127.0.0.1:8001")
        wait_until(lambda: "127.0.0.1:8001" in first.ids("svc"), interval=0.005, what="the change published")
        self.assertEqual(first.stop(), 0)
        self.zk.stop_node(1)
        second = self.agent().start()
        self.assertEqual(second.ids("svc"), ["127.0.0.1:8000", "127.0.0.1:8001"])
        self.assertEqual(second.state("svc"), "stale")

    def test_restart_on_an_unchanged_truth_publishes_nothing(self):
        self.kz.ensure_path("/cs/svc")
        for p in range(3):
            self.kz.create("/cs/svc/127.0.0.1:%d" % (8000 + p))
        self.kz.create("/cs/svc/id-1", b'{"host":"10.0.0.1","port":1,"weight":5}')
        first = self.agent().start()
        wait_until(lambda: len(first.ids("svc")) == 4, what="first agent synced")
        body1, headers1 = first.endpoints("svc")
        self.assertEqual(first.stop(), 0)

        # (health while the snapshot is not yet confirmed is asserted, with ZooKeeper down so that it cannot
        # race the confirmation, in test_restart_while_zookeeper_is_down_then_converge)
        second = self.agent().start(wait=False)
        wait_until(lambda: second.state("svc") == "synced", what="confirmed by ZooKeeper")
        body2, headers2 = second.endpoints("svc")
        self.assertEqual(body2, body1)
        self.assertEqual(headers2["X-Scout-Index"], headers1["X-Scout-Index"])    # nothing moved
        self.assertEqual(second.metric("scout_service_publishes_total", "svc"), 0)
        self.assertEqual(second.health()[0], 200)

    def test_a_failed_snapshot_write_is_retried_without_another_change(self):
        self.kz.create("/cs/svc/127.0.0.1:1", makepath=True)
        s = self.agent().start()
        snap = os.path.join(self.cache, "scout.snapshot")
        wait_until(lambda: os.path.isfile(snap), what="first snapshot")
        os.unlink(snap)
        os.makedirs(os.path.join(snap, "in-the-way"))        # the rename over it fails
        self.kz.create("/cs/svc/127.0.0.1:2")
        wait_until(lambda: "will retry in" in s.log(), what="the failed write")
        shutil.rmtree(snap)                                   # the disk is back; nothing changes in ZooKeeper
        wait_until(lambda: os.path.isfile(snap), what="the snapshot written again")
        self.assertFalse(os.path.exists(snap + ".tmp"))

    def test_corrupt_snapshot_is_rejected_and_the_agent_runs(self):
        self.kz.create("/cs/svc/127.0.0.1:1", makepath=True)
        with open(os.path.join(self.cache, "scout.snapshot"), "wb") as f:
            f.write(b"SCOUTSNP" + os.urandom(200))
        s = self.agent().start()
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:1"] and s.state("svc") == "synced", what="synced")
        self.assertIn("ignoring the snapshot", s.log())
        self.assertTrue(s.alive())

    def test_the_agent_maps_neither_libcurl_nor_libsystemd_and_the_client_still_works(self):
        # libcurl brings 34 shared libraries that the loader maps and relocates at every start (~22 ms of CPU on
        # this VM, a fifth of the cold-start target); only the client commands open it, at run time. libsystemd
        # likewise (~4 ms) is opened only under systemd: test_operator's notify tests run with $NOTIFY_SOCKET
        self.kz.create("/cs/svc/127.0.0.1:1", makepath=True)
        s = self.agent().start()
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:1"], what="synced")
        with open("/proc/%d/maps" % s.proc.pid) as f:
            libs = {line.split()[-1].rsplit("/", 1)[-1] for line in f if ".so" in line}
        self.assertTrue([name for name in libs if name.startswith("libluajit")], libs)   # the maps were read
        self.assertEqual([name for name in libs if "curl" in name or "systemd" in name], [])
        out = subprocess.run([SCOUT_BIN, "show", "svc", "--api", s.api, "--json"], capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual([e["id"] for e in json.loads(out.stdout)], ["127.0.0.1:1"])


if __name__ == "__main__":
    unittest.main()

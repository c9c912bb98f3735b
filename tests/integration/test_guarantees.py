"""README's "What it guarantees", the promises no other module proved: each test here fails when its guarantee is
broken (tests/mutants/mutants.txt names the change that breaks it). A list older than the disk snapshot is refused,
then ZooKeeper's view wins; events in a delay window cost one read; data is read only for new children or fired
data watches, never for dubbo; on_protect decides both ways; anti-entropy repairs a watch event that was really
lost (a proxy swallows it) and re-lists after a reconnect; a session's watches past 512 KB are warned about."""

import os
import shutil
import struct
import tempfile
import unittest
import urllib.parse

from churn import seen, truth
from scoutharness import policy, wait_until, Scout, ZkCase
from zkharness import ZooKeeper
from zkproxy import ZkProxy, _close


class EventEater(ZkProxy):
    """A proxy that forwards everything except the next watch notification it is told to swallow: the one event a
    correct client can never get back (the server fired the watch; the client never heard)."""

    def __init__(self, upstream):
        super().__init__(upstream)
        self.eat = None
        self.eaten = 0

    def swallow(self, path, event_type=4):          # 4: NodeChildrenChanged
        with self.lock:
            self.eat = (event_type, path.encode())

    def drop_connections(self):
        """Close every connection: the client reconnects through the proxy into the same session."""
        conns, self.conns = self.conns, []
        _close(*conns)

    def _eats(self, payload):
        # ReplyHeader (xid int, zxid long, err int); a notification has xid -1 and a WatcherEvent after it:
        # type int, state int, path (int length + bytes)
        if len(payload) < 28 or struct.unpack(">i", payload[:4])[0] != -1:
            return False
        etype, _, plen = struct.unpack(">iii", payload[16:28])
        with self.lock:
            if self.eat == (etype, payload[28:28 + plen]):
                self.eat = None
                self.eaten += 1
                return True
        return False

    def _down(self, u, c, state):
        buf, first = b"", True             # the first frame is the ConnectResponse: no reply header
        try:
            while True:
                b = u.recv(65536)
                if not b:
                    break
                buf += b
                out = []
                while len(buf) >= 4:
                    n = struct.unpack(">i", buf[:4])[0]
                    if len(buf) < 4 + n:
                        break
                    frame, buf = buf[:4 + n], buf[4 + n:]
                    if not first and self._eats(frame[4:]):
                        continue
                    first = False
                    out.append(frame)
                if out:
                    c.sendall(b"".join(out))
        except OSError:
            pass
        _close(c, u)


def ep_json(port, weight=1):
    return b'{"host":"10.0.0.1","port":%d,"weight":%d}' % (port, weight)


class Guarantees(ZkCase):
    def setUp(self):
        self.scouts = []
        self.proxy = None

    def tearDown(self):
        for s in self.scouts:
            s.stop()
        if self.proxy:
            self.proxy.stop()

    def agent(self, services, extra="", zk=None, start=True, zookeeper=""):
        s = Scout(policy(services, extra=extra, zookeeper=zookeeper), zk or self.zk.connect)
        self.scouts.append(s)
        return s.start() if start else s

    # ---- Delays that coalesce ------------------------------------------------------------------------------------

    def test_events_in_a_delay_window_cost_one_read_and_one_publish(self):
        # the delay holds every data event back until the tenth: ten events, one pull, one publish
        self.kz.ensure_path("/g1/svc")
        for i in range(10):
            self.kz.create("/g1/svc/id-%d" % i, ep_json(1000 + i))
        s = self.agent({"svc": 'path = "/g1/svc", protect = false,\n'
                               'delay = function(ev)\n'
                               '  if ev.kind == "data" then return ev.pending < 9 and 3600000 or 0 end\n'
                               '  return 0\n'
                               'end'}, extra='agent { anti_entropy = "1h" }')
        wait_until(lambda: seen(s, "svc") == truth(self.kz, "/g1/svc"), what="initial list")
        publishes = s.metric("scout_service_publishes_total", "svc")
        reads = s.metric("scout_service_reads_data_total", "svc")
        events = s.metric("scout_zk_watch_events_total")
        for i in range(10):
            self.kz.set("/g1/svc/id-%d" % i, ep_json(1000 + i, weight=2))
            # each event has reached the agent before the next change is made
            wait_until(lambda i=i: s.metric("scout_zk_watch_events_total") >= events + i + 1,
                       what="data event %d received" % i)
        wait_until(lambda: seen(s, "svc") == truth(self.kz, "/g1/svc"), what="all ten changes")
        self.assertEqual(s.metric("scout_service_reads_data_total", "svc"), reads + 10)
        self.assertEqual(s.metric("scout_service_publishes_total", "svc"), publishes + 1)

    def test_data_is_read_only_for_new_children_and_fired_watches(self):
        self.kz.ensure_path("/g2/svc")
        for i in range(5):
            self.kz.create("/g2/svc/id-%d" % i, ep_json(2000 + i))
        s = self.agent({"svc": 'path = "/g2/svc", protect = false'}, extra='agent { anti_entropy = "1h" }')
        wait_until(lambda: seen(s, "svc") == truth(self.kz, "/g2/svc"), what="initial list")
        reads = s.metric("scout_service_reads_data_total", "svc")
        self.assertEqual(reads, 5)

        self.kz.create("/g2/svc/id-5", ep_json(2005))         # a new child with data: one read
        self.kz.create("/g2/svc/127.0.0.1:2100")              # a name-only child: none
        wait_until(lambda: seen(s, "svc") == truth(self.kz, "/g2/svc"), what="two new children")
        self.assertEqual(s.metric("scout_service_reads_data_total", "svc"), reads + 1)

        self.kz.set("/g2/svc/id-2", ep_json(2002, weight=7))  # its data watch fired: one read
        wait_until(lambda: seen(s, "svc") == truth(self.kz, "/g2/svc"), what="changed data")
        self.assertEqual(s.metric("scout_service_reads_data_total", "svc"), reads + 2)

        self.kz.delete("/g2/svc/id-3")                        # a removal: dropped without reads
        wait_until(lambda: seen(s, "svc") == truth(self.kz, "/g2/svc"), what="removal")
        self.assertEqual(s.metric("scout_service_reads_data_total", "svc"), reads + 2)

    def test_dubbo_data_is_never_read(self):
        base = "/g3/com.acme.Foo/providers/"
        for port in (20880, 20881):
            url = "dubbo://10.0.0.%d:%d/com.acme.Foo?side=provider&weight=100" % (port - 20879, port)
            self.kz.create(base + urllib.parse.quote(url, safe=""), b"10.0.0.1", makepath=True)
        s = self.agent({"foo": 'path = "/g3/com.acme.Foo/providers", codec = "dubbo"'})
        wait_until(lambda: len(s.ids("foo")) == 2, what="both providers")
        url = "dubbo://10.0.0.3:20882/com.acme.Foo?side=provider&weight=100"
        self.kz.create(base + urllib.parse.quote(url, safe=""), b"10.0.0.3")
        wait_until(lambda: len(s.ids("foo")) == 3, what="a third provider")
        self.assertEqual(s.metric("scout_zk_requests_data_total"), 0)
        self.assertEqual(s.metric("scout_service_reads_data_total", "foo"), 0)

    # ---- Ordered: against the disk snapshot ----------------------------------------------------------------------

    def test_a_list_older_than_the_disk_snapshot_is_refused_then_zookeeper_wins(self):
        # ZooKeeper restored from a backup older than what the agent last published: the agent keeps serving its
        # snapshot while ZooKeeper's answers are older, and after three refusals takes ZooKeeper's view
        zk = ZooKeeper().start()
        cache = tempfile.mkdtemp(prefix="scout-cache-")
        backup = tempfile.mkdtemp(prefix="zk-backup-")
        try:
            kz = zk.client()
            kz.ensure_path("/g4/svc")
            for p in range(2):
                kz.create("/g4/svc/127.0.0.1:%d" % (4000 + p))
            kz.stop()
            data = os.path.join(zk.dir, "node1", "data")
            zk.stop_node(1)
            shutil.rmtree(backup)
            shutil.copytree(data, backup)                    # the backup: two children
            zk.start_node(1)
            kz = zk.client()
            for p in range(2, 5):
                kz.create("/g4/svc/127.0.0.1:%d" % (4000 + p))
            cached = 'cache { dir = "%s" }' % cache
            first = self.agent({"svc": 'path = "/g4/svc"'}, extra=cached, zk=zk.connect)
            wait_until(lambda: len(first.ids("svc")) == 5, what="first agent synced")
            snapshot = first.ids("svc")
            self.assertEqual(first.stop(), 0)                # writes the snapshot on the way out
            kz.stop()

            zk.stop_node(1)                                  # restore the backup
            shutil.rmtree(data)
            shutil.copytree(backup, data)
            zk.start_node(1)
            want = truth(zk.client(), "/g4/svc")
            self.assertEqual(len(want), 2)

            second = self.agent({"svc": 'path = "/g4/svc"'}, extra=cached, zk=zk.connect)
            warning = "ZooKeeper stays older than the disk snapshot"
            # until the agent says it gives in, it serves the snapshot, marked stale (the list and state are read
            # before the log: the warning is logged before ZooKeeper's list is taken)
            def gave_in():
                ids, state = second.ids("svc"), second.state("svc")
                if warning in second.log():
                    return True
                self.assertEqual((ids, state), (snapshot, "stale"))
                return False
            wait_until(gave_in, timeout=60, what="the agent giving in to ZooKeeper")
            wait_until(lambda: seen(second, "svc") == want, what="ZooKeeper's view")
            self.assertGreaterEqual(second.metric("scout_service_stale_results_dropped_total", "svc"), 3)
        finally:
            zk.stop()
            shutil.rmtree(cache, ignore_errors=True)
            shutil.rmtree(backup, ignore_errors=True)

    # ---- Protection: on_protect decides --------------------------------------------------------------------------

    def test_on_protect_true_publishes_the_drop_at_once(self):
        self.kz.ensure_path("/g5/svc")
        for p in range(4):
            self.kz.create("/g5/svc/127.0.0.1:%d" % (5000 + p))
        # without the hook this drop would be held for ten minutes
        s = self.agent({"svc": 'path = "/g5/svc",\n'
                               'protect = { confirm = 1000, confirm_interval = 200, hold = "10m" },\n'
                               'on_protect = function(svc, ev) return ev.to == 0 end'})
        wait_until(lambda: len(s.ids("svc")) == 4, what="initial list")
        t = self.kz.transaction()
        for p in range(4):
            t.delete("/g5/svc/127.0.0.1:%d" % (5000 + p))
        t.commit()
        wait_until(lambda: s.ids("svc") == [], what="the drop published on the hook's word")
        self.assertEqual(s.state("svc"), "synced")
        self.assertIn("protection: publishing the drop from 4 to 0 endpoints after 0 confirmations", s.log())

    def test_on_protect_false_holds_past_confirm(self):
        self.kz.ensure_path("/g6/svc")
        for p in range(4):
            self.kz.create("/g6/svc/127.0.0.1:%d" % (6000 + p))
        # one confirmation would publish the drop; the hook says no each time
        s = self.agent({"svc": 'path = "/g6/svc",\n'
                               'protect = { confirm = 1, confirm_interval = 100, hold = "10m" },\n'
                               'on_protect = function(svc, ev) return false end'})
        wait_until(lambda: len(s.ids("svc")) == 4, what="initial list")
        before = s.ids("svc")
        reads = s.metric("scout_service_reads_children_total", "svc")
        t = self.kz.transaction()
        for p in range(4):
            t.delete("/g6/svc/127.0.0.1:%d" % (6000 + p))
        t.commit()
        # the read that saw the drop, then three confirming re-reads, each judged by the hook
        wait_until(lambda: s.metric("scout_service_reads_children_total", "svc") >= reads + 4,
                   what="three confirming re-reads")
        self.assertEqual(s.ids("svc"), before)
        self.assertEqual(s.state("svc"), "protected")

    def test_hold_runs_out_even_when_on_protect_says_no(self):
        # confirmations agree and the hook refuses every time: only the end of hold can publish the drop
        self.kz.ensure_path("/g10/svc")
        for p in range(4):
            self.kz.create("/g10/svc/127.0.0.1:%d" % (6100 + p))
        s = self.agent({"svc": 'path = "/g10/svc",\n'
                               'protect = { confirm = 1, confirm_interval = 100, hold = "2s" },\n'
                               'on_protect = function(svc, ev) return false end'})
        wait_until(lambda: len(s.ids("svc")) == 4, what="initial list")
        t = self.kz.transaction()
        for p in range(4):
            t.delete("/g10/svc/127.0.0.1:%d" % (6100 + p))
        t.commit()
        wait_until(lambda: s.state("svc") == "protected", what="held")
        wait_until(lambda: s.ids("svc") == [], what="published when hold ran out")
        self.assertEqual(s.state("svc"), "synced")
        self.assertIn("protection: publishing the drop from 4 to 0 endpoints", s.log())

    # ---- Anti-entropy ----------------------------------------------------------------------------------------------

    def test_anti_entropy_repairs_a_lost_watch_event_and_counts_it(self):
        self.kz.ensure_path("/g7/svc")
        for p in range(2):
            self.kz.create("/g7/svc/127.0.0.1:%d" % (7000 + p))
        self.proxy = EventEater(self.zk.connect).start()
        s = self.agent({"svc": 'path = "/g7/svc", protect = false'}, extra='agent { anti_entropy = "1s" }',
                       zk=self.proxy.connect)
        wait_until(lambda: len(s.ids("svc")) == 2, what="initial list")
        self.assertEqual(s.metric("scout_service_anti_entropy_repairs_total", "svc"), 0)
        self.proxy.swallow("/g7/svc")
        self.kz.create("/g7/svc/127.0.0.1:7002")
        wait_until(lambda: self.proxy.eaten == 1, what="the child event swallowed")
        wait_until(lambda: seen(s, "svc") == truth(self.kz, "/g7/svc"), what="repaired by anti-entropy")
        self.assertEqual(s.metric("scout_service_anti_entropy_repairs_total", "svc"), 1)
        self.assertIn("anti-entropy found 1 children the watch missed; repaired", s.log())

    def test_anti_entropy_re_lists_after_a_reconnect(self):
        self.kz.ensure_path("/g8/svc")
        self.kz.create("/g8/svc/127.0.0.1:8000")
        self.proxy = EventEater(self.zk.connect).start()
        # the period is an hour: any re-list seen here is the one a reconnect brings
        s = self.agent({"svc": 'path = "/g8/svc"'}, extra='agent { anti_entropy = "1h" }', zk=self.proxy.connect)
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:8000"], what="initial list")
        self.assertEqual(s.metric("scout_service_anti_entropy_checks_total", "svc"), 0)
        sessions = s.metric("scout_zk_sessions_created_total")
        connects = s.metric("scout_zk_reconnects_total")
        self.proxy.drop_connections()
        wait_until(lambda: s.metric("scout_zk_reconnects_total") > connects, what="reconnected")
        wait_until(lambda: s.metric("scout_service_anti_entropy_checks_total", "svc") >= 1,
                   what="a re-list after the reconnect")
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), sessions)   # the same session

    # ---- Announcing local services: expiry ------------------------------------------------------------------------

    def test_session_expiry_recreates_an_unchanged_registration(self):
        # the body is the same before and after: nothing but the expiry itself can bring the node back
        s = Scout(policy({}, session_timeout=2000,
                         extra='register "same" { path = "/g11/reg", codec = "rpcx",\n'
                               '  endpoint = { host = "127.0.0.1", port = 9100, weight = 2 } }'), self.zk.connect)
        self.scouts.append(s)
        s.start()
        node = "/g11/reg/tcp@127.0.0.1:9100"
        first = wait_until(lambda: self.kz.exists(node), what="registered")
        s.pause()
        wait_until(lambda: self.kz.exists(node) is None, what="the session expired and its node went")
        s.resume()
        again = wait_until(lambda: (lambda st: st if st and st.ephemeralOwner != first.ephemeralOwner else None)(
            self.kz.exists(node)), what="registered again by the new session")
        self.assertNotEqual(again.ephemeralOwner, 0)
        self.assertEqual(self.kz.get(node)[0], b"weight=2")

    # ---- Many services: the SetWatches size ----------------------------------------------------------------------

    def test_warns_at_512_kb_of_watches_in_one_session(self):
        # 180 data children under a 3,000-byte path: ~540 KB of watched paths for one session to re-send, with
        # watch_budget = 0 keeping them on the service's one session (spreading is test_big_service's)
        path = "/g9/" + "p" * 3000
        self.kz.ensure_path(path)
        for i in range(180):
            self.kz.create("%s/id-%d" % (path, i), ep_json(9000 + i))
        s = self.agent({"big": 'path = "%s", protect = false' % path}, zookeeper="watch_budget = 0")
        wait_until(lambda: len(s.ids("big")) == 180, what="every child")
        self.assertGreater(s.metric('scout_session_watch_bytes{session="0"}'), 512 * 1024)
        wait_until(lambda: "raise zookeeper { sessions = 2 }" in s.log(), what="the warning")


if __name__ == "__main__":
    unittest.main()

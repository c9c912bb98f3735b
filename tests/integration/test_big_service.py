"""One service big enough that its watches exceed ZooKeeper's 1 MB packet limit stays reconnectable.

The C client re-sends every watch of a session in one SetWatches packet when it reconnects (ZOOKEEPER-706); the
server closes the socket on a packet over jute.maxbuffer, the client reconnects at once and does it again, forever.
The agent must notice that loop (many short connections, none stable), say so in health and metrics, log it once,
and end it with a fresh session (which has no watches to re-send), then publish changes made after the restart."""

import json
import time
import unittest

from kazoo.exceptions import ConnectionLoss, NodeExistsError

from scoutharness import Scout, policy, wait_until
from zkharness import ZooKeeper

PATH = "/big/svc"
PAD = "x" * 200                     # long names: ~215 bytes of watched path per child
CHILDREN = 5600                     # 5,600 data watches + the list watch: ~1.2 MB in one SetWatches


def child(i):
    return "id-%05d-%s" % (i, PAD)


def small(i):
    return "/small/svc/id-%03d-%s" % (i, "y" * 40)      # ~64 bytes of watched path


MANY = 48                           # services, each on its own path under /many
MANY_CHILDREN = 110                 # ~224 bytes of watched path each: ~24.6 KB of data watches per service
MANY_BUDGET = 65536                 # each service is under the budget (and under half of it); together ~1.2 MB


WIDE = 3                            # services under /wide, each with more children than the read window
WIDE_CHILDREN = 1200                # 3,600 data reads at once: over the agent's window of 1,000 in flight
WINDOW = 1000                       # SCOUT_WATCH_READ_WINDOW (zk/watch.h)
SMALL = 40                          # services of one child each, read beside the wide ones


MID = 1200                          # services created at once: more list reads than the window holds
MID_CHILDREN = 3


def mid_path(k):
    return "/mid/s%04d" % k


def wide_path(k):
    return "/wide/svc-%d" % k


def many_path(k):
    return "/many/svc-%02d" % k


def many_child(i):
    return "id-%03d-%s" % (i, PAD)


def create_children(kz, n):
    data = [json.dumps({"host": "10.9.%d.%d" % (i // 250 % 250, i % 250), "port": 1000 + i}).encode()
            for i in range(n)]
    for start in range(0, n, 500):                     # pipelined async creates, 500 in flight
        batch = range(start, min(n, start + 500))
        futs = [kz.create_async("%s/%s" % (PATH, child(i)), data[i]) for i in batch]
        for i, f in zip(batch, futs):
            try:
                f.get(timeout=30)
            except ConnectionLoss:
                # a loaded machine can drop the writer's connection mid-batch: the create may or may not have
                # been applied, so it is made again, by kazoo's retry, and an existing node is the same node
                kz.retry(create_once, kz, "%s/%s" % (PATH, child(i)), data[i])


def create_once(kz, path, data):
    try:
        kz.create(path, data)
    except NodeExistsError:
        pass


class BigService(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
        self.scout = None

    def tearDown(self):
        if self.scout:
            self.scout.stop()
        self.zk.stop()

    def start(self, zookeeper=""):
        kz = self.zk.client()
        kz.ensure_path(PATH)
        create_children(kz, CHILDREN)
        self.scout = s = Scout(policy({"svc": 'path = "%s", protect = false' % PATH}, session_timeout=4000,
                                      zookeeper=zookeeper), self.zk.connect).start()
        wait_until(lambda: s.state("svc") == "synced" and len(s.endpoints("svc")[0]) == CHILDREN, timeout=60,
                   what="the big service synced")
        return s

    def restart_and_change(self):
        self.zk.stop_node(1)
        self.zk.start_node(1)
        kz = self.zk.client()
        kz.create("%s/after-restart" % PATH, json.dumps({"host": "10.8.0.1", "port": 9}).encode())

    @staticmethod
    def watch_bytes(s):
        return {k: v for k, v in s.metrics().items() if k.startswith("scout_session_watch_bytes{")}

    def test_watches_spread_so_every_session_reconnects(self):
        s = self.start()
        per_session = self.watch_bytes(s)
        self.assertGreater(sum(per_session.values()), 1048576, "the service watches more than one packet holds")
        self.assertGreater(len(per_session), 1, "spread over more than one session")
        self.assertLessEqual(max(per_session.values()), 512 * 1024, "no session over the default budget")
        sessions_before = s.metric("scout_zk_sessions_created_total")
        reconnects = s.metric("scout_zk_reconnects_total")

        t0 = time.monotonic()
        self.restart_and_change()
        wait_until(lambda: "after-restart" in s.ids("svc"), timeout=45, what="a change after the restart published")
        wait_until(lambda: s.health()[0] == 200, timeout=45, what="healthy again")
        print("\n  spread: %d sessions; reconnect after restart: %.1f s (healthy)"
              % (len(per_session), time.monotonic() - t0))
        # every session reconnected within itself: no loop, no new session, the watches re-sent and accepted
        self.assertGreaterEqual(s.metric("scout_zk_reconnects_total"), reconnects + len(per_session))
        self.assertEqual(s.metric("scout_zk_reconnect_loops_total"), 0)
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), sessions_before)
        self.assertEqual(len(s.endpoints("svc")[0]), CHILDREN + 1)

        # a data change of a child whose watch lives on another session is published too
        kz = self.zk.client()
        for i in (0, CHILDREN // 2, CHILDREN - 1):
            kz.set("%s/%s" % (PATH, child(i)), json.dumps({"host": "10.7.0.1", "port": 7000 + i}).encode())
        wait_until(lambda: sum(1 for e in s.endpoints("svc")[0] if e["host"] == "10.7.0.1") == 3,
                   what="data changes on every session published")

    def test_reconnect_loop_is_detected_reported_and_ended(self):
        # watch_budget = 0: the old behaviour, one session holds every watch of the service
        s = self.start(zookeeper="watch_budget = 0")
        self.assertGreater(s.metric('scout_session_watch_bytes{session="0"}'), 1048576,
                           "the session's watches exceed what one SetWatches may carry")
        sessions_before = s.metric("scout_zk_sessions_created_total")
        t0 = time.monotonic()
        self.restart_and_change()
        seen = []

        def loop_reported():
            status, body = s.health()
            if status == 503 and "reconnect loop" in body.get("reason", ""):
                seen.append(body["reason"])
            return bool(seen) and s.metric("scout_zk_reconnect_loops_total") >= 1

        wait_until(loop_reported, timeout=45, interval=0.01, what="health names the reconnect loop")
        self.assertEqual(s.metric('scout_session_reconnect_loop{session="0"}'), 1)
        # the loop is ended: a new session starts, and the change made after the restart is published
        wait_until(lambda: "after-restart" in s.ids("svc"), timeout=45, what="a change after the restart published")
        wait_until(lambda: s.health()[0] == 200, timeout=45, what="healthy again")
        print("\n  one session, %d watched bytes: reconnect after restart: %.1f s (healthy)"
              % (s.metric('scout_session_watch_bytes{session="0"}'), time.monotonic() - t0))
        loops = s.metric("scout_zk_reconnect_loops_total")
        self.assertGreater(s.metric("scout_zk_sessions_created_total"), sessions_before, "ended by a new session")
        self.assertEqual(s.log().count("reconnect loop:"), loops, "logged once per loop")
        self.assertEqual(s.metric('scout_session_reconnect_loop{session="0"}'), 0, "the gauge is back to 0")
        self.assertEqual(len(s.endpoints("svc")[0]), CHILDREN + 1)
        self.assertTrue(s.alive())

    def test_many_services_share_no_session_over_the_budget(self):
        # Room is judged per session, over every path on it: 48 services of ~24.6 KB of watches each are each
        # under the budget, but on one shared session they are ~1.2 MB, which ZooKeeper refuses on reconnect
        kz = self.zk.client()
        for k in range(MANY):
            kz.ensure_path(many_path(k))
            futs = [kz.create_async("%s/%s" % (many_path(k), many_child(i)),
                                    json.dumps({"host": "10.5.0.1", "port": 1000 + i}).encode())
                    for i in range(MANY_CHILDREN)]
            for f in futs:
                f.get(timeout=30)
        services = {"svc%02d" % k: 'path = "%s", protect = false' % many_path(k) for k in range(MANY)}
        self.scout = s = Scout(policy(services, session_timeout=4000, zookeeper="watch_budget = %d" % MANY_BUDGET),
                               self.zk.connect).start()
        wait_until(lambda: all(v["state"] == "synced" and v["endpoints"] == MANY_CHILDREN
                               for v in s.services().values()), timeout=60, what="every service synced")
        per_session = self.watch_bytes(s)
        self.assertGreater(sum(per_session.values()), 1048576, "together the services watch more than 1 MB")
        self.assertLessEqual(max(per_session.values()), MANY_BUDGET, "no session over the budget")
        wait_until(lambda: s.health()[0] == 200, what="healthy")
        ids_before = self.session_ids(s)
        self.assertEqual(len(ids_before), len(per_session))
        sessions_before = s.metric("scout_zk_sessions_created_total")

        self.zk.stop_node(1)
        self.zk.start_node(1)
        kz = self.zk.client()
        for k in range(MANY):                       # one data change per service, after the restart
            kz.set("%s/%s" % (many_path(k), many_child(k)), json.dumps({"host": "10.5.0.2", "port": 7000}).encode())

        def changed():
            return sum(1 for k in range(MANY)
                       if any(e["host"] == "10.5.0.2" for e in s.endpoints("svc%02d" % k)[0]))
        wait_until(lambda: changed() == MANY, timeout=60, what="the change on every service published")
        wait_until(lambda: s.health()[0] == 200, timeout=45, what="healthy again")
        # every session came back as itself: its watches were re-sent and accepted, none looped
        self.assertEqual(self.session_ids(s), ids_before, "every session id unchanged")
        self.assertEqual(s.metric("scout_zk_reconnect_loops_total"), 0)
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), sessions_before)
        self.assertEqual(s.metric("scout_service_anti_entropy_repairs_total", "svc00"), 0)

    def create_wide(self, services, children):
        kz = self.zk.client()
        for k in range(services):
            kz.ensure_path(wide_path(k))
            for start in range(0, children, 500):
                futs = [kz.create_async("%s/ep-%04d" % (wide_path(k), i),
                                        json.dumps({"host": "10.4.%d.1" % k, "port": 1000 + i}).encode())
                        for i in range(start, min(children, start + 500))]
                for f in futs:
                    f.get(timeout=30)
        return kz, {"wide%d" % k: 'path = "%s", protect = false' % wide_path(k) for k in range(services)}

    def test_reads_in_flight_stay_within_the_window(self):
        # At 1,000,000 endpoints every child list asked for all its data reads at once; ZooKeeper, a million
        # requests behind, stopped hearing sessions and expired them mid-sync, and each expiry started that
        # session's reads again.  The agent keeps at most WINDOW data reads in flight, all sessions together; the
        # rest wait their turn and are read as answers come back, with their watches set
        kz, services = self.create_wide(WIDE, WIDE_CHILDREN)
        # small services whose first read (spread over the session's first second) mostly comes while the wide
        # ones fill the window: they have nothing in flight to carry them on, only their turn in the line
        for k in range(SMALL):
            kz.create("/narrow/svc-%02d/ep-0" % k, json.dumps({"host": "10.3.0.1", "port": 100 + k}).encode(),
                      makepath=True)
            services["narrow%02d" % k] = 'path = "/narrow/svc-%02d", protect = false' % k
        self.scout = s = Scout(policy(services, session_timeout=4000), self.zk.connect).start()
        wait_until(lambda: all(v["state"] == "synced"
                               and v["endpoints"] == (WIDE_CHILDREN if k.startswith("wide") else 1)
                               for k, v in s.services().items()) and len(s.services()) == WIDE + SMALL,
                   timeout=60, what="every service synced")
        for k in range(WIDE):
            eps = s.endpoints("wide%d" % k)[0]
            self.assertEqual(sorted(e["port"] for e in eps), list(range(1000, 1000 + WIDE_CHILDREN)))
            self.assertTrue(all(e["host"] == "10.4.%d.1" % k for e in eps))
        m = s.metrics()
        self.assertEqual(m.get("scout_zk_reads_in_flight_max"), WINDOW,
                         "the window was filled and never passed (%d data reads wanted at once)" % (WIDE * WIDE_CHILDREN))
        self.assertEqual(m.get("scout_zk_reads_in_flight"), 0, "every read answered")
        self.assertEqual(m.get("scout_zk_reads_waiting"), 0, "nothing left waiting")
        # the reads that waited set their watches too: a change to the last child of every service arrives
        for k in range(WIDE):
            kz.set("%s/ep-%04d" % (wide_path(k), WIDE_CHILDREN - 1),
                   json.dumps({"host": "10.4.%d.9" % k, "port": 9}).encode())
        wait_until(lambda: all(any(e["host"] == "10.4.%d.9" % k for e in s.endpoints("wide%d" % k)[0])
                               for k in range(WIDE)), what="a change to a child read late, on every service")
        wait_until(lambda: s.health()[0] == 200, what="healthy")

    def test_a_service_is_published_whole_while_its_reads_wait(self):
        # A service whose data reads waited for the window (none of its own in flight) counted as settled: it was
        # published with the children read so far and again with each batch (at 10,000 x 10, 544 services were
        # "synced" with part of their endpoints when health said 200).  A publish now waits for every read the
        # window held back: a consumer sees each service whole, once.  Made certain: MID services are watched
        # while their paths do not exist, then created in one transaction, so MID list reads go out at once and
        # fill the window, and every list answer finds it full
        kz = self.zk.client()
        kz.ensure_path("/mid")
        services = {"mid%04d" % k: 'path = "%s", protect = false' % mid_path(k) for k in range(MID)}
        self.scout = s = Scout(policy(services, session_timeout=4000), self.zk.connect).start()
        wait_until(lambda: s.health()[0] == 200, timeout=60, what="healthy, every path missing")
        before = s.metrics()
        tx = kz.transaction()
        for k in range(MID):
            tx.create(mid_path(k))
            for i in range(MID_CHILDREN):
                tx.create("%s/e%d" % (mid_path(k), i), b'{"host":"10.5.0.1","port":%d}' % (1000 + i))
        self.assertTrue(all(r is True or isinstance(r, str) for r in tx.commit()), "every service created")
        wait_until(lambda: all(x["endpoints"] == MID_CHILDREN for x in s.services().values()), timeout=60,
                   what="every service whole")
        m = s.metrics()
        self.assertEqual(m.get("scout_zk_reads_in_flight_max"), WINDOW, "reads waited for the window")
        # one publish each for the creation: the one that holds every child, nothing before it
        pubs = {k: m.get('scout_service_publishes_total{service="%s"}' % k, 0)
                - before.get('scout_service_publishes_total{service="%s"}' % k, 0) for k in services}
        more = sorted((k, n) for k, n in pubs.items() if n != 1)
        self.assertEqual(len(more), 0, "%d services published other than once, e.g. %r" % (len(more), more[:3]))
        # the reads that waited set their watches: a change to a child arrives
        kz.set("%s/e%d" % (mid_path(MID - 1), MID_CHILDREN - 1), b'{"host":"10.4.0.9","port":9}')
        wait_until(lambda: any(e["host"] == "10.4.0.9" for e in s.endpoints("mid%04d" % (MID - 1))[0]),
                   what="a change to a child read late")

    def test_anti_entropy_waits_while_reads_wait(self):
        # The paths read first came due for their anti-entropy check while most of the registry was still
        # waiting to be read: at a million endpoints the checks took a third of the server's requests during
        # the sync.  No check goes out while reads wait for room in the window or fill it; the checks come after.
        # One wide service keeps the window full for its whole sync (its last reads carry themselves on, so
        # nothing waits again once its tail is in flight); a small one is read (and due every ~10 ms) beside it
        kz, services = self.create_wide(1, 4000)
        kz.ensure_path("/narrow/svc")                      # 200 children: a check is 200 exists at once
        for f in [kz.create_async("/narrow/svc/ep-%d" % i, json.dumps({"host": "10.3.0.1", "port": 100 + i}).encode())
                  for i in range(200)]:
            f.get(timeout=30)
        services["narrow"] = 'path = "/narrow/svc", protect = false'
        self.scout = s = Scout(policy(services, session_timeout=4000,
                                      extra='agent { anti_entropy = "10ms", anti_entropy_rate = 100000 }'),
                               self.zk.connect).start()
        # (the small one may be read, and checked, before the wide one's first read: the session's first reads
        # are spread over a second; what counts is what goes out while reads wait)
        exists_while_waiting = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = s.metrics()
            if m.get("scout_zk_reads_waiting", 0) > 0:
                exists_while_waiting.append(m.get('scout_zk_requests_total{op="exists"}', 0))
            v = s.services()
            if v["wide0"]["state"] == "synced" and v["wide0"]["endpoints"] == 4000 and v["narrow"]["state"] == "synced":
                break
        self.assertGreater(len(exists_while_waiting), 1, "seen while reads waited for the window")
        self.assertEqual(exists_while_waiting[-1], exists_while_waiting[0],
                         "no anti-entropy exists while reads waited (%d samples)" % len(exists_while_waiting))
        # the checks were held back, not dropped: once nothing waits they run (every child is asked)
        wait_until(lambda: s.metric('scout_zk_requests_total{op="exists"}') >= 4200,
                   what="anti-entropy checks after the sync")
        self.assertEqual(s.metric("scout_service_anti_entropy_repairs_total", "wide0"), 0)
        self.assertEqual(s.metric("scout_service_anti_entropy_repairs_total", "narrow"), 0)

    def test_due_checks_are_held_while_a_burst_of_reads_waits(self):
        # The ordering fact behind the test above, made certain: a synced service is due for a check every 10 ms
        # when 4,000 children appear at once (one transaction: the next list read sees all of them), so 3,000
        # of their data reads wait for the window; the checks due meanwhile are held back and counted
        kz = self.zk.client()
        kz.ensure_path("/narrow/svc")
        for i in range(20):
            kz.create("/narrow/svc/ep-%d" % i, json.dumps({"host": "10.3.0.1", "port": 100 + i}).encode())
        kz.ensure_path(wide_path(0))
        services = {"narrow": 'path = "/narrow/svc", protect = false',
                    "wide0": 'path = "%s", protect = false' % wide_path(0)}
        self.scout = s = Scout(policy(services, session_timeout=4000,
                                      extra='agent { anti_entropy = "10ms", anti_entropy_rate = 100000 }'),
                               self.zk.connect).start()
        wait_until(lambda: s.state("narrow") == "synced" and s.state("wide0") == "synced"
                   and s.metric("scout_service_anti_entropy_checks_total", "narrow") > 0,
                   what="both synced and the small one checked")
        held = s.metric("scout_anti_entropy_held_total")
        tx = kz.transaction()
        for i in range(4000):
            tx.create("%s/ep-%04d" % (wide_path(0), i), json.dumps({"host": "10.4.0.1", "port": 1000 + i}).encode())
        self.assertTrue(all(r is True or isinstance(r, str) for r in tx.commit()), "the 4,000 creates applied")
        wait_until(lambda: len(s.ids("wide0")) == 4000, timeout=120, what="the burst published")
        self.assertGreater(s.metric("scout_anti_entropy_held_total"), held,
                           "checks due while 3,000 reads waited were held back")
        self.assertEqual(s.metric("scout_service_anti_entropy_repairs_total", "narrow"), 0)

    @staticmethod
    def session_ids(s):
        status, _, body = s.request("/v1/agent")
        assert status == 200, status
        return {x["index"]: x["session_id"] for x in json.loads(body)["zookeeper"]["sessions"]}

    def test_spread_watches_rearm_after_every_session_expires(self):
        # a tiny budget spreads 120 children (~7.7 KB of watches) over several sessions; all of them expire while
        # the agent is frozen
        kz = self.zk.client()
        kz.ensure_path("/small/svc")
        for i in range(120):
            kz.create(small(i), json.dumps({"host": "10.6.0.1", "port": 1000 + i}).encode())
        self.scout = s = Scout(policy({"svc": 'path = "/small/svc"'}, session_timeout=2000,
                                      zookeeper="watch_budget = 4096"), self.zk.connect).start()
        wait_until(lambda: s.state("svc") == "synced" and len(s.ids("svc")) == 120, what="synced")
        nsessions = len(self.watch_bytes(s))
        self.assertGreaterEqual(nsessions, 2, "spread over the pool")
        self.assertLessEqual(max(self.watch_bytes(s).values()), 4096)

        def ports():
            return {e["id"]: e["port"] for e in s.endpoints("svc")[0]}

        sids = set(self.session_ids(s).values())
        s.pause()
        # until the server has expired every session of the frozen agent (and closed its connection)
        wait_until(lambda: not any("sid=%s" % sid in self.zk.four("cons") for sid in sids),
                   what="the server expired every session of the frozen agent")
        for i in range(0, 120, 7):
            kz.set(small(i), json.dumps({"host": "10.6.0.1", "port": 2000 + i}).encode())
        s.resume()
        wait_until(lambda: s.metric("scout_zk_session_expirations_total") >= nsessions, what="every session expired")
        want = {small(i)[len("/small/svc/"):]: (2000 + i if i % 7 == 0 else 1000 + i) for i in range(120)}
        wait_until(lambda: ports() == want, what="the changes made while frozen, on every session")
        # the data watches were re-armed on each new session: later changes arrive through them
        for i in range(0, 120, 5):
            kz.set(small(i), json.dumps({"host": "10.6.0.1", "port": 3000 + i}).encode())
            want[small(i)[len("/small/svc/"):]] = 3000 + i
        wait_until(lambda: ports() == want, what="later changes on every session")
        self.assertEqual(s.metric("scout_service_anti_entropy_repairs_total", "svc"), 0, "no watch was missed")
        wait_until(lambda: s.health()[0] == 200, what="healthy")


if __name__ == "__main__":
    unittest.main()

"""Discovery basics against a real ZooKeeper: what a user sees in the API after creating, deleting and changing
znodes with an independent client (kazoo), a path that appears later, garbage data, the unix socket, health and a
clean SIGTERM."""

import json
import os
import signal
import socket
import stat
import time
import unittest

from scoutharness import policy, wait_until, Scout, ZkCase


class Discovery(ZkCase):
    def setUp(self):
        self.scout = None

    def tearDown(self):
        if self.scout:
            self.scout.stop()

    def start(self, services, zookeeper="", **kw):
        self.scout = Scout(policy(services, zookeeper=zookeeper), self.zk.connect, **kw).start()
        return self.scout

    def test_create_delete_and_change_data_show_in_api(self):
        self.kz.ensure_path("/t1/orders")
        self.kz.create("/t1/orders/10.0.0.1:8080")
        s = self.start({"orders": 'path = "/t1/orders", codec = "plain"'})
        wait_until(lambda: s.ids("orders") == ["10.0.0.1:8080"], what="initial list")
        self.assertEqual(s.state("orders"), "synced")

        self.kz.create("/t1/orders/10.0.0.2:8080")
        self.kz.create("/t1/orders/node-a", b'{"host":"10.0.0.3","port":9000,"weight":3,"meta":{"zone":"a"}}')
        wait_until(lambda: s.ids("orders") == ["10.0.0.1:8080", "10.0.0.2:8080", "node-a"], what="creates")

        eps, headers = s.endpoints("orders")
        node_a = [ep for ep in eps if ep["id"] == "node-a"][0]
        self.assertEqual((node_a["host"], node_a["port"], node_a["weight"], node_a["meta"]),
                         ("10.0.0.3", 9000, 3, {"zone": "a"}))
        self.assertEqual(node_a["zxid"], self.kz.get("/t1/orders/node-a")[1].mzxid)
        index1 = int(headers["X-Scout-Index"])

        # a data change is picked up through the data watch, and the index moves forward
        self.kz.set("/t1/orders/node-a", b'{"host":"10.0.0.3","port":9000,"weight":7}')
        wait_until(lambda: [ep["weight"] for ep in s.endpoints("orders")[0] if ep["id"] == "node-a"] == [7],
                   what="data change")
        self.assertGreater(int(s.endpoints("orders")[1]["X-Scout-Index"]), index1)

        # the same bytes written again are a new version: the endpoint's zxid follows the node's mzxid
        same = b'{"host":"10.0.0.3","port":9000,"weight":7}'
        self.kz.set("/t1/orders/node-a", same)
        mzxid = self.kz.get("/t1/orders/node-a")[1].mzxid
        wait_until(lambda: [ep["zxid"] for ep in s.endpoints("orders")[0] if ep["id"] == "node-a"] == [mzxid],
                   what="zxid of the rewritten node")

        self.kz.delete("/t1/orders/10.0.0.1:8080")
        wait_until(lambda: s.ids("orders") == ["10.0.0.2:8080", "node-a"], what="delete")

    def test_a_dubbo_warmup_ramp_reaches_full_weight_without_any_event(self):
        # a provider registered 50 s ago with a 60 s warm-up: dubbo consumers ramp its weight up to 100; nothing
        # in ZooKeeper changes meanwhile, so the agent has to move the ramp on by itself. The provider is created
        # once the agent serves the empty list, so the 10 s left of its warm-up do not include the agent's start
        # (under valgrind on a loaded host a start took longer than that, and the first weight was already 100).
        import urllib.parse
        self.kz.ensure_path("/t9/com.example.Foo/providers")
        s = self.start({"foo": 'path = "/t9/com.example.Foo/providers", codec = "dubbo"'})
        wait_until(lambda: s.request("/v1/services/foo")[0] == 200, what="the empty list served")
        stamp = int(time.time() * 1000) - 50000
        url = ("dubbo://10.0.0.9:20880/com.example.Foo?side=provider&timestamp=%d&warmup=60000&weight=100"
               % stamp)
        self.kz.create("/t9/com.example.Foo/providers/" + urllib.parse.quote(url, safe=""))
        first = wait_until(lambda: s.endpoints("foo")[0], what="the provider")[0]["weight"]
        self.assertLess(first, 100)
        wait_until(lambda: s.endpoints("foo")[0][0]["weight"] == 100, timeout=40, what="full weight")

    def test_a_codec_proxy_endpoint_is_published_as_lua_reads_it(self):
        # a user codec may return a proxy: its fields under __index; the boundary reads them as Lua does
        self.kz.create("/t10/orders/node-p", b"10.0.0.7:7007", makepath=True)
        s = self.start({"orders": 'path = "/t10/orders", codec = { decode = function(name, data)\n'
                        '  local host, port = data:match("^(.*):(%d+)$")\n'
                        '  return setmetatable({}, { __index = { host = host, port = tonumber(port),\n'
                        '                                      meta = { via = "proxy" } } })\n'
                        'end }'})
        eps = wait_until(lambda: s.endpoints("orders")[0], what="the proxy endpoint")
        self.assertEqual([(e["id"], e["host"], e["port"], e["meta"]) for e in eps],
                         [("node-p", "10.0.0.7", 7007, {"via": "proxy"})])
        self.assertEqual(s.metric("scout_service_rejected_total", "orders"), 0)

    def test_each_change_is_logged_at_debug_level_only(self):
        # The runtime's line per change is formatted only when the log level lets it out (agent.log_enabled):
        # at debug it is written for every change, at info never (read once the change is served: the line is
        # logged before the list is published).
        self.kz.ensure_path("/t1/debuglog")
        self.kz.create("/t1/debuglog/10.0.0.1:8080")
        s = self.start({"dbg": 'path = "/t1/debuglog", codec = "plain"'}, log_level="debug")
        wait_until(lambda: s.ids("dbg") == ["10.0.0.1:8080"], what="initial list")
        self.kz.create("/t1/debuglog/10.0.0.2:8080")
        wait_until(lambda: s.ids("dbg") == ["10.0.0.1:8080", "10.0.0.2:8080"], what="the creation served")
        self.kz.delete("/t1/debuglog/10.0.0.1:8080")
        wait_until(lambda: 'policy: service "dbg": +0 -1 ~0' in s.log(), what="the deletion's debug line")
        s.stop()
        self.scout = None
        s = self.start({"dbg": 'path = "/t1/debuglog", codec = "plain"'}, log_level="info")
        wait_until(lambda: s.ids("dbg") == ["10.0.0.2:8080"], what="the list at info level")
        self.kz.delete("/t1/debuglog/10.0.0.2:8080")
        self.kz.create("/t1/debuglog/10.0.0.3:8080")
        wait_until(lambda: s.ids("dbg") == ["10.0.0.3:8080"], what="the changes served")
        self.assertNotIn('service "dbg": +', s.log())

    def test_path_created_later_is_discovered(self):
        s = self.start({"late": 'path = "/t2/late/providers"'})
        wait_until(lambda: s.state("late") == "synced", what="synced on a missing path")
        self.assertEqual(s.ids("late"), [])
        self.kz.create("/t2/late/providers/127.0.0.1:7001", makepath=True)
        wait_until(lambda: s.ids("late") == ["127.0.0.1:7001"], what="path created")
        # the parent deleted and created again: still watched
        self.kz.delete("/t2/late", recursive=True)
        wait_until(lambda: s.ids("late") == [], what="path deleted")
        self.kz.create("/t2/late/providers/127.0.0.1:7002", makepath=True)
        wait_until(lambda: s.ids("late") == ["127.0.0.1:7002"], what="path re-created")

    def test_garbage_data_is_counted_and_skipped(self):
        self.kz.ensure_path("/t3/svc")
        self.kz.create("/t3/svc/good", b'{"host":"10.1.1.1","port":80}')
        self.kz.create("/t3/svc/bad-json", b'{"host":')
        self.kz.create("/t3/svc/bad-port", b'10.1.1.2:99999')
        self.kz.create("/t3/svc/binary", bytes(range(256)))
        self.kz.create("/t3/svc/empty", b'')
        self.kz.create("/t3/svc/10.1.1.3:81")
        s = self.start({"svc": 'path = "/t3/svc"'})
        wait_until(lambda: s.ids("svc") == ["10.1.1.3:81", "good"], what="good endpoints only")
        self.assertGreaterEqual(s.metric("scout_service_decode_errors_total", "svc"), 4)
        self.assertIn("skipping child bad-json", s.log())
        # a bad child later does not disturb the others
        self.kz.create("/t3/svc/bad-late", b'not an endpoint')
        self.kz.create("/t3/svc/10.1.1.4:82")
        wait_until(lambda: s.ids("svc") == ["10.1.1.3:81", "10.1.1.4:82", "good"], what="later good child")
        self.assertTrue(s.alive())

    def test_unix_socket_is_private_and_serves(self):
        path = "/tmp/scout-it-%d.sock" % os.getpid()
        self.kz.ensure_path("/t4/svc")
        self.kz.create("/t4/svc/127.0.0.1:1234")
        s = self.start({"svc": 'path = "/t4/svc"'}, api="unix:" + path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:1234"], what="list over unix socket")
        self.assertEqual(s.stop(), 0)
        self.assertFalse(os.path.exists(path), "socket file removed on exit")

    def test_health_and_services_listing(self):
        self.kz.ensure_path("/t5/a")
        self.kz.create("/t5/a/127.0.0.1:1")
        s = self.start({"a": 'path = "/t5/a"', "b": 'path = "/t5/b"'})
        wait_until(lambda: s.health()[0] == 200, what="healthy")
        svcs = s.services()
        self.assertEqual(set(svcs), {"a", "b"})
        self.assertEqual((svcs["a"]["endpoints"], svcs["a"]["path"], svcs["a"]["state"]), (1, "/t5/a", "synced"))
        status, headers, body = s.request("/v1/services/nope")
        self.assertEqual((status, json.loads(body)), (404, {"error": "no such service"}))

    def test_watches_sharded_over_sessions(self):
        for i in range(6):
            self.kz.create("/t7/s%d/127.0.0.1:%d" % (i, 100 + i), makepath=True)
            self.kz.create("/t7/s%d/id-%d" % (i, i), b'{"host":"10.0.0.1","port":%d}' % (200 + i))
        services = {"s%d" % i: 'path = "/t7/s%d"' % i for i in range(6)}
        s = self.start(services, zookeeper="sessions = 3")
        for i in range(6):
            wait_until(lambda i=i: s.ids("s%d" % i) == ["127.0.0.1:%d" % (100 + i), "id-%d" % i],
                       what="service s%d" % i)
        m = s.metrics()
        self.assertEqual(m["scout_zk_sessions_created_total"], 3)
        for i in range(3):
            self.assertEqual(m['scout_session_connected{session="%d"}' % i], 1)
            # two services per session, each: its path plus one data-watched child path
            self.assertEqual(m['scout_session_watch_bytes{session="%d"}' % i],
                             2 * (4 + len("/t7/s0") + 4 + len("/t7/s0/id-0")))
        self.assertEqual(s.health()[0], 200)

    def test_blocking_query_wakes_on_change_and_times_out_otherwise(self):
        self.kz.ensure_path("/t8/svc")
        self.kz.create("/t8/svc/127.0.0.1:1")
        s = self.start({"svc": 'path = "/t8/svc"'})
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:1"], what="initial")
        _, headers = s.endpoints("svc")
        index = int(headers["X-Scout-Index"])

        # already past the index: answers at once (a parked query would wait 600 s; the client gives up after 10)
        status, _, _ = s.request("/v1/services/svc?index=%d&wait=600s" % (index - 1))
        self.assertEqual(status, 200)

        # nothing changes: answers when the wait ends, with the same index (that it does not answer at once is
        # the parked query's below)
        status, h, body = s.request("/v1/services/svc?index=%d&wait=700ms" % index)
        self.assertEqual((status, int(h["X-Scout-Index"])), (200, index))

        # parked: a later request on another connection is answered while the query still has no answer
        parked = s._conn()
        parked.request("GET", "/v1/services/svc?index=%d&wait=30s" % index)
        self.assertEqual(s.request("/v1/services/svc")[0], 200)
        self.assertEqual(s.request("/v1/health")[0], 200)
        parked.sock.setblocking(False)
        with self.assertRaises(BlockingIOError, msg="the query is parked"):
            parked.sock.recv(1, socket.MSG_PEEK)
        parked.sock.settimeout(10)

        # a change while parked: the query wakes with the new list and a larger index
        self.kz.create("/t8/svc/127.0.0.1:2")
        r = parked.getresponse()
        status, h, body = r.status, dict(r.getheaders()), r.read()
        parked.close()
        self.assertEqual(status, 200)
        self.assertGreater(int(h["X-Scout-Index"]), index)
        self.assertEqual(sorted(e["id"] for e in json.loads(body)), ["127.0.0.1:1", "127.0.0.1:2"])

        status, _, body = s.request("/v1/services/svc?index=abc")
        self.assertEqual(status, 400)
        status, _, body = s.request("/v1/services/svc?index=%d&wait=soon" % index)
        self.assertEqual(status, 400)
        # "nan" and "inf" parse as numbers; a NaN timer would stall every timer of the agent's loop
        for bad in ("nan", "inf", "nans", "-1s"):
            status, _, body = s.request("/v1/services/svc?index=%d&wait=%s" % (index, bad))
            self.assertEqual(status, 400, bad)
        self.assertEqual(s.health()[0], 200)

    def test_a_change_answers_exactly_its_services_parked_queries(self):
        # issue 14: parked queries hang off their service; a publish answers its own waiters, at the new index,
        # and leaves every other service's waiters parked
        names = ["s%d" % i for i in range(5)]
        for n in names:
            self.kz.create("/t9/%s/127.0.0.1:1" % n, makepath=True)
        s = self.start({n: 'path = "/t9/%s"' % n for n in names})
        for n in names:
            wait_until(lambda n=n: s.ids(n) == ["127.0.0.1:1"], what="initial " + n)
        index = {n: int(s.endpoints(n)[1]["X-Scout-Index"]) for n in names}
        parked = {}
        for n in names:
            parked[n] = []
            for _ in range(3):
                c = s._conn()
                c.request("GET", "/v1/services/%s?index=%d&wait=60s" % (n, index[n]))
                parked[n].append(c)
        wait_until(lambda: s.metrics()["scout_http_parked_queries"] == 15, what="15 parked")

        def answers(n, new_id):
            for c in parked.pop(n):
                r = c.getresponse()
                status, h, body = r.status, dict(r.getheaders()), r.read()
                c.close()
                self.assertEqual(status, 200)
                self.assertGreater(int(h["X-Scout-Index"]), index[n])
                self.assertEqual(int(h["X-Scout-Index"]), int(s.endpoints(n)[1]["X-Scout-Index"]))
                self.assertEqual(sorted(e["id"] for e in json.loads(body)), ["127.0.0.1:1", new_id])

        self.kz.create("/t9/s2/127.0.0.1:2")
        answers("s2", "127.0.0.1:2")
        # a later change on another service is answered after s2's: had s2's publish woken anyone else, that
        # answer would already be on its socket
        self.kz.create("/t9/s4/127.0.0.1:3")
        answers("s4", "127.0.0.1:3")
        for n, conns in parked.items():
            for c in conns:
                c.sock.setblocking(False)
                with self.assertRaises(BlockingIOError, msg="%s's query is still parked" % n):
                    c.sock.recv(1, socket.MSG_PEEK)
        self.assertEqual(s.metrics()["scout_http_parked_queries"], 9)
        # parked again on the services just answered: the agent keeps the waiters and entries it let go and
        # hands them to these (api.c's spares), which must hold nothing of their last query: one closed while
        # parked is dropped alone, the others are answered once, at s2's next index, with its new list
        for n in ("s2", "s4"):
            index[n] = int(s.endpoints(n)[1]["X-Scout-Index"])
            parked[n] = []
            for _ in range(3):
                c = s._conn()
                c.request("GET", "/v1/services/%s?index=%d&wait=60s" % (n, index[n]))
                parked[n].append(c)
        wait_until(lambda: s.metrics()["scout_http_parked_queries"] == 15, what="15 parked again")
        parked["s2"].pop(1).close()
        wait_until(lambda: s.metrics()["scout_http_parked_queries"] == 14, what="a closed query dropped")
        self.kz.create("/t9/s2/127.0.0.1:4")
        for c in parked.pop("s2"):
            r = c.getresponse()
            status, h, body = r.status, dict(r.getheaders()), r.read()
            c.close()
            self.assertEqual(status, 200)
            self.assertEqual(int(h["X-Scout-Index"]), int(s.endpoints("s2")[1]["X-Scout-Index"]))
            self.assertEqual(sorted(e["id"] for e in json.loads(body)), ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:4"])
        self.assertEqual(s.metrics()["scout_http_parked_queries"], 12)
        # and once more: the waiter of the query that was dropped (unlinked from the middle of its list) is
        # handed out again, last, so it heads s2's list
        index["s2"] = int(s.endpoints("s2")[1]["X-Scout-Index"])
        again = []
        for _ in range(3):
            c = s._conn()
            c.request("GET", "/v1/services/s2?index=%d&wait=60s" % index["s2"])
            again.append(c)
        wait_until(lambda: s.metrics()["scout_http_parked_queries"] == 15, what="s2 parked a third time")
        self.kz.delete("/t9/s2/127.0.0.1:1")
        for c in again:
            r = c.getresponse()
            status, h, body = r.status, dict(r.getheaders()), r.read()
            c.close()
            self.assertEqual(status, 200)
            self.assertGreater(int(h["X-Scout-Index"]), index["s2"])
            self.assertEqual(sorted(e["id"] for e in json.loads(body)), ["127.0.0.1:2", "127.0.0.1:4"])
        self.assertEqual(s.metrics()["scout_http_parked_queries"], 12)
        for c in parked["s4"]:
            c.sock.setblocking(False)
            with self.assertRaises(BlockingIOError, msg="s4's query is still parked"):
                c.sock.recv(1, socket.MSG_PEEK)
        for conns in parked.values():
            for c in conns:
                c.close()
        # the closed clients' queries are dropped, not answered into the void
        wait_until(lambda: s.metrics()["scout_http_parked_queries"] == 0, what="parked dropped")
        self.assertEqual(s.health()[0], 200)

    def test_one_encoding_of_the_new_index_serves_every_parked_query(self):
        # issue 14: a publish answers its parked queries from one JSON encoding of the new index, shared (not
        # encoded, nor joined, once per client); the agent counts encodings in scout_api_list_encodings_total
        self.kz.create("/t10/127.0.0.1:1", makepath=True)
        s = self.start({"a": 'path = "/t10"'})
        wait_until(lambda: s.ids("a") == ["127.0.0.1:1"], what="initial list")
        index = int(s.endpoints("a")[1]["X-Scout-Index"])
        conns = []
        for _ in range(20):
            c = s._conn()
            c.request("GET", "/v1/services/a?index=%d&wait=60s" % index)
            conns.append(c)
        wait_until(lambda: s.metrics()["scout_http_parked_queries"] == 20, what="20 parked")
        before = s.metrics()["scout_api_list_encodings_total"]
        self.kz.create("/t10/127.0.0.1:2")
        answers = set()
        for c in conns:
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            answers.add((int(r.getheader("X-Scout-Index")), r.read()))
            c.close()
        self.assertEqual(len(answers), 1, "every parked query has the same index and bytes")
        new_index, body = answers.pop()
        self.assertGreater(new_index, index)
        self.assertEqual(sorted(ep["id"] for ep in json.loads(body)), ["127.0.0.1:1", "127.0.0.1:2"])
        self.assertEqual(s.metrics()["scout_api_list_encodings_total"] - before, 1)
        # asked again at the same index: the same encoding, not a new one
        self.assertEqual(s.endpoints("a")[1]["X-Scout-Index"], str(new_index))
        self.assertEqual(s.metrics()["scout_api_list_encodings_total"] - before, 1)

    def test_sigterm_exits_zero_and_closes_the_session(self):
        s = self.start({"a": 'path = "/t6"'})
        wait_until(lambda: s.health()[0] == 200, what="healthy")
        before = self.zk.four("cons").count("/127.0.0.1:")
        self.assertEqual(s.stop(signal.SIGTERM), 0)
        # the session was closed, not left to time out: the server dropped its connection at once
        wait_until(lambda: self.zk.four("cons").count("/127.0.0.1:") == before - 1, timeout=3,
                   what="server-side connection gone")
        self.assertIn("stopped", s.log())


if __name__ == "__main__":
    unittest.main()

"""The loop never stalls (issue 10): attacks driven from outside against a real ZooKeeper, each while the agent holds a
registration under a 4 s session timeout. What a user needs is asserted: the registration's session (its
ephemeralOwner) is the same after the attack as before, the node is never deleted (a kazoo watch records any deletion),
/v1/health answers 200 throughout, new clients are served, and the loop-stall histogram exists and moves.

- explain flood: 300 `GET /v1/explain/big` at 5,000 children from clients that close without reading
- slowloris: connections dribbling one header byte a second are closed by the request deadline
- idle-connection flood under a low fd limit: the connection cap leaves fds to the health check
- EMFILE: a TCP check that cannot get an fd is "unknown", never a reason to deregister
- /metrics at 10,000 services (issue 14): scrapes, concurrent and abandoned, never hold the loop past the stall
  threshold (the agent's own scout_loop_stalls_total does not move), and every scrape is whole and promtool-clean
- the output writer threads run at a lower priority than the loop (issue 14: they took its CPU during snapshot writes)
- /v1/services at 10,000 services (issue 14): the table is rendered in slices, so a health request sent just after it
  is answered first (kernel arrival times of the two answers, the ordering fact), and every table is whole
"""

import json
import os
import re
import resource
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from scoutharness import Scout, free_port, wait_until
from zkharness import SharedZooKeeper

REG = "/loop/reg"
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)     # Linux's value; Python does not name it


def populate(kz, path, n):
    kz.ensure_path(path)
    for start in range(0, n, 1000):
        pending = [kz.create_async("%s/10.%d.%d.%d:8080" % (path, i // 65536, i // 256 % 256, i % 256), b"")
                   for i in range(start, min(n, start + 1000))]
        for p in pending:
            p.get(timeout=30)


class Listener:
    """A local TCP service for health checks: accepts and counts."""

    def __init__(self):
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.accepted = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            c.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class HealthProbe:
    """Asks /v1/health on fresh connections, back to back, until stopped; records every answer or failure."""

    def __init__(self, scout):
        self.scout = scout
        self.results = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stopping:
            try:
                self.results.append(self.scout.request("/v1/health")[0])
            except Exception as e:      # a timeout or a refused connection is a failure to report
                self.results.append(repr(e))
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.thread.join()


class LoopStall(unittest.TestCase):
    def setUp(self):
        self.zk = SharedZooKeeper().start()     # an empty tree on the pass's one server (zkharness)
        self.kz = self.zk.client()
        self.scout = None
        self.deleted = []
        self.listener = None

    def tearDown(self):
        if self.scout:
            self.scout.stop()
        if self.listener:
            self.listener.close()
        self.zk.stop()

    def start(self, body, log_level="info", prefix=()):
        text = 'zookeeper { servers = "127.0.0.1:1", session_timeout = 4000 }\n' + body
        self.scout = Scout(text, self.zk.connect, log_level=log_level)
        self.scout.args = list(prefix) + self.scout.args
        return self.scout.start()

    def registered(self):
        """Waits for the registration node; returns its ephemeralOwner and records any later deletion of it."""
        kids = wait_until(lambda: self.kz.exists(REG) and self.kz.get_children(REG), what="registration node")
        self.assertEqual(len(kids), 1, kids)
        path = REG + "/" + kids[0]
        owner = self.kz.get(path)[1].ephemeralOwner

        def watch(data, stat, event):
            if event is not None and event.type == "DELETED":
                self.deleted.append(event)
        self.kz.DataWatch(path, watch)
        self.reg_path = path
        return owner

    def assert_registration_kept(self, owner):
        self.assertEqual(self.deleted, [], "the registration node was deleted")
        self.assertEqual(self.kz.get(self.reg_path)[1].ephemeralOwner, owner, "the session changed")
        self.assertEqual(self.scout.metric("scout_zk_session_expirations_total"), 0)

    def test_explain_flood_keeps_the_session_and_health(self):
        populate(self.kz, "/loop/big", 5000)
        s = self.start('service "big" { path = "/loop/big", codec = "plain" }\n'
                       'register "me" { path = "%s", codec = "rpcx", endpoint = { host = "127.0.0.1", port = 9 } }\n'
                       % REG)
        wait_until(lambda: s.services()["big"]["endpoints"] == 5000, what="5,000 endpoints")
        owner = self.registered()
        stalls0 = s.metric("scout_loop_stall_seconds_count")
        host, port = s.api.rsplit(":", 1)
        req = b"GET /v1/explain/big HTTP/1.1\r\nHost: x\r\n\r\n"
        base = s.metrics()
        base_total = base.get("scout_api_requests_total", 0) + base.get("scout_api_requests_dropped_total", 0)
        reads = [0]

        def handled(probes, in_flight):
            """The flood is handled (answered or dropped) once the agent has seen base + 300 + our own requests."""
            if self.deleted:
                return True             # no point waiting: the assertions below fail
            m = s.metrics()
            reads[0] += 1
            seen = m.get("scout_api_requests_total", 0) + m.get("scout_api_requests_dropped_total", 0)
            return seen >= base_total + 300 + len(probes.results) + reads[0] - in_flight
        with HealthProbe(s) as probe:
            for _ in range(300):                     # 300 requests; nobody reads an answer
                c = socket.create_connection((host, int(port)))
                c.sendall(req)
                c.close()
            # health answered while the flood was queued (an ordering fact, not a count that depends on speed)
            wait_until(lambda: len(probe.results) >= 1, what="a health probe answered during the flood")
            # while the probe runs, one of its requests may be in flight: all but one of the flood
            wait_until(lambda: handled(probe, 1), timeout=120, what="the flood handled")
        wait_until(lambda: handled(probe, 0), what="the whole flood handled")
        self.assertEqual(set(probe.results), {200}, probe.results)
        self.assert_registration_kept(owner)
        # a new client still gets the full answer, and the stall histogram moved
        st, _, body = s.request("/v1/explain/big")
        self.assertEqual(st, 200)
        self.assertEqual(body.count(b'"verdict"'), 5000)
        m = s.metrics()
        self.assertGreater(stalls0, 0)
        self.assertGreater(m["scout_loop_stall_seconds_count"], stalls0)
        self.assertEqual(m['scout_loop_stall_seconds_bucket{le="+Inf"}'], m["scout_loop_stall_seconds_count"])
        self.assertIn("scout_loop_stall_max_seconds", m)

    def test_a_cached_explain_follows_every_change(self):
        # explain is built once and shared until the policy's view moves: then the next answer is the new one
        self.kz.ensure_path("/loop/svc")
        self.kz.create("/loop/svc/10.0.0.1:80")
        s = self.start('service "svc" { path = "/loop/svc", codec = "plain",\n'
                       '  filter = function(ep) return ep.host ~= "10.0.0.3" end }\n')
        wait_until(lambda: s.ids("svc") == ["10.0.0.1:80"], what="first list")

        def verdicts():
            st, _, body = s.request("/v1/explain/svc")
            self.assertEqual(st, 200)
            return {c["id"]: c["verdict"] for c in json.loads(body)["children"]}
        self.assertEqual(verdicts(), {"10.0.0.1:80": "published"})
        self.assertEqual(verdicts(), {"10.0.0.1:80": "published"})      # the same answer, from the cache
        self.kz.create("/loop/svc/10.0.0.2:80")
        wait_until(lambda: "10.0.0.2:80" in s.ids("svc"), what="the new child published")
        self.assertEqual(verdicts(), {"10.0.0.1:80": "published", "10.0.0.2:80": "published"})
        # a change that publishes nothing (the filter drops it) still shows
        reads = s.metric("scout_service_reads_children_total", "svc")
        self.kz.create("/loop/svc/10.0.0.3:80")
        wait_until(lambda: s.metric("scout_service_reads_children_total", "svc") > reads, what="the child read")
        wait_until(lambda: verdicts().get("10.0.0.3:80") == "filtered", what="the filtered child explained")

    def test_the_soft_fd_limit_is_raised_to_the_hard_one(self):
        s = self.start('service "a" { path = "/loop/a", codec = "plain" }\n', prefix=("prlimit", "--nofile=256:512"))
        with open("/proc/%d/limits" % s.proc.pid) as f:
            line = [ln for ln in f if ln.startswith("Max open files")][0]
        self.assertEqual(line.split()[3:5], ["512", "512"], line)
        self.assertRegex(s.log(), r"file descriptors: limit 512 \(soft was 256, hard 512\)")
        self.assertRegex(s.log(), r"fd limit 512, \d+ kept for sessions, checks, renders and files: "
                                  r"up to \d+ API connections")

    def test_slowloris_connections_are_closed_by_the_request_deadline(self):
        s = self.start('register "me" { path = "%s", codec = "rpcx", endpoint = { host = "127.0.0.1", port = 9 } }\n'
                       % REG)
        owner = self.registered()
        host, port = s.api.rsplit(":", 1)
        conns = []
        for _ in range(40):
            c = socket.create_connection((host, int(port)))
            c.sendall(b"GET /v1/health HTTP/1.1\r\nX-Pad: ")
            conns.append(c)
        closed = [False] * len(conns)
        stop = threading.Event()

        def dribble():                  # one header byte a second on every connection, forever
            while not stop.wait(1.0):
                for i, c in enumerate(conns):
                    if not closed[i]:
                        try:
                            c.send(b"a")
                        except OSError:
                            closed[i] = True
        t = threading.Thread(target=dribble, daemon=True)
        t.start()
        try:
            # a fresh client is served while all of them are open
            self.assertEqual(s.health()[0], 200)
            for i, c in enumerate(conns):
                c.settimeout(40)        # well past the deadline (10 s); the idle timer (60 s) would reset each second
                try:
                    while c.recv(4096):
                        pass
                except ConnectionResetError:
                    pass
                except socket.timeout:
                    self.fail("connection %d still open after 40 s of dribbling" % i)
                closed[i] = True
        finally:
            stop.set()
            t.join()
            for c in conns:
                c.close()
        self.assertGreaterEqual(s.metric("scout_api_deadline_closes_total"), 40)
        self.assertEqual(s.health()[0], 200)
        self.assert_registration_kept(owner)

    def test_idle_connections_cannot_take_the_checks_fds(self):
        self.listener = Listener()
        s = self.start('register "me" { path = "%s", codec = "rpcx",\n'
                       '  endpoint = { host = "127.0.0.1", port = %d },\n'
                       '  check = { tcp = "127.0.0.1:%d", interval = 100, timeout = 500, rise = 1, fall = 1 } }\n'
                       % (REG, self.listener.port, self.listener.port), prefix=("prlimit", "--nofile=200:200"))
        owner = self.registered()
        host, port = s.api.rsplit(":", 1)
        idle = []
        try:
            for _ in range(300):        # more than the fd limit, never a request
                idle.append(socket.create_connection((host, int(port))))
            # the check keeps running with these open (3 more rounds), and the registration stays
            seen = self.listener.accepted
            wait_until(lambda: self.listener.accepted >= seen + 3 or self.deleted, what="check rounds")
            self.assertEqual(self.deleted, [], "deregistered: the health check ran out of fds")
            self.assertEqual(s.health()[0], 200)         # a new client is served
            cap = int(re.search(r"up to (\d+) API connections", s.log()).group(1))
            self.assertLess(cap, 200)
            wait_until(lambda: s.metric("scout_api_idle_evictions_total") >= 300 - cap, what="idle ones evicted")
        finally:
            for c in idle:
                c.close()
        self.assert_registration_kept(owner)

    def test_a_check_without_fds_is_unknown_and_keeps_the_registration(self):
        self.listener = Listener()
        s = self.start('register "me" { path = "%s", codec = "rpcx",\n'
                       '  endpoint = { host = "127.0.0.1", port = %d },\n'
                       '  check = { tcp = "127.0.0.1:%d", interval = 100, timeout = 500, rise = 1, fall = 1 } }\n'
                       % (REG, self.listener.port, self.listener.port), log_level="debug")
        owner = self.registered()
        pid = s.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, hard))     # every new fd fails: EMFILE
        try:
            wait_until(lambda: s.log().count("the check could not run") >= 3 or self.deleted,
                       what="check rounds without an fd")
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        self.assertEqual(self.deleted, [], "deregistered because the agent had no fd")
        self.assertRegex(s.log(), r"WARN +check: tcp 127\.0\.0\.1:\d+: unknown: tcp .*too many open files; "
                                  r"the check could not run, it stays up")
        self.assertGreaterEqual(s.metric("scout_check_unknown_total"), 3)
        # and with fds back the check runs again (the listener sees it)
        seen = self.listener.accepted
        wait_until(lambda: self.listener.accepted > seen, what="the check running again")
        self.assertEqual(s.health()[0], 200)
        self.assert_registration_kept(owner)

    def test_scrapes_of_10000_services_never_hold_the_loop(self):
        # /metrics used to render its ~130,000 lines in one callback: 100-300 ms of a held loop per scrape
        n = 10000
        s = self.start("".join('service "s%d" { path = "/loop/none/s%d", codec = "plain" }\n' % (i, i)
                               for i in range(n)))
        # start-up (the policy, 10,000 first reads) is over once every service is synced and no read is pending
        wait_until(lambda: s.health()[0] == 200, timeout=120, what="every service synced")
        wait_until(lambda: s.metric("scout_zk_reads_in_flight") == 0 and s.metric("scout_zk_reads_waiting") == 0,
                   what="the first reads done")
        m0 = s.metrics()
        host, port = s.api.rsplit(":", 1)
        bodies = []

        def scrape():
            bodies.append(s.request("/metrics"))
        with HealthProbe(s) as probe:
            for _ in range(5):
                # a scraper that leaves mid-render: its answer is dropped, the others still get theirs
                c = socket.create_connection((host, int(port)))
                c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                c.close()
                threads = [threading.Thread(target=scrape) for _ in range(2)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            wait_until(lambda: len(probe.results) >= 1, what="a health probe answered")
        m1 = s.metrics()
        held = [ln for ln in s.log().splitlines() if "held the loop" in ln]
        # the ordering fact: the loop turned many times during the scrapes, and none of those turns was a stall
        self.assertGreater(m1["scout_loop_stall_seconds_count"], m0["scout_loop_stall_seconds_count"])
        self.assertEqual(m1["scout_loop_stalls_total"], m0["scout_loop_stalls_total"], held[-5:])
        self.assertEqual(set(probe.results), {200}, probe.results)
        self.assertEqual(len(bodies), 10)
        for status, headers, body in bodies:
            self.assertEqual(status, 200)
            self.assertEqual(body.count(b"\nscout_service_endpoints{"), n)
            self.assertEqual(body.count(b"\nscout_service_protected{"), n)
            self.assertTrue(body.endswith(b"\n"))
        p = subprocess.run(["promtool", "check", "metrics"], input=bodies[-1][2], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        self.assertEqual(p.returncode, 0, p.stdout.decode()[:2000])

    def test_the_service_table_of_10000_services_lets_other_answers_through(self):
        # GET /v1/services used to render every service in one callback (~30 ms here, ~250 ms under ASan): a request
        # that came in behind it waited for all of it. Rendered in slices, the table is answered after the health
        # request that followed it; which answer the kernel delivered first is read from its receive timestamps.
        n = 10000
        s = self.start("".join('service "s%d" { path = "/loop/none/s%d", codec = "plain" }\n' % (i, i)
                               for i in range(n)))
        wait_until(lambda: s.health()[0] == 200, timeout=120, what="every service synced")
        wait_until(lambda: s.metric("scout_zk_reads_in_flight") == 0 and s.metric("scout_zk_reads_waiting") == 0,
                   what="the first reads done")
        m0 = s.metrics()
        host, port = s.api.rsplit(":", 1)

        def connect():
            c = socket.create_connection((host, int(port)))
            c.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            return c

        def first_arrival(c):
            """(kernel receive time of the answer's first bytes in ns, the whole answer)."""
            c.settimeout(60)
            data, anc, _, _ = c.recvmsg(1 << 20, socket.CMSG_SPACE(16))
            ts = [struct.unpack("qq", d[:16]) for lvl, typ, d in anc
                  if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS]
            # (once seen under ASan on a loaded host, not reproduced: say what came instead, and what the agent logged)
            self.assertTrue(ts, "no receive timestamp: recvmsg gave %r, ancillary %r; agent log ends:\n%s"
                            % (data[:200], anc, "\n".join(s.log().splitlines()[-20:])))
            while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
                    re.search(rb"(?i)content-length: *(\d+)", data).group(1)):
                more = c.recv(1 << 20)
                if not more:
                    break
                data += more
            return ts[0][0] * 10**9 + ts[0][1], data

        # Linux turns receive timestamps on for the first socket that asks through deferred work, and off again when
        # the last one closes: an answer that arrives before that work has run carries none (seen once in a
        # fresh-clone run). One socket keeps them on for the whole test, and a round trip on it that comes back
        # stamped shows they are on before the measured requests.
        keeper = connect()

        def stamped_answer():
            keeper.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            keeper.settimeout(60)
            data, anc, _, _ = keeper.recvmsg(1 << 16, socket.CMSG_SPACE(16))
            return any(lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS for lvl, typ, _ in anc)
        wait_until(stamped_answer, what="an answer with a receive timestamp")
        self.addCleanup(keeper.close)
        # A round proves something only if the health request was waiting in the agent's socket for a good part of
        # the render: on a loaded host this client can be descheduled between its two sends until the table is all
        # but done, and a request that comes in during the render's last slice is rightly answered after it. So a
        # round counts when the health request had been sent for longer (up to the table's first answer bytes) than
        # it took this client to send it after the table's (ordering facts on one clock, CLOCK_REALTIME, which the
        # kernel's receive stamps use too); other rounds are retried.
        conclusive = tries = 0
        while conclusive < 3:
            tries += 1
            self.assertLess(tries, 30, "30 rounds and this client never sent the health request in time")
            table, probe = connect(), connect()
            try:
                table.sendall(b"GET /v1/services HTTP/1.1\r\nHost: x\r\n\r\n")
                t_table_sent = time.time_ns()
                probe.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                t_probe_sent = time.time_ns()
                select.select([table, probe], [], [], 60)
                t_probe, health = first_arrival(probe)
                t_table, answer = first_arrival(table)
            finally:
                table.close()
                probe.close()
            self.assertIn(b" 200 ", health.split(b"\r\n", 1)[0])
            self.assertIn(b" 200 ", answer.split(b"\r\n", 1)[0])
            body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
            self.assertEqual(len(body), n)
            self.assertEqual(len({e["name"] for e in body}), n)
            self.assertEqual(body[0], {"name": "s0", "path": "/loop/none/s0", "endpoints": 0,
                                       "index": body[0]["index"], "state": "synced"})
            if t_table - t_probe_sent <= t_probe_sent - t_table_sent:
                continue
            conclusive += 1
            self.assertLess(t_probe, t_table, "the health request waited for the whole table")
        # and the loop turned while the tables were rendered (the stall counter is not asserted here: on a loaded
        # 2-core host a 2 ms slice can wait 100 ms for a CPU, which the agent does not control)
        self.assertGreater(s.metrics()["scout_loop_stall_seconds_count"], m0["scout_loop_stall_seconds_count"])

    def test_the_output_writers_run_below_the_loop(self):
        # on a busy host the loop's long iterations during snapshot writes were time spent waiting for a CPU the
        # writer threads held (under 1 ms of them on the CPU): the writers yield to the loop, as ps -L shows
        cache = tempfile.mkdtemp(prefix="scout-cache-")
        try:
            shm = os.path.join(cache, "scout.shm")
            s = self.start('cache { dir = "%s" }\nshm { path = "%s" }\n'
                           'service "a" { path = "/loop/a", codec = "plain" }\n' % (cache, shm))
            wait_until(lambda: s.health()[0] == 200, what="synced")

            def threads():
                out = {}
                for tid in os.listdir("/proc/%d/task" % s.proc.pid):
                    with open("/proc/%d/task/%s/stat" % (s.proc.pid, tid)) as f:
                        st = f.read()
                    comm = st[st.index("(") + 1:st.rindex(")")]
                    out.setdefault(comm, []).append(int(st[st.rindex(")") + 2:].split()[16]))     # nice
                return out
            t = wait_until(lambda: (lambda x: x if len(x.get("scout-writer", [])) >= 2 else None)(threads()),
                           what="the disk and shm writer threads")
            with open("/proc/%d/stat" % s.proc.pid) as f:      # the main thread: the loop
                st = f.read()
            loop_nice = int(st[st.rindex(")") + 2:].split()[16])
            self.assertEqual(set(t["scout-writer"]), {min(19, loop_nice + 10)}, t)
        finally:
            if self.scout:
                self.scout.stop()
                self.scout = None
            shutil.rmtree(cache, ignore_errors=True)

    def test_a_hook_that_spins_is_a_stall_the_agent_held(self):
        # the other side of telling stalls apart: 300 ms of CPU in a hook (within its 2 s budget) is the agent's
        # own hold: counted in scout_loop_stalls_total and named, never excused as a wait for a CPU
        self.kz.ensure_path("/loop/spin")
        s = self.start('agent { hook_budget = 2000 }\n'
                       'service "spin" { path = "/loop/spin", codec = "plain",\n'
                       '  on_change = function() local t = os.clock() while os.clock() - t < 0.3 do end end }\n')
        wait_until(lambda: s.health()[0] == 200, what="synced")
        m0 = s.metrics()
        self.kz.create("/loop/spin/10.0.0.1:80")
        wait_until(lambda: s.ids("spin") == ["10.0.0.1:80"], what="the change published")
        wait_until(lambda: s.metric("scout_loop_stalls_total") > m0["scout_loop_stalls_total"],
                   what="the hook's iteration counted as a stall")
        self.assertRegex(s.log(), r"held the loop for \d+ ms, \d+ ms on the CPU")


if __name__ == "__main__":
    unittest.main()

"""Answers already waiting in a session's socket are read in the same loop turn, not one turn each.

The single-threaded client reads one answer per zookeeper_process(); the loop used to poll again after each, so a
sync turned the loop once per answer (libev's iteration, the stall watch, the session's prepare: ~1.5k instructions
each, 11,000 turns at 1,000 x 10). A turn now reads on while reads it sent earlier may have been answered
(zk/session.c, read_on; scout_zk_answers_read_on_total). Here 40 data reads are made to wait, answered, in the
agent's socket before it runs again: ZooKeeper is stopped (SIGSTOP) while the agent sends them, the agent is
stopped while ZooKeeper answers, and the agent resumes only once its socket holds all 40 answers (the kernel's
receive queue for that socket, /proc/net/tcp). Without the rule every one of them costs a turn of its own and the
counter stays where it was; with it the agent reads them on from the first, and serves every new value. Watch
events alone answer no read of the agent's: 40 of them waiting in the socket are still read one turn each, since a
turn reads on only while reads sent before it may be answered (a change's lone event or answer pays no second
recv that finds nothing)."""

import json
import os
import signal
import unittest

from scoutharness import Scout, policy, wait_until
from zkharness import ZooKeeper

CHILDREN = 40
REQUESTS_DATA = 'scout_zk_requests_total{op="data"}'


def socket_inodes(pid):
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


def rx_queue(pid, port):
    """Bytes waiting to be read in pid's TCP socket(s) to the local port, per /proc/net/tcp."""
    inodes = socket_inodes(pid)
    total = 0
    with open("/proc/%d/net/tcp" % pid) as f:
        next(f)
        for line in f:
            cols = line.split()
            rem_port = int(cols[2].split(":")[1], 16)
            if rem_port == port and cols[9] in inodes:
                total += int(cols[4].split(":")[1], 16)
    return total


def data(port):
    return json.dumps({"host": "127.0.0.1", "port": port}).encode()


class ReadOn(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
        self.scout = None
        self.zk_pid = None

    def tearDown(self):
        if self.zk_pid:
            os.kill(self.zk_pid, signal.SIGCONT)
        if self.scout:
            self.scout.resume()
            self.scout.stop()
        self.zk.stop()

    def test_answers_waiting_in_the_socket_are_read_in_one_turn(self):
        kz = self.zk.client()
        kz.ensure_path("/batch/svc")
        for k in range(CHILDREN):
            kz.create("/batch/svc/ep-%02d" % k, data(7000 + k))
        # a data change is read 2 s after its event: the 40 events below are read back as 40 reads at once, well
        # after the 40 turns that read the events themselves
        svc = ('path = "/batch/svc", codec = "plain", protect = false, '
               'delay = function(ev) if ev.kind == "data" then return 2000 end return 0 end')
        self.scout = s = Scout(policy({"svc": svc}, session_timeout=20000,
                                      extra='agent { anti_entropy = "1h" }'), self.zk.connect).start()
        wait_until(lambda: s.health()[0] == 200 and len(s.ids("svc")) == CHILDREN, timeout=30, what="synced")
        with open(os.path.join(self.zk.dir, "node1", "pid")) as f:
            zk_pid = int(f.read())
        events = s.metric("scout_zk_watch_events_total")
        sent = s.metric(REQUESTS_DATA)
        read_on = s.metric("scout_zk_answers_read_on_total")

        # 40 data changes while the agent is stopped: their 40 watch events, each 4 (length) + 16 (ReplyHeader) +
        # 8 (type, state) + 4 + the path's bytes, wait in its socket; no read of the agent's is in flight
        s.pause()
        t = kz.transaction()
        for k in range(CHILDREN):
            t.set_data("/batch/svc/ep-%02d" % k, data(8000 + k))
        self.assertFalse([r for r in t.commit() if isinstance(r, Exception)])
        wait_until(lambda: rx_queue(s.proc.pid, self.zk.port()) >= CHILDREN * (4 + 16 + 8 + 4 + len(
            "/batch/svc/ep-00")), timeout=30, what="the 40 watch events waiting in the agent's socket")
        # the server stops before the agent runs again: the agent's delayed reads, whenever they go out, wait
        # unanswered in its socket (they are not answered between the events, however long reading these takes)
        self.zk_pid = zk_pid
        os.kill(zk_pid, signal.SIGSTOP)
        s.resume()
        wait_until(lambda: s.metric("scout_zk_watch_events_total") >= events + CHILDREN, timeout=30,
                   what="every data watch event read")
        # events answer no read of the agent's: a turn that read one tries no second read (a change's lone event
        # or answer costs no recv that finds nothing), so these were read one turn each
        self.assertEqual(s.metric("scout_zk_answers_read_on_total"), read_on)
        wait_until(lambda: s.metric(REQUESTS_DATA) >= sent + CHILDREN, timeout=30,
                   what="the 40 reads sent")
        # the agent stops, the server answers: 40 getData answers, each 4 (length) + 16 (ReplyHeader) + 4 + the
        # data + 68 (Stat) bytes, wait in the agent's socket
        s.pause()
        os.kill(zk_pid, signal.SIGCONT)
        self.zk_pid = None
        want = CHILDREN * (4 + 16 + 4 + len(data(8000)) + 68)
        wait_until(lambda: rx_queue(s.proc.pid, self.zk.port()) >= want, timeout=30,
                   what="the 40 answers waiting in the agent's socket")
        s.resume()
        wait_until(lambda: sorted(e["port"] for e in s.endpoints("svc")[0]) == list(range(8000, 8000 + CHILDREN)),
                   timeout=30, what="every new value served")
        # the 40 answers were not read one turn each (a turn stops early only past its budget, 10 ms of the loop)
        self.assertGreaterEqual(s.metric("scout_zk_answers_read_on_total") - read_on, 1)
        self.assertEqual(s.metric("scout_zk_session_expirations_total"), 0)
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), 1)


if __name__ == "__main__":
    unittest.main()

"""Registration guarantees that hold whatever else is going on, observed with an independent kazoo client:

- a sequential create whose answer was lost is looked for (and its node removed) even when the registration no
  longer wants a node by the time the connection comes back -- its check failed, or a reload dropped it -- so no
  phantom member lives on for the rest of the session;
- a registration node deleted by another client (an operator, a cleanup script) is created again, and the log and
  the metrics say so, as Curator's PersistentNode and Nerve do."""

import os
import signal
import threading
import unittest

from kazoo.protocol.states import EventType

from scoutharness import Scout, wait_until
from zkharness import SharedZooKeeper
from zkproxy import ZkProxy, _close

HEAD = 'zookeeper { servers = "127.0.0.1:1", session_timeout = %d }\n'
PARENT = "/guard/web"
CREATE = PARENT.encode() + b"/member_\x00\x00"     # a create's path, then its data's length (a read has digits)


class HeldProxy(ZkProxy):
    """ZkProxy whose cut holds the muted connection open until release() (rather than for a fixed linger), so a
    test can change the agent's mind while the create's answer is lost, and only then let it reconnect. Each cut
    is held by its own release(); cut_after() may be armed again for the next one."""

    def __init__(self, upstream):
        super().__init__(upstream)
        self.holds = []                          # one Event per cut, in order
        self.muted = threading.Event()           # the first cut happened

    def release(self):
        for h in self.holds:
            if not h.is_set():
                h.set()
                return

    def _up(self, c, u, state):
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                hold = None
                with self.lock:
                    if self.pattern is not None and self.pattern in b:
                        self.pattern, hold = None, threading.Event()
                        self.holds.append(hold)
                        state["mute"] = True
                u.sendall(b)
                if hold is not None:
                    self.muted.set()
                    hold.wait(60)                # the server applied it and answered into the void
                    self.cuts += 1
                    break
        except OSError:
            pass
        _close(c, u)


class RegisterGuarantees(unittest.TestCase):
    def setUp(self):
        self.zk = SharedZooKeeper().start()     # an empty tree on the pass's one server (zkharness)
        self.kz = self.zk.client()
        self.scout = None
        self.proxy = None
        self.flag = "/tmp/scout-guard-healthy-%d" % os.getpid()

    def tearDown(self):
        if self.proxy:
            for _ in range(len(self.proxy.holds)):
                self.proxy.release()
        if self.scout:
            self.scout.stop()
        if self.proxy:
            self.proxy.stop()
        if os.path.exists(self.flag):
            os.unlink(self.flag)
        self.zk.stop()

    def start(self, body, timeout=20000, connect=None):
        self.scout = Scout(HEAD % timeout + body, connect or self.zk.connect).start()
        return self.scout

    def kids(self):
        return self.kz.get_children(PARENT) if self.kz.exists(PARENT) else []

    def lose_the_create(self, body):
        """Start an agent whose first create of a member under PARENT is applied by the server but whose answer is
        held back; returns once the server holds that member."""
        self.proxy = HeldProxy(self.zk.connect).start()
        self.proxy.cut_after(CREATE)
        self.kz.ensure_path(PARENT)
        self.start(body, connect=self.proxy.connect)
        self.assertTrue(self.proxy.muted.wait(30), "the create was never sent")
        wait_until(lambda: len(self.kids()) == 1, what="the server created the member")
        return self.kids()[0]

    # -- a lost create is looked for whatever the registration wants now --------------------------------------------
    def test_a_lost_create_is_removed_when_the_check_failed_meanwhile(self):
        open(self.flag, "w").close()
        member = self.lose_the_create(
            'register "ss" { path = "%s", codec = "serverset", endpoint = { host = "10.0.0.7", port = 31943 },\n'
            '  check = { lua = function() return scout.read_file("%s") ~= nil end,\n'
            '            interval = 100, rise = 1, fall = 1 } }\n' % (PARENT, self.flag))
        s = self.scout
        os.unlink(self.flag)                      # the service goes down while the answer is lost
        wait_until(lambda: "ss: unhealthy" in s.log(), what="the check failed")
        self.proxy.release()                      # the connection drops; the agent reconnects into its session
        wait_until(lambda: self.proxy.cuts == 1, what="the cut connection closed")
        # an unhealthy service has no member: the one the lost create made is found and removed
        wait_until(lambda: self.kids() == [], what="the phantom member removed")
        wait_until(lambda: "%s/%s removed" % (PARENT, member) in s.log(), what="the agent saw its delete answered")
        self.assertIn("was lost", s.log())
        self.assertIn("adopted %s/%s" % (PARENT, member), s.log())
        # and the agent still drives it: healthy again, one member
        open(self.flag, "w").close()
        wait_until(lambda: len(self.kids()) == 1, what="registered again once healthy")
        self.assertEqual(s.stop(), 0)
        self.scout = None
        self.assertEqual(self.kids(), [])

    def test_a_lost_create_is_removed_when_a_reload_dropped_the_registration(self):
        member = self.lose_the_create(
            'service "a" { path = "/guard/a" }\n'
            'register "ss" { path = "%s", codec = "serverset", endpoint = { host = "10.0.0.7", port = 31943 } }\n'
            % PARENT)
        s = self.scout
        with open(s.policy_file, "w") as f:      # the registration is dropped while its create is in doubt
            f.write(HEAD % 20000 + 'service "a" { path = "/guard/a" }\n')
        s.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reloaded" in s.log(), what="reloaded")
        self.proxy.release()
        wait_until(lambda: self.proxy.cuts == 1, what="the cut connection closed")
        wait_until(lambda: self.kids() == [], what="the phantom member of the dropped registration removed")
        wait_until(lambda: "%s/%s removed" % (PARENT, member) in s.log(), what="the agent saw its delete answered")
        self.assertEqual(s.metric("scout_session_connected{session=\"0\"}"), 1)   # the same session, still up
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), 1)

    def test_a_duplicate_member_is_deleted_and_the_registration_withdrawn_cleanly(self):
        # Two creates in doubt that both made a member with our bytes: the first one's answer is lost and its
        # member altered by someone (so the look does not recognise it), the second one's answer is lost too, and
        # the first member is then set back. The next look finds two members of ours: one is adopted, the other
        # deleted as a duplicate. Then a reload drops the registration. Under ASan this runs the duplicate's
        # delete and the withdrawal through freed-memory checks.
        member = self.lose_the_create(
            'service "a" { path = "/guard/a" }\n'
            'register "ss" { path = "%s", codec = "serverset", endpoint = { host = "10.0.0.7", port = 31943 } }\n'
            % PARENT)
        s = self.scout
        first = PARENT + "/" + member
        body = self.kz.get(first)[0]
        self.kz.set(first, b"altered by an operator")
        self.proxy.cut_after(CREATE)                # the next create's answer is lost as well
        self.proxy.release()
        wait_until(lambda: len(self.proxy.holds) == 2, what="the second create sent and its answer held")
        wait_until(lambda: len(self.kids()) == 2, what="the server made the second member")
        self.kz.set(first, body)                     # both members now hold exactly what the agent sent
        self.proxy.release()
        wait_until(lambda: "a duplicate of" in s.log(), what="the duplicate found")
        wait_until(lambda: len(self.kids()) == 1, what="the duplicate deleted")
        kept = PARENT + "/" + self.kids()[0]
        wait_until(lambda: "adopted %s" % kept in s.log(), what="the other one adopted")
        with open(s.policy_file, "w") as f:
            f.write(HEAD % 20000 + 'service "a" { path = "/guard/a" }\n')
        s.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.kids() == [], what="withdrawn by the reload")
        wait_until(lambda: "%s removed" % kept in s.log(), what="the agent saw its delete answered")
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), 1)
        self.assertEqual(s.stop(), 0)               # under ASan: nothing read after it was freed
        self.scout = None

    # -- a node deleted behind the agent's back is created again ---------------------------------------------------
    def test_a_node_deleted_by_another_client_is_recreated(self):
        s = self.start('register "r" { path = "/guard/rpc", codec = "rpcx",\n'
                       '  endpoint = { host = "127.0.0.1", port = 9301, weight = 3 } }\n', timeout=4000)
        path = "/guard/rpc/tcp@127.0.0.1:9301"
        wait_until(lambda: self.kz.exists(path), what="registered")
        owner = self.kz.exists(path).ephemeralOwner
        back = threading.Event()

        def watch(ev):
            if ev.type == EventType.CREATED:
                back.set()
            elif not back.is_set():
                self.kz.exists(path, watch=watch)

        self.kz.delete(path)                              # an operator's cleanup script
        self.kz.exists(path, watch=watch)                 # armed after the delete: fires on the re-creation
        if self.kz.exists(path):
            back.set()
        self.assertTrue(back.wait(30), "the node was not created again")
        data, stat = self.kz.get(path)
        self.assertEqual((data, stat.ephemeralOwner), (b"weight=3", owner))     # ours, same session, same body
        wait_until(lambda: "deleted by another client" in s.log(), what="the log line")
        self.assertRegex(s.log(), r"WARN  register: r: node %s deleted by another client; re-created" % path)
        self.assertEqual(s.metric("scout_registrations_recreated_total"), 1)

        # again: the agent watches the node it re-created, too
        stat = self.kz.exists(path)
        self.kz.delete(path)
        wait_until(lambda: (lambda st: st is not None and st.czxid != stat.czxid)(self.kz.exists(path)),
                   what="re-created a second time")
        wait_until(lambda: s.metric("scout_registrations_recreated_total") == 2, what="counted twice")

        # its own deletions are not someone else's: SIGTERM removes it and nothing re-creates it
        self.assertEqual(s.stop(), 0)
        self.scout = None
        self.assertIsNone(self.kz.exists(path))
        self.assertEqual(s.log().count("deleted by another client"), 2)

    def test_a_node_deleted_by_another_client_is_not_recreated_while_unhealthy(self):
        open(self.flag, "w").close()
        s = self.start('register "r" { path = "/guard/h", codec = "rpcx",\n'
                       '  endpoint = { host = "127.0.0.1", port = 9302, weight = 3 },\n'
                       '  check = { lua = function() local f = scout.read_file("%s");\n'
                       '            return f ~= nil end, interval = 100, rise = 1, fall = 1 } }\n' % self.flag,
                       timeout=4000)
        path = "/guard/h/tcp@127.0.0.1:9302"
        wait_until(lambda: self.kz.exists(path), what="registered")
        os.unlink(self.flag)
        wait_until(lambda: self.kz.exists(path) is None, what="withdrawn while unhealthy")
        self.assertNotIn("deleted by another client", s.log())   # its own deletion
        open(self.flag, "w").close()
        wait_until(lambda: self.kz.exists(path), what="healthy again")
        self.assertEqual(s.metric("scout_registrations_recreated_total"), 0)


if __name__ == "__main__":
    unittest.main()

"""Anti-entropy repairs what a watch missed: a notification swallowed on the wire (zkwire.WireProxy drops it, as a
lost packet or a server bug would) leaves the agent's view wrong until the periodic re-check finds the drift, repairs
it and counts it in scout_service_anti_entropy_repairs_total. Both halves of the (child, mzxid) content: a child the
list watch missed, and a data change the child's watch missed. Also: a watched path of 4,096 bytes and more keeps
its children's data events."""

import unittest

from scoutharness import policy, wait_until, Scout, ZkCase
from zkwire import CHANGED, CHILD, WireProxy

REPAIRS = "scout_service_anti_entropy_repairs_total"
CHECKS = "scout_service_anti_entropy_checks_total"


class AntiEntropy(ZkCase):
    def setUp(self):
        self.proxy = WireProxy(self.zk.connect).start()
        self.scout = None

    def tearDown(self):
        try:
            if self.scout:
                self.scout.stop()
        finally:
            self.proxy.stop()

    def start(self, path, anti_entropy="1s"):
        self.scout = Scout(policy({"svc": 'path = "%s"' % path},
                                  extra='agent { anti_entropy = "%s" }' % anti_entropy), self.proxy.connect).start()
        return self.scout

    def ports(self, s):
        return [e["port"] for e in s.endpoints("svc")[0]]

    def test_a_swallowed_data_event_is_repaired(self):
        self.kz.create("/ae1/svc/id-1", b'{"host":"10.0.0.1","port":1}', makepath=True)
        self.kz.create("/ae1/svc/id-2", b'{"host":"10.0.0.2","port":1}')
        s = self.start("/ae1/svc")
        wait_until(lambda: self.ports(s) == [1, 1], what="first list")
        self.assertEqual(s.metric(REPAIRS, "svc"), 0)

        self.proxy.swallow("/ae1/svc/id-1", CHANGED)
        self.kz.set("/ae1/svc/id-1", b'{"host":"10.0.0.1","port":2}')
        wait_until(lambda: self.proxy.swallowed == 1, what="the data event swallowed")
        checks = s.metric(CHECKS, "svc")
        # the watch is gone with the event: only anti-entropy can bring the new data
        wait_until(lambda: self.ports(s) == [2, 1], what="repaired by anti-entropy")
        self.assertGreater(s.metric(CHECKS, "svc"), checks)
        self.assertEqual(s.metric(REPAIRS, "svc"), 1)
        self.assertRegex(s.log(), r"/ae1/svc/id-1: anti-entropy found data the watch missed")

        # the repair re-armed the data watch: the next change comes by event again, with no new repair
        self.kz.set("/ae1/svc/id-1", b'{"host":"10.0.0.1","port":3}')
        wait_until(lambda: self.ports(s) == [3, 1], what="the next change")
        self.assertEqual(s.metric(REPAIRS, "svc"), 1)

    def test_a_swallowed_child_event_is_repaired(self):
        self.kz.create("/ae2/svc/127.0.0.1:7001", makepath=True)
        s = self.start("/ae2/svc")
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:7001"], what="first list")
        self.proxy.swallow("/ae2/svc", CHILD)
        self.kz.create("/ae2/svc/127.0.0.1:7002")
        wait_until(lambda: self.proxy.swallowed == 1, what="the child event swallowed")
        wait_until(lambda: s.ids("svc") == ["127.0.0.1:7001", "127.0.0.1:7002"], what="repaired by anti-entropy")
        self.assertEqual(s.metric(REPAIRS, "svc"), 1)

    def test_a_long_path_keeps_its_data_events(self):
        long = "/ae3/" + "/".join(["d" * 250] * 20)                 # 5,024 bytes
        self.assertGreater(len(long), 4096)
        self.kz.create(long + "/id-1", b'{"host":"10.0.0.1","port":1}', makepath=True)
        s = self.start(long, anti_entropy="1h")                  # no repair can hide a lost event
        wait_until(lambda: self.ports(s) == [1], what="first list")
        self.kz.set(long + "/id-1", b'{"host":"10.0.0.1","port":2}')
        wait_until(lambda: self.ports(s) == [2], what="the data event of a child of a long path")
        self.assertEqual(s.metric(REPAIRS, "svc"), 0)


if __name__ == "__main__":
    unittest.main()

"""A reload judges children whose data the cache let go of: the agent keeps a znode's bytes only until the policy
accepted them (issue 14: memory), so a new policy's codec and filter get them by reading each child again. The new
verdicts come from that data, on the same session, and while the bytes are on their way -- also with ZooKeeper
down -- the published list stays whole: the new policy never judges part of the children as if the rest were gone."""

import json
import signal
import threading
import time
import unittest

from scoutharness import Scout, wait_until
from zkharness import ZooKeeper

V1 = '''zookeeper { servers = "127.0.0.1:1", session_timeout = 4000 }
service "d" { path = "/rd/d", codec = "plain", protect = false }
'''

# the new filter reads meta, which only the znodes' data carries
V2 = '''zookeeper { servers = "127.0.0.1:1", session_timeout = 4000 }
service "d" { path = "/rd/d", codec = "plain", protect = false,
              filter = function(ep) return ep.meta.zone == "a" end }
'''

ZONES = {"e1": "a", "e2": "b", "e3": "a", "e4": "b"}


def data(name):
    return json.dumps({"host": "10.0.0.%s" % name[1:], "port": 8000 + int(name[1:]),
                       "meta": {"zone": ZONES[name]}}).encode()


class ReloadData(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
        self.kz = self.zk.client()
        for name in ZONES:
            self.kz.create("/rd/d/" + name, data(name), makepath=True)
        self.scout = Scout(V1, self.zk.connect).start()
        wait_until(lambda: self.scout.ids("d") == sorted(ZONES), what="v1 synced")

    def tearDown(self):
        self.scout.stop()
        self.kz.stop()
        self.zk.stop()

    def reload(self, text):
        with open(self.scout.policy_file, "w") as f:
            f.write(text)
        self.scout.proc.send_signal(signal.SIGHUP)

    def test_a_new_filter_judges_data_read_again(self):
        s = self.scout
        reads = s.metric('scout_zk_requests_total{op="data"}')
        self.reload(V2)
        wait_until(lambda: s.ids("d") == ["e1", "e3"], what="d judged by its new filter, on the znodes' data")
        eps = {ep["id"]: ep for ep in s.endpoints("d")[0]}
        self.assertEqual(eps["e3"]["meta"], {"zone": "a"})
        self.assertEqual(eps["e3"]["port"], 8003)
        # each child's bytes were read once more, on the same session
        self.assertEqual(s.metric('scout_zk_requests_total{op="data"}') - reads, len(ZONES))
        self.assertEqual(s.metric("scout_zk_sessions_created_total"), 1)
        wait_until(lambda: s.state("d") == "synced", what="synced")
        # and the service follows ZooKeeper as before
        self.kz.set("/rd/d/e2", json.dumps({"host": "10.0.0.2", "port": 8002, "meta": {"zone": "a"}}).encode())
        wait_until(lambda: s.ids("d") == ["e1", "e2", "e3"], what="e2 moved to zone a")

    def test_a_reload_with_zookeeper_down_loses_nothing_while_it_waits(self):
        s = self.scout
        seen, stop = [], threading.Event()

        def poll():
            while not stop.is_set():
                try:
                    seen.append(s.ids("d"))
                except Exception:       # noqa: BLE001 -- a refused connection is no answer, not a list
                    pass
                time.sleep(0.02)

        self.zk.stop_node(1)
        wait_until(lambda: s.state("d") == "stale", what="stale")
        t = threading.Thread(target=poll)
        t.start()
        try:
            self.reload(V2)
            wait_until(lambda: "reloaded" in s.log(), what="reloaded")
            n = len(seen)
            wait_until(lambda: len(seen) > n + 5, what="answers after the reload")
            self.zk.start_node(1)
            wait_until(lambda: s.ids("d") == ["e1", "e3"], timeout=30, what="new filter once the data is back")
        finally:
            stop.set()
            t.join()
        # every answer was the whole old list until the new verdicts, then the new list: never a part
        bad = [x for x in seen if x not in (sorted(ZONES), ["e1", "e3"])]
        self.assertEqual(bad, [], "answers that were neither the old nor the new list")


if __name__ == "__main__":
    unittest.main()

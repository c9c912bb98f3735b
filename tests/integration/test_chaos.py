"""Chaos: several writers make 5,000 random creates, deletes and data changes while ZooKeeper is restarted twice.
Afterwards the agent's list equals ZooKeeper's exactly: the same children, the same decoded fields, and for
children with data the same version (the endpoint's zxid is the znode's mzxid)."""

import json
import random
import threading
import time
import unittest

from kazoo.exceptions import ConnectionLoss, NodeExistsError, NoNodeError, OperationTimeoutError, SessionExpiredError
from kazoo.retry import KazooRetry

from scoutharness import Scout, policy, wait_until
from zkharness import ZooKeeper

TRANSIENT = (ConnectionLoss, OperationTimeoutError, SessionExpiredError)


def chaos_writer(zk, path, ops, seed, done, restarts_over, applied, outages):
    """At least `ops` changes, and on until both restarts are over: the writes always span them. applied[seed] and
    outages[seed] count the changes made and the failures seen (ZooKeeper away): the restarts are ordered on them."""
    rnd = random.Random(seed)
    kz = zk.client(connection_retry=KazooRetry(max_tries=-1, max_delay=0.5))
    live, n = [], 0
    i = 0
    while i < ops or not restarts_over.is_set():
        try:
            r = rnd.random()
            if live and r < 0.4:
                name = live.pop(rnd.randrange(len(live)))
                try:
                    kz.delete("%s/%s" % (path, name))
                except NoNodeError:
                    pass
            elif live and r < 0.6:
                name = rnd.choice(live)
                if name.startswith("id-"):
                    kz.set("%s/%s" % (path, name), json.dumps(
                        {"host": "10.1.%d.%d" % (seed % 250, n % 250), "port": 1 + n % 60000,
                         "weight": rnd.randint(0, 50)}).encode())
            else:
                n += 1
                if n % 2:
                    name, data = "id-%d-%d" % (seed, n), json.dumps(
                        {"host": "10.2.%d.%d" % (seed % 250, n % 250), "port": 1 + n % 60000}).encode()
                else:
                    name, data = "127.%d.%d.%d:%d" % (seed % 250, n // 250 % 250, n % 250, 1 + n % 60000), b""
                try:
                    kz.create("%s/%s" % (path, name), data)
                except NodeExistsError:
                    pass
                live.append(name)
            i += 1
            applied[seed] += 1
            time.sleep(0.003)                # pace: the writes spread over both restarts
        except TRANSIENT:
            outages[seed] += 1
            time.sleep(0.05)                 # ZooKeeper is restarting: try again (the op may have applied)
    done.append(seed)


def exact_truth(kz, path):
    out = {}
    for name in kz.get_children(path):
        data, stat = kz.get("%s/%s" % (path, name))
        if name.startswith("id-"):
            d = json.loads(data)
            out[name] = (d["host"], d["port"], d.get("weight", 1), stat.mzxid)
        else:
            host, port = name.rsplit(":", 1)
            out[name] = (host, int(port), 1, None)
    return out


def exact_seen(scout, service):
    eps, _ = scout.endpoints(service)
    return {e["id"]: (e["host"], e["port"], e["weight"], e["zxid"] if e["id"].startswith("id-") else None)
            for e in eps}


class Chaos(unittest.TestCase):
    def setUp(self):
        self.zk = ZooKeeper().start()
        self.scout = None

    def tearDown(self):
        if self.scout:
            self.scout.stop()
        self.zk.stop()

    def test_5000_changes_across_two_restarts(self):
        kz = self.zk.client()
        kz.ensure_path("/chaos/svc")
        # weight 0 endpoints are endpoints too; protection off so a moment with no children is published as is
        self.scout = s = Scout(policy({"svc": 'path = "/chaos/svc", protect = false'}, session_timeout=10000),
                               self.zk.connect).start()
        done = []
        restarts_over = threading.Event()
        applied, outages = [0] * 5, [0] * 5      # one slot per writer (seed), each written by its writer only
        writers = [threading.Thread(target=chaos_writer,
                                    args=(self.zk, "/chaos/svc", 1250, seed, done, restarts_over, applied, outages))
                   for seed in range(1, 5)]
        for t in writers:
            t.start()
        try:
            for _ in range(2):                   # two restarts while the writers run
                before = list(applied)
                wait_until(lambda: all(applied[w] >= before[w] + 100 for w in range(1, 5)),
                           timeout=120, what="every writer's changes before the restart")
                failed = list(outages)           # taken first: a writer may see the stop before it returns
                self.zk.stop_node(1)
                wait_until(lambda: s.state("svc") == "stale" and all(outages[w] > failed[w] for w in range(1, 5)),
                           timeout=120, what="the agent and every writer without ZooKeeper")
                self.zk.start_node(1)
        finally:
            restarts_over.set()                  # the writers end even when a wait failed
        for t in writers:
            t.join(timeout=300)
        self.assertEqual(sorted(done), [1, 2, 3, 4], "every writer finished")

        kz = self.zk.client()
        want = exact_truth(kz, "/chaos/svc")
        self.assertGreater(len(want), 10)
        wait_until(lambda: s.state("svc") == "synced" and exact_seen(s, "svc") == want, timeout=60,
                   what="synced and exact final state")
        self.assertTrue(s.alive())
        # it lost the connection in each restart (it was stale before each start)
        self.assertGreaterEqual(s.metric("scout_zk_reconnects_total"), 2)


if __name__ == "__main__":
    unittest.main()

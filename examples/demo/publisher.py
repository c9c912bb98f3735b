#!/usr/bin/python3
"""publisher.py — the fake fleet behind `make run`: registers and deregisters endpoints the way real clients do.

Why: the demo needs something that keeps changing in ZooKeeper so you can watch scout follow it. Every second it
adds or removes an endpoint of each service in examples/demo/policy.lua (kept between MIN and MAX per service),
now and then changes a weight in the JSON data of an "orders" endpoint, and now and then registers (or drops) a
canary there, which the policy's filter hides. Nodes are ephemeral, as real registrations are: they vanish when
this process ends its session.

    /usr/bin/python3 examples/demo/publisher.py 127.0.0.1:2181 [--seed N]

One terse line per action on stdout (run.sh sends it to a log file). Stops cleanly on SIGTERM (or Ctrl-C).
Needs kazoo (Debian python3-kazoo, installed for /usr/bin/python3).
"""

import argparse
import json
import random
import signal
import sys
import threading
from urllib.parse import quote

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError

MIN, MAX = 3, 8
TICK = 1.0  # seconds between rounds of changes

WEB = "/demo/web"
ORDERS = "/demo/orders"
DUBBO_IFACE = "com.acme.DemoService"
DUBBO = "/dubbo/%s/providers" % DUBBO_IFACE


def web_child(n):
    """plain codec, name only: the child name is the endpoint."""
    return "10.0.0.%d:8080" % n, b""


def orders_child(n, rng, zone=None):
    """plain codec, JSON data: the child name is just an id."""
    zone = zone or rng.choice(["a", "b"])
    data = {"host": "10.0.1.%d" % n, "port": 8080, "weight": rng.choice([5, 10, 20]), "meta": {"zone": zone}}
    return "orders-%d" % n, json.dumps(data, separators=(",", ":")).encode()


def dubbo_child(n):
    """dubbo codec: the child name is URL.encode(provider URL), exactly as a dubbo provider writes it."""
    url = ("dubbo://10.0.2.%d:20880/%s?anyhost=true&application=demo-provider&interface=%s"
           "&methods=hello,bye&side=provider&weight=100" % (n, DUBBO_IFACE, DUBBO_IFACE))
    return quote(url, safe=""), b""


class Fleet:
    def __init__(self, zk, rng):
        self.zk = zk
        self.rng = rng
        # service label -> (path, child factory, {n: child name}) ; canaries live apart from the counted set
        self.services = {
            "web": (WEB, lambda n: web_child(n), {}),
            "orders": (ORDERS, lambda n: orders_child(n, rng), {}),
            "demo-service": (DUBBO, lambda n: dubbo_child(n), {}),
        }
        self.canary = None  # child name of the one canary, if registered

    def say(self, fmt, *args):
        print(fmt % args, flush=True)

    def add(self, label):
        path, make, live = self.services[label]
        free = [n for n in range(1, 40) if n not in live]
        n = self.rng.choice(free)
        name, data = make(n)
        try:
            self.zk.create("%s/%s" % (path, name), data, ephemeral=True)
        except NodeExistsError:
            pass
        live[n] = name
        self.say("add    %-12s %s", label, short(name))

    def remove(self, label):
        path, _, live = self.services[label]
        n = self.rng.choice(sorted(live))
        name = live.pop(n)
        try:
            self.zk.delete("%s/%s" % (path, name))
        except NoNodeError:
            pass
        self.say("remove %-12s %s", label, short(name))

    def reweigh(self):
        live = self.services["orders"][2]
        if not live:
            return
        name = live[self.rng.choice(sorted(live))]
        node = "%s/%s" % (ORDERS, name)
        data, _ = self.zk.get(node)
        ep = json.loads(data)
        ep["weight"] = self.rng.choice([w for w in (5, 10, 20, 40) if w != ep["weight"]])
        self.zk.set(node, json.dumps(ep, separators=(",", ":")).encode())
        self.say("weight %-12s %s -> %d", "orders", name, ep["weight"])

    def toggle_canary(self):
        if self.canary:
            self.zk.delete("%s/%s" % (ORDERS, self.canary))
            self.say("remove %-12s %s (canary)", "orders", self.canary)
            self.canary = None
        else:
            _, data = orders_child(99, self.rng, zone="canary")
            name = "orders-canary"
            self.zk.create("%s/%s" % (ORDERS, name), data, ephemeral=True)
            self.canary = name
            self.say("add    %-12s %s (canary: the policy's filter hides it)", "orders", name)

    def seed(self):
        for path, _, _ in self.services.values():
            self.zk.ensure_path(path)
        for label in self.services:
            for _ in range(MIN):
                self.add(label)

    def step(self):
        for label, (_, _, live) in self.services.items():
            if self.rng.random() < 0.4:
                continue  # not every service changes every second
            n = len(live)
            grow = n <= MIN or (n < MAX and self.rng.random() < 0.5)
            if grow:
                self.add(label)
            else:
                self.remove(label)
        r = self.rng.random()
        if r < 0.25:
            self.reweigh()
        elif r < 0.35:
            self.toggle_canary()


def short(name):
    """dubbo children are long URL-encoded strings; show host:port for the log."""
    if name.startswith("dubbo%3A%2F%2F"):
        return "dubbo://" + name[len("dubbo%3A%2F%2F"):].split("%2F", 1)[0].replace("%3A", ":") + "/..."
    return name


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("zk", help="connect string host:port[,host:port...]")
    ap.add_argument("--seed", type=int, help="random seed (default: different each run)")
    args = ap.parse_args()

    # SIGTERM is how run.sh stops us. SIGINT keeps its default (KeyboardInterrupt, also ends in the finally below)
    # so that, run from run.sh, where background jobs ignore it, a Ctrl-C leaves the fleet up until the cleanup.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    zk = KazooClient(hosts=args.zk, timeout=10)
    zk.start(timeout=15)
    try:
        fleet = Fleet(zk, random.Random(args.seed))
        fleet.seed()
        while not stop.wait(TICK):
            try:
                fleet.step()
            except KazooException as e:  # e.g. a connection blip: skip this round, the next one retries
                fleet.say("error  %r", e)
    finally:
        # closing the session removes every ephemeral node at once: the whole fleet deregisters
        zk.stop()
        zk.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

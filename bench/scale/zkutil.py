"""zkutil.py -- the scale benchmark's ZooKeeper side: is the server serving, its mntr counters,
and a kazoo client.

Why a module: scale.py and perchange.py talk to the same server the same way."""

import os
import sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import four  # noqa: E402


def serving(port):
    try:
        return "Mode:" in four(port, "srvr", timeout=0.5)
    except OSError:
        return False


def mntr(port):
    return dict(ln.split("\t", 1) for ln in four(port, "mntr").splitlines() if "\t" in ln)


def kazoo(zk):
    from kazoo.client import KazooClient
    kz = KazooClient(hosts=zk, timeout=30.0)
    kz.start(timeout=30)
    return kz

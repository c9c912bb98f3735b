"""kazoowatch — the propagation benchmark's kazoo observer (/usr/bin/python3).

Why: kazoo's ChildrenWatch is what many Python shops already run; it shows what
an idiomatic high-level client costs next to the raw C client and scout. Same
output as rawwatch.c: "<time.monotonic_ns()> +name" / "-name" per child of
each diff, flushed per line, the initial list printed as additions.

    kazoowatch.py HOSTS PATH [SESSION_MS]
"""
import sys
import threading
import time

from kazoo.client import KazooClient
from kazoo.recipe.watchers import ChildrenWatch


def main():
    hosts, path = sys.argv[1], sys.argv[2]
    timeout = (int(sys.argv[3]) if len(sys.argv) > 3 else 10000) / 1000.0
    zk = KazooClient(hosts=hosts, timeout=timeout)
    zk.start()
    prev = set()
    out = sys.stdout

    def changed(children):
        nonlocal prev
        now = time.monotonic_ns()
        cur = set(children)
        for name in sorted(cur - prev):
            out.write("%d +%s\n" % (now, name))
            out.flush()
        for name in sorted(prev - cur):
            out.write("%d -%s\n" % (now, name))
            out.flush()
        prev = cur

    ChildrenWatch(zk, path, changed)
    threading.Event().wait()    # until SIGTERM


if __name__ == "__main__":
    main()

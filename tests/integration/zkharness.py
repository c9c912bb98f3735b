"""zkharness — a throwaway ZooKeeper for Python integration tests (/usr/bin/python3).

Why: tests drive build/scout from outside against a real server; this wraps
scripts/zk.sh (the single place that knows how to start one) so a test never
leaks a java process: every instance is stopped on stop(), on `with` exit, at
interpreter exit (atexit) and on SIGTERM.

A standalone server takes seconds to start (a JVM), and most test classes want
a fresh one per test: so each default start() (one node, default tick, own temp
dir) is handed a server started ahead in the background, and starts the next one
while the test runs. Each is still the test's own server (own ports, own dir,
stopped with it, behind the test: the next one does not wait for the JVM to
exit); the one left unused is stopped at exit, and every stop is waited for.
On with ZKH_PREFETCH=1, which tests/integration/run.py sets (a runner that
starts one server for all its tests, as tests/nginx does, gains nothing).

A test that needs a server only for an empty tree (it never stops, restarts or
freezes it, nor reads its four-letter words) takes SharedZooKeeper() instead: the
pass's one server, emptied before and after each test (ZKH_SHARED=0: a server
of its own, the old path).

    from zkharness import ZooKeeper
    with ZooKeeper(nodes=3) as zk:          # or ZooKeeper().start()
        c = zk.client()                     # started KazooClient, closed on stop()
        c.create("/x", b"", makepath=True)
        zk.kill_node(zk.leader())
        print(zk.four("mntr"), zk.connect)

Needs stdlib + kazoo (Debian python3-kazoo, only for /usr/bin/python3).
"""

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
ZK_SH = os.path.normpath(os.path.join(HERE, "..", "..", "scripts", "zk.sh"))

_live = set()


def _stop_all():
    _drop_spare()
    for zk in list(_live):
        try:
            zk.stop()
        except Exception as e:  # best effort at exit
            sys.stderr.write("zkharness: stop failed: %s\n" % e)
    for t in list(_stopping):
        t.join()


atexit.register(_stop_all)
_prev_term = signal.getsignal(signal.SIGTERM)


def _on_term(signum, frame):
    _stop_all()
    if callable(_prev_term):
        _prev_term(signum, frame)
    raise SystemExit(128 + signum)


# Only install from the main thread (signal() raises elsewhere); a test runner
# that imports us from a worker thread still gets atexit.
try:
    signal.signal(signal.SIGTERM, _on_term)
except ValueError:
    pass


# -- a standalone server started ahead: (thread, result) where result gets "dir" and "connect", or "error" ----------
_spare = None
_spare_lock = threading.Lock()
PREFETCH = os.environ.get("ZKH_PREFETCH") == "1"


def _start_spare():
    global _spare
    result = {}

    def run():
        d = tempfile.mkdtemp(prefix="zkh-")
        result["dir"] = d
        p = subprocess.run([ZK_SH, "start", d, "--nodes", "1", "--tick", "200"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True)
        if p.returncode == 0:
            result["connect"] = p.stdout.strip()
        else:
            result["error"] = "zk.sh start failed (%d):\n%s" % (p.returncode, p.stderr)

    t = threading.Thread(target=run, name="zkharness-spare", daemon=True)
    _spare = (t, result)
    t.start()


def _take_spare():
    """The spare's (dir, connect) once it serves, or None (none started, or it failed: then it is cleaned up)."""
    global _spare
    with _spare_lock:
        spare, _spare = _spare, None
        if spare is None:
            return None
        t, result = spare
        t.join()
        if "connect" in result:
            return result["dir"], result["connect"]
        _discard(result)
        return None


def _discard(result):
    if "dir" in result:
        subprocess.run([ZK_SH, "stop", result["dir"]], check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(result["dir"], ignore_errors=True)


# servers being stopped behind the tests (a JVM takes a second or more to exit); joined at exit
_stopping = []


def _stop_behind(d):
    """Stops the server in d and removes d on a thread: the caller does not wait for the JVM to exit (its ports and
    dir are its own, nothing reuses them). Used with PREFETCH, i.e. under tests/integration/run.py."""
    def run():
        subprocess.run([ZK_SH, "stop", d], check=False)
        shutil.rmtree(d, ignore_errors=True)

    t = threading.Thread(target=run, name="zkharness-stop", daemon=True)
    t.start()
    _stopping[:] = [x for x in _stopping if x.is_alive()] + [t]


def _drop_spare():
    """At exit: a spare still starting is stopped at once (its java already has a pid file, or the stop after the
    join gets it), not waited for."""
    global _spare
    with _spare_lock:
        spare, _spare = _spare, None
        if spare is not None:
            t, result = spare
            if t.is_alive() and "dir" in result:
                subprocess.run([ZK_SH, "stop", result["dir"]], check=False, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            t.join()
            _discard(result)


def _start_client(owner, timeout, kw):
    """A started KazooClient on owner's connect string, kept in owner._clients for its stop() to close."""
    from kazoo.client import KazooClient
    kw.setdefault("hosts", owner.connect)
    c = KazooClient(timeout=timeout, **kw)
    c.start(timeout=timeout)
    owner._clients.append(c)
    return c


def _close_clients(clients):
    """Stops and closes a test's kazoo clients; one that fails to stop is left to its own session's end."""
    for c in clients:
        try:
            c.stop()
            c.close()
        except Exception:
            pass


class ZooKeeper:
    def __init__(self, nodes=1, tick=200, dir=None, keep_dir=False):
        self.nodes = nodes
        self.tick = tick
        self._own_dir = dir is None
        self.dir = dir
        self.keep_dir = keep_dir
        self.connect = None
        self._clients = []

    # -- lifecycle -----------------------------------------------------------
    def start(self, nodes=None):
        if nodes is not None:
            self.nodes = nodes
        if self.connect is not None:
            raise RuntimeError("already started")
        prefetch = PREFETCH and self.dir is None and self.nodes == 1 and self.tick == 200
        if prefetch:
            taken = _take_spare()
            if taken is not None:
                self.dir, self.connect = taken
                _live.add(self)
            with _spare_lock:
                _start_spare()                 # the next test's server starts while this one runs
            if taken is not None:
                return self
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="zkh-")
        _live.add(self)
        try:
            self.connect = self._sh("start", self.dir, "--nodes", str(self.nodes),
                                    "--tick", str(self.tick)).strip()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self):
        _close_clients(self._clients)
        self._clients = []
        if self.dir is not None and PREFETCH and self._own_dir and not self.keep_dir:
            _stop_behind(self.dir)
            self.dir = None
        elif self.dir is not None:
            subprocess.run([ZK_SH, "stop", self.dir], check=False)
            if self._own_dir and not self.keep_dir:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None
        self.connect = None
        _live.discard(self)

    def __enter__(self):
        return self if self.connect else self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- nodes ---------------------------------------------------------------
    def stop_node(self, n):
        self._sh("stop-node", self.dir, str(n))

    def kill_node(self, n):
        self._sh("kill-node", self.dir, str(n))

    def start_node(self, n):
        self._sh("start-node", self.dir, str(n))

    def leader(self):
        """N (1-based) of the leader; 1 when standalone. Raises if none."""
        return int(self._sh("leader", self.dir).strip())

    def four(self, cmd, n=1):
        return self._sh("4lw", self.dir, str(n), cmd)

    def port(self, n=1):
        with open(os.path.join(self.dir, "node%d" % n, "port")) as f:
            return int(f.read())

    def log(self, n=1):
        return os.path.join(self.dir, "node%d" % n, "server.log")

    # -- clients -------------------------------------------------------------
    def client(self, timeout=10.0, **kw):
        """A started KazooClient on the whole ensemble; closed by stop()."""
        return _start_client(self, timeout, kw)

    def _sh(self, *args):
        p = subprocess.run([ZK_SH] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True)
        if p.returncode != 0:
            raise RuntimeError("zk.sh %s failed (%d):\n%s" % (args[0], p.returncode, p.stderr))
        return p.stdout


# -- one server for the pass, each test on an empty tree -------------------------------------------------------
# A server start is ~1 s of CPU (the JVM's ~0.6 s, zk.sh's and this process's), and the integration passes run
# on two shared cores: a test that only needs a server of its own for a clean tree, and never stops, restarts,
# freezes or reconfigures it, nor reads the server's own counters (four-letter words), takes this one instead.
_shared = None
SHARED = os.environ.get("ZKH_SHARED", "1") == "1"     # 0: each SharedZooKeeper starts a server of its own (old path)


def _tree(kz, path):
    """Every node under path (not path), parents before their children: read level by level, each level's
    reads sent at once (kazoo pipelines async requests on its one connection)."""
    out, level = [], [path]
    while level:
        asyncs = [(p, kz.get_children_async(p)) for p in level]
        level = []
        for p, a in asyncs:
            try:
                kids = a.get(timeout=30)
            except Exception:      # deleted meanwhile (an ephemeral whose session ended)
                continue
            level += [(p.rstrip("/") + "/" + k) for k in kids]
        out += level
    return out


def _wipe(kz):
    """Deletes every node but /zookeeper: children first, each depth's deletes sent at once. A node that is gone
    already (an ephemeral whose session just ended) is fine; anything else left is an error."""
    from kazoo.exceptions import NoNodeError
    nodes = [p for p in _tree(kz, "/") if p != "/zookeeper" and not p.startswith("/zookeeper/")]
    by_depth = {}
    for p in nodes:
        by_depth.setdefault(p.count("/"), []).append(p)
    for depth in sorted(by_depth, reverse=True):
        for a in [kz.delete_async(p) for p in by_depth[depth]]:
            try:
                a.get(timeout=30)
            except NoNodeError:
                pass
    left = [p for p in kz.get_children("/") if p != "zookeeper"]
    if left:
        raise RuntimeError("zkharness: the shared server still holds %s after its wipe" % left)


def _empty(server):
    """Empties the shared server's tree; False when that failed (a node only its creator may delete: a digest ACL
    on its parent; the admin session lost), and the server is not to be handed on."""
    try:
        _wipe(server._admin)
        return True
    except Exception as e:
        sys.stderr.write("zkharness: the shared server is replaced, its tree could not be emptied: %r\n" % (e,))
        return False


def _retire():
    """The shared server is stopped (behind the tests, as any server of a test); the next test starts another."""
    global _shared
    server, _shared = _shared, None
    server.stop()


class SharedZooKeeper:
    """A test's share of the pass's one standalone server (default tick): start() hands over an empty tree (every
    node but /zookeeper deleted), stop() closes the test's clients and empties the tree again; the server itself
    is started on first use and stopped at exit. For tests that never stop, kill, restart or freeze the server,
    never change its files or config, and never read its four-letter words (other tests' sessions may still be
    expiring there): those keep ZooKeeper(), their own."""

    def __init__(self):
        self.connect = None
        self._clients = []
        self._own = None

    def start(self):
        global _shared
        if self.connect is not None:
            raise RuntimeError("already started")
        if not SHARED:
            self._own = ZooKeeper().start()
            self.connect = self._own.connect
            return self
        if _shared is not None and not _empty(_shared):
            _retire()
        if _shared is None:
            server = ZooKeeper().start()
            try:
                server._admin = server.client()
                _wipe(server._admin)
            except Exception:
                server.stop()
                raise
            _shared = server
        self.connect = _shared.connect
        return self

    def stop(self):
        _close_clients(self._clients)
        self._clients = []
        if self._own is not None:
            self._own.stop()
            self._own = None
        elif self.connect is not None and _shared is not None and not _empty(_shared):
            _retire()
        self.connect = None

    def __enter__(self):
        return self if self.connect else self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def client(self, timeout=10.0, **kw):
        """A started KazooClient on the shared server; closed by stop()."""
        return _start_client(self, timeout, kw)


if __name__ == "__main__":
    # Self-check: python3 tests/integration/zkharness.py [nodes]
    import time
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    t = time.monotonic()
    with ZooKeeper(nodes=n) as zk:
        print("started %s in %.2fs" % (zk.connect, time.monotonic() - t))
        c = zk.client()
        c.ensure_path("/zkh")
        print("leader", zk.leader(), "|", zk.four("ruok"))
        if n > 1:
            ld = zk.leader()
            t = time.monotonic()
            zk.kill_node(ld)
            while True:
                try:
                    nl = zk.leader()
                    break
                except RuntimeError:
                    time.sleep(0.02)
            print("killed %d, new leader %d after %.2fs" % (ld, nl, time.monotonic() - t))
            t = time.monotonic()
            c.create("/zkh/after-failover", b"x")
            print("first write after failover %.2fs" % (time.monotonic() - t))
            t = time.monotonic()
            zk.start_node(ld)
            print("restarted %d in %.2fs; modes %s" % (ld, time.monotonic() - t, [
                zk.four("srvr", i).split("Mode: ")[1].split()[0] for i in range(1, n + 1)]))
        t = time.monotonic()
    print("stopped in %.2fs" % (time.monotonic() - t))

"""zkproxy — a TCP proxy between an agent and ZooKeeper that can lose one answer.

Why: the nastiest connection loss is the one that comes after the server applied a request and before its answer
reached the client: the client sees CONNECTIONLOSS for something that happened. No server setting provokes that on
cue, so this proxy does: `cut_after(pattern)` forwards the first client packet holding `pattern` to the server,
swallows everything the server says from then on, and closes both sides `linger` seconds later. The client
reconnects through the proxy (which then passes everything) into the same session.

    p = ZkProxy(zk.connect).start()          # agent uses p.connect
    p.cut_after(b"/svc/member_")
    ...
    p.stop()

Stdlib only.
"""

import socket
import threading
import time


def _close(*socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def _kill(*socks):
    """shutdown, then close: a bare close() leaves a socket that another thread blocks in recv() on open, and
    the peer never sees it end"""
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    _close(*socks)


def _host(hostport):
    host, port = hostport.split(",")[0].rsplit(":", 1)
    return host, int(port)


class Relay:
    """A loopback listener that opens one upstream connection per client and hands the pair to `_link`.
    Subclasses decide what flows (`_link`), how a client is admitted (`_open`) and how sockets end (`_end`)."""

    def __init__(self, upstream):
        self.upstream = _host(upstream)
        self.ls = None
        self.conns = []
        self.stopped = False

    @property
    def port(self):
        return self.ls.getsockname()[1]

    @property
    def connect(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self.stopped = True
        self._end(self.ls, *self.conns)

    def _end(self, *socks):
        _close(*socks)

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self._open(c)

    def _dial(self, c, target=None, first=b""):
        """The upstream for client c (first: bytes already read from c, sent on); None when it cannot be reached."""
        try:
            u = socket.create_connection(target or self.upstream, timeout=5)
        except OSError:
            _close(c)
            return None
        u.settimeout(None)
        if first:
            u.sendall(first)
        self.conns += [c, u]
        return u

    def _open(self, c):
        u = self._dial(c)
        if u is not None:
            self._link(c, u)

    def _link(self, c, u):
        raise NotImplementedError


class ZkProxy(Relay):
    def __init__(self, upstream):
        super().__init__(upstream)
        self.pattern = None
        self.linger = 0.5
        self.cuts = 0              # answers swallowed so far
        self.lock = threading.Lock()

    def cut_after(self, pattern, linger=0.5):
        with self.lock:
            self.pattern, self.linger = pattern, linger

    def _link(self, c, u):
        state = {"mute": False}
        threading.Thread(target=self._up, args=(c, u, state), daemon=True).start()
        threading.Thread(target=self._down, args=(u, c, state), daemon=True).start()

    def _up(self, c, u, state):
        """client -> server; arms the cut when the pattern passes"""
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                cut = False
                with self.lock:
                    if self.pattern is not None and self.pattern in b:
                        self.pattern, cut = None, True
                        state["mute"] = True         # before the request can be answered
                u.sendall(b)
                if cut:
                    time.sleep(self.linger)          # the server applies it and answers into the void
                    self.cuts += 1
                    break
        except OSError:
            pass
        _close(c, u)

    def _down(self, u, c, state):
        """server -> client, unless muted"""
        try:
            while True:
                b = u.recv(65536)
                if not b:
                    break
                if not state["mute"]:
                    c.sendall(b)
        except OSError:
            pass
        _close(c, u)

"""zkwire — proxies that read ZooKeeper's wire format, for faults no server setting provokes on cue.

Why: the ordering gates and anti-entropy only matter when ZooKeeper's answers arrive out of step with what the
agent already holds, and a healthy loopback ensemble never does that. These proxies make it happen, from the
network, against real servers:

- `WireProxy` (a zkproxy.ZkProxy) between the agent and a server can
  - `swallow(path, type)`: drop the next watch notification for `path` (a missed event the agent must repair),
  - `route_new_sessions(hostport)`: send a connection whose ConnectRequest asks for a new session (session id 0)
    to another server, e.g. a lagging follower, while reconnects of a known session keep the first upstream.
- `Stall` between a follower and the leader's quorum port: `freeze()` stops every byte both ways and keeps both
  sockets open (the follower keeps serving its clients from what it has: it lags), `thaw()` closes them (the
  follower goes LOOKING and re-syncs).

Client framing (jute): every packet is a 4-byte big-endian length, then the body; a server->client notification
body is ReplyHeader(xid=-1 int, zxid long, err int) + WatcherEvent(type int, state int, path ustring). The first
client packet is ConnectRequest(protocolVersion int, lastZxidSeen long, timeOut int, sessionId long, passwd ...).

Stdlib only.
"""

import socket
import struct
import threading

from zkproxy import ZkProxy, _close

CREATED, DELETED, CHANGED, CHILD = 1, 2, 3, 4     # ZooKeeper event types


def _kill(*socks):
    """shutdown, then close: a bare close() leaves a socket that another thread blocks in recv() on open, and
    the peer never sees it end"""
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    _close(*socks)


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        b = sock.recv(n - len(buf))
        if not b:
            return None
        buf += b
    return buf


def _read_frame(sock):
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    (n,) = struct.unpack(">i", head)
    body = _recv_exact(sock, n) if n > 0 else b""
    return None if body is None else head + body


def _host(hostport):
    host, port = hostport.split(",")[0].rsplit(":", 1)
    return host, int(port)


class WireProxy(ZkProxy):
    def __init__(self, upstream):
        super().__init__(upstream)
        self.new_session_upstream = None
        self.new_sessions_routed = 0
        self.to_swallow = []           # [(path bytes, type)] still to drop
        self.swallowed = 0             # notifications dropped so far

    def stop(self):
        self.stopped = True
        _kill(self.ls, *self.conns)

    def route_new_sessions(self, hostport):
        with self.lock:
            self.new_session_upstream = _host(hostport) if hostport else None

    def swallow(self, path, type=CHANGED):
        with self.lock:
            self.to_swallow.append((path.encode() if isinstance(path, str) else path, type))

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._open, args=(c,), daemon=True).start()

    def _open(self, c):
        """Read the ConnectRequest first: it says whether this is a new session."""
        first = _read_frame(c)
        if first is None or len(first) < 28:
            _close(c)
            return
        (session_id,) = struct.unpack(">q", first[20:28])
        with self.lock:
            target = self.upstream
            if session_id == 0 and self.new_session_upstream is not None:
                target = self.new_session_upstream
                self.new_sessions_routed += 1
        try:
            u = socket.create_connection(target, timeout=5)
        except OSError:
            _close(c)
            return
        u.settimeout(None)
        u.sendall(first)
        self.conns += [c, u]
        state = {"mute": False}
        threading.Thread(target=self._up, args=(c, u, state), daemon=True).start()
        threading.Thread(target=self._down, args=(u, c, state), daemon=True).start()

    def _down(self, u, c, state):
        """server -> client, frame by frame, minus the notifications asked to be swallowed"""
        try:
            while True:
                frame = _read_frame(u)
                if frame is None:
                    break
                if state["mute"]:
                    continue
                if len(frame) >= 32 and struct.unpack(">i", frame[4:8])[0] == -1 and self._drop(frame):
                    continue
                c.sendall(frame)
        except OSError:
            pass
        _close(c, u)

    def _drop(self, frame):
        etype = struct.unpack(">i", frame[20:24])[0]
        (plen,) = struct.unpack(">i", frame[28:32])
        path = frame[32:32 + plen]
        with self.lock:
            for k, (p, t) in enumerate(self.to_swallow):
                if p == path and t == etype:
                    del self.to_swallow[k]
                    self.swallowed += 1
                    return True
        return False


class Stall:
    """A TCP relay for a quorum link that can be frozen (a partition both ways that no side notices at once)."""

    def __init__(self, upstream):
        self.upstream = _host(upstream)
        self.frozen = False
        self.ls = None
        self.conns = []
        self.stopped = False

    @property
    def port(self):
        return self.ls.getsockname()[1]

    def start(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def freeze(self):
        self.frozen = True

    def thaw(self):
        """Close what was frozen: both peers see the link die and recover the usual way."""
        self.frozen = False
        conns, self.conns = self.conns, []
        _kill(*conns)

    def stop(self):
        self.stopped = True
        _kill(self.ls, *self.conns)

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            if self.frozen:                      # partitioned: nothing gets through, not even a connect
                _close(c)
                continue
            try:
                u = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(c)
                continue
            u.settimeout(None)
            self.conns += [c, u]
            threading.Thread(target=self._pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c), daemon=True).start()

    def _pipe(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if not self.frozen:
                    b.sendall(data)
        except OSError:
            pass
        if not self.frozen:                      # a frozen link dies only at thaw()
            _kill(a, b)

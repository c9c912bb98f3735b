"""zkwire — proxies that read ZooKeeper's wire format, for faults no server setting provokes on cue.

Why: the ordering gates and anti-entropy only matter when ZooKeeper's answers arrive out of step with what the
agent already holds, and a healthy loopback ensemble never does that. These proxies make it happen, from the
network, against real servers:

- `WireProxy` (a zkproxy.ZkProxy) between the agent and a server can
  - `swallow(path, type)`: drop the next watch notification for `path` (a missed event the agent must repair),
  - `route_new_sessions(hostport)`: send a connection whose ConnectRequest asks for a new session (session id 0)
    to another server, e.g. a lagging follower, while reconnects of a known session keep the first upstream.
  - `hold_list_reads(path)`: on connections opened from then on, keep the first child-list read of `path`
    (getChildren2) and every request after it from the server, pings excepted (the session stays alive), until
    `release()`: a read that stays in flight for as long as the test needs, answers still in order.
  - `slow_handshakes(seconds)`: connections opened from then on get their ConnectResponse that much later (a
    server that is slow, not deaf).
  - `deafen(n)`: the next n connections are accepted and their ConnectRequest read, and nothing is ever answered
    until the client ends them (`deaf`, `deaf_ended` count them): what a ZooKeeper 3.8 server does to a connection
    that comes while it loads its database, before its database object exists (its close of such a connection
    fails on a NullPointerException and leaves the socket open).
- `Stall` between a follower and the leader's quorum port: `freeze()` stops every byte both ways and keeps both
  sockets open (the follower keeps serving its clients from what it has: it lags), `thaw()` closes them (the
  follower goes LOOKING and re-syncs).

Client framing (jute): every packet is a 4-byte big-endian length, then the body; a server->client notification
body is ReplyHeader(xid=-1 int, zxid long, err int) + WatcherEvent(type int, state int, path ustring). The first
client packet is ConnectRequest(protocolVersion int, lastZxidSeen long, timeOut int, sessionId long, passwd ...).

Stdlib only.
"""

import struct
import threading
import time

from zkproxy import Relay, ZkProxy, _close, _host, _kill

CREATED, DELETED, CHANGED, CHILD = 1, 2, 3, 4     # ZooKeeper event types
GET_CHILDREN2 = 12                                # request op
PING_XID = -2


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


class WireProxy(ZkProxy):
    def __init__(self, upstream):
        super().__init__(upstream)
        self.new_session_upstream = None
        self.new_sessions_routed = 0
        self.to_swallow = []           # [(path bytes, type)] still to drop
        self.swallowed = 0             # notifications dropped so far
        self.hold_path = None          # list reads of this path wait on connections opened after hold_list_reads
        self.holding = []              # [(state, upstream socket)] of connections that hold requests
        self.held = 0                  # requests kept back so far
        self.deaf_left = 0             # connections still to take in and never answer
        self.slow_handshake = 0        # seconds each new connection's ConnectResponse is held back
        self.deaf = 0                  # connections taken in so far
        self.deaf_ended = 0            # of them, ended by the client

    def _end(self, *socks):
        _kill(*socks)

    def route_new_sessions(self, hostport):
        with self.lock:
            self.new_session_upstream = _host(hostport) if hostport else None

    def swallow(self, path, type=CHANGED):
        with self.lock:
            self.to_swallow.append((path.encode() if isinstance(path, str) else path, type))

    def hold_list_reads(self, path):
        with self.lock:
            self.hold_path = path.encode() if isinstance(path, str) else path

    def deafen(self, n=1):
        with self.lock:
            self.deaf_left += n

    def slow_handshakes(self, seconds):
        with self.lock:
            self.slow_handshake = seconds

    def _deaf(self, c):
        with self.lock:
            self.deaf += 1
            self.conns.append(c)
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass
        _close(c)
        with self.lock:
            self.deaf_ended += 1

    def release(self):
        """Send what was held, in order, and hold nothing more."""
        with self.lock:
            self.hold_path = None
            holding, self.holding = self.holding, []
        for state, u in holding:
            with state["lock"]:
                frames, state["queue"] = state["queue"], None
                try:
                    for f in frames:
                        u.sendall(f)
                except OSError:
                    pass

    def _open(self, c):
        threading.Thread(target=self._route, args=(c,), daemon=True).start()

    def _link(self, c, u):
        with self.lock:
            hold = self.hold_path
        with self.lock:
            slow = self.slow_handshake
        state = {"mute": False, "hold": hold, "queue": None, "lock": threading.Lock(), "slow": slow}
        threading.Thread(target=self._up, args=(c, u, state), daemon=True).start()
        threading.Thread(target=self._down, args=(u, c, state), daemon=True).start()

    def _up(self, c, u, state):
        """client -> server, frame by frame: the cut of ZkProxy.cut_after, and the hold of hold_list_reads"""
        try:
            while True:
                frame = _read_frame(c)
                if frame is None:
                    break
                cut = False
                with self.lock:
                    if self.pattern is not None and self.pattern in frame:
                        self.pattern, cut = None, True
                        state["mute"] = True         # before the request can be answered
                    if (state["hold"] is not None and len(frame) >= 16
                            and struct.unpack(">i", frame[8:12])[0] == GET_CHILDREN2
                            and frame[16:16 + struct.unpack(">i", frame[12:16])[0]] == state["hold"]):
                        state["hold"] = None
                        state["queue"] = []
                        self.holding.append((state, u))
                with state["lock"]:
                    xid = struct.unpack(">i", frame[4:8])[0] if len(frame) >= 8 else 0
                    if state["queue"] is not None and xid != PING_XID:
                        state["queue"].append(frame)
                        self.held += 1
                        continue
                    u.sendall(frame)
                if cut:
                    time.sleep(self.linger)          # the server applies it and answers into the void
                    self.cuts += 1
                    break
        except OSError:
            pass
        _close(c, u)

    def _route(self, c):
        """Read the ConnectRequest first: it says whether this is a new session."""
        first = _read_frame(c)
        if first is None or len(first) < 28:
            _close(c)
            return
        (session_id,) = struct.unpack(">q", first[20:28])
        with self.lock:
            deaf = self.deaf_left > 0
            if deaf:
                self.deaf_left -= 1
        if deaf:
            self._deaf(c)
            return
        with self.lock:
            target = self.upstream
            if session_id == 0 and self.new_session_upstream is not None:
                target = self.new_session_upstream
                self.new_sessions_routed += 1
        u = self._dial(c, target, first)
        if u is not None:
            self._link(c, u)

    def _down(self, u, c, state):
        """server -> client, frame by frame, minus the notifications asked to be swallowed"""
        try:
            while True:
                frame = _read_frame(u)
                if frame is None:
                    break
                if state["mute"]:
                    continue
                if state.get("slow"):                # the ConnectResponse, late
                    time.sleep(state["slow"])
                    state["slow"] = 0
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


class Stall(Relay):
    """A TCP relay for a quorum link that can be frozen (a partition both ways that no side notices at once)."""

    def __init__(self, upstream):
        super().__init__(upstream)
        self.frozen = False

    def freeze(self):
        self.frozen = True

    def thaw(self):
        """Close what was frozen: both peers see the link die and recover the usual way."""
        self.frozen = False
        conns, self.conns = self.conns, []
        _kill(*conns)

    def _end(self, *socks):
        _kill(*socks)

    def _open(self, c):
        if self.frozen:                          # partitioned: nothing gets through, not even a connect
            _close(c)
            return
        super()._open(c)

    def _link(self, c, u):
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


class CloseGate(Relay):
    """Between the agent and a server: holds every closeSession request (a 12-byte frame: length 8, xid, type -11)
    until each connection still open has sent one, then passes them all, and records what the client did in order:
    `events` is [("close", n) | ("end", n)], n counting connections from 1. An agent that closes its sessions one
    after the other ends the first connection (its close unanswered) before it sends the second close; one that
    closes them together sends every close first."""

    CLOSE = -11

    def __init__(self, upstream):
        super().__init__(upstream)
        self.lock = threading.Lock()
        self.events = []
        self.n = 0
        self.open = {}             # n -> upstream socket
        self.held = {}             # n -> the close frame not yet passed

    def _end(self, *socks):
        _kill(*socks)

    def _link(self, c, u):
        with self.lock:
            self.n += 1
            k = self.n
            self.open[k] = u
        threading.Thread(target=self._up, args=(c, u, k), daemon=True).start()
        threading.Thread(target=self._down, args=(u, c), daemon=True).start()

    def _release(self):
        """with self.lock: every open connection has a close held -> pass them"""
        if self.open and all(k in self.held for k in self.open):
            for k, frame in list(self.held.items()):
                if frame is not None and k in self.open:
                    try:
                        self.open[k].sendall(frame)
                    except OSError:
                        pass
                self.held[k] = None        # passed: later frames of k flow

    def _up(self, c, u, k):
        first = True                       # ConnectRequest has no RequestHeader
        try:
            while True:
                f = _read_frame(c)
                if f is None:
                    break
                if not first and len(f) == 12 and struct.unpack(">i", f[8:12])[0] == self.CLOSE:
                    with self.lock:
                        self.events.append(("close", k))
                        if k not in self.held:
                            self.held[k] = f
                            self._release()
                            continue
                first = False
                u.sendall(f)
        except OSError:
            pass
        with self.lock:
            self.events.append(("end", k))
            self.open.pop(k, None)
            self._release()
        _kill(c, u)

    def _down(self, u, c):
        try:
            while True:
                b = u.recv(65536)
                if not b:
                    break
                c.sendall(b)
        except OSError:
            pass
        _kill(c, u)

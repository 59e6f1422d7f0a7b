"""The routing mesh's data plane: a per-node userspace TCP/UDP proxy, run as a child process of the daemon.

The proxy runs in its own process (``python3 -m swarmctl.mesh.proxy``) so that forwarding traffic never
shares the daemon's GIL or event loop (a Raft or planning stall in the daemon does not stall connections,
and a busy port does not delay Raft). It uses uvloop when importable (``SWARMCTL_MESH_LOOP=asyncio``
forces the standard loop).

Protocol: newline-delimited JSON on stdin (commands) and stdout (replies and events); stderr is
inherited for logs. On start the child prints ``{"event": "ready", "pid": N, "loop": "uvloop"}``.
A command may carry an ``"id"``, echoed in its reply.

- ``{"op": "routes", "routes": [ROUTE, ...]}`` replaces the whole route table, where ROUTE is
  ``{"listen": ["127.0.0.11", 8080], "proto": "tcp"|"udp", "backends": [["127.0.0.12", 20001], ...],
  "source": "127.0.0.11" | null}``. New listeners are opened, listeners no longer named are closed (they
  stop accepting; established TCP connections are left to finish), and existing listeners get the new
  backend list (an immutable tuple swapped in place) and source. Reply: ``{"op": "routes", "ok": true,
  "errors": {"127.0.0.11:8080/tcp": "address already in use"}}``; a listener that failed to bind is
  retried on the next routes command.
- ``{"op": "stats"}`` -> ``{"op": "stats", "ok": true, "listeners": {KEY: {"proto", "listening",
  "total", "active", "failed", "retried", "backends": {"HOST:PORT": {"active", "total", "failed",
  "ejected"}}}}}`` (UDP: sessions instead of connections, plus ``"datagrams"``).

The child exits, closing every listener and connection, on stdin EOF (and on SIGTERM); on Linux it also
asks for SIGTERM when its parent dies (PR_SET_PDEATHSIG), so it never outlives the daemon.

TCP: each connection goes to the backend with the fewest active connections of that listener, ties broken
round-robin. Connecting uses a timeout ladder (0.25 s, 0.5 s, 1 s, ...); a refused or timed-out attempt is
retried on another backend (never the same one twice, each backend at most once), and a backend that failed
is skipped for EJECT_SECONDS unless every untried one is ejected. Only when all fail is the client closed.
Until the backend's first byte, what the client sent is kept (REPLAY_MAX): a backend that closes or resets
before answering anything is replaced by another one, and the kept bytes are replayed to it, so a task that
dies with connections queued or in flight costs no failed request. Data is pumped both ways with flow control,
half-close (write_eof), TCP_NODELAY, and an idle timeout.

UDP: one "conntrack" session per client address (a connected UDP socket to the chosen backend); replies
go back to the client from the listening socket; a session idle for UDP_IDLE seconds is closed.

``ProxyProcess`` is the daemon's handle on the child (same module, standard library only).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time

log = logging.getLogger("swarmctl.mesh.proxy")

CONNECT_LADDER = (0.25, 0.5, 1.0)  # connect timeout of the 1st, 2nd, 3rd+ attempt of one connection
EJECT_SECONDS = 1.0                # a backend that failed a connect is skipped this long
TCP_IDLE = 15 * 60.0               # a TCP connection with no data either way this long is closed
UDP_IDLE = 90.0                    # a UDP session with no datagram either way this long is closed
UDP_MAX = 65507                    # the largest UDP payload (IPv4)
WRITE_HIGH = 1024 * 1024           # a side's write buffer above this pauses reading on the other side
# What a client sent is kept (up to this much) until its backend answers a first byte: a backend that accepted
# and then closed without a byte (a task killed with connections in its accept queue or mid-request) is replaced
# by another one, and the kept bytes are sent again. HAProxy's `retry-on empty-response` does the same.
REPLAY_MAX = 64 * 1024
SOCK_BUF = 1024 * 1024             # SO_RCVBUF/SO_SNDBUF asked for UDP sockets
CONTROL_LIMIT = 64 * 1024 * 1024   # the longest command or reply line
STOP_WAIT = 3.0                    # ProxyProcess.stop(): seconds the child gets to exit before it is killed
REQUEST_TIMEOUT = 30.0             # ProxyProcess: seconds to wait for a reply


def route_key(host: str, port: int, proto: str) -> str:
    return f"{host}:{port}/{proto}"


def _addr(pair) -> str:
    return f"{pair[0]}:{pair[1]}"


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


_nodelay_by_default: dict[str, bool] = {}  # "client"/"backend" -> the loop's transports come with TCP_NODELAY


def _nodelay(transport, kind: str) -> None:
    """TCP_NODELAY on. uvloop and asyncio set it on their TCP transports already: once that is seen for
    a kind of socket, the check (get_extra_info("socket") is not free) is skipped."""
    if _nodelay_by_default.get(kind):
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY):
                _nodelay_by_default[kind] = True
            else:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class _BackendStat:
    __slots__ = ("active", "total", "failed", "ejected_until")

    def __init__(self):
        self.active = 0
        self.total = 0
        self.failed = 0
        self.ejected_until = 0.0


class _Listener:
    """What TCP and UDP listeners share: the backend tuple, the choice of a backend, the counters."""

    proto = ""

    def __init__(self, proxy: "Proxy", host: str, port: int):
        self.proxy = proxy
        self.loop = proxy.loop
        self.host, self.port = host, port
        self.key = route_key(host, port, self.proto)
        self.backends: tuple = ()
        self.source: str | None = None
        self.listening = False
        self.rr = 0
        self.total = self.active = self.failed = self.retried = 0
        self.per_backend: dict[tuple, _BackendStat] = {}

    def set_backends(self, backends: tuple, source: str | None) -> None:
        self.backends = backends
        self.source = source
        for backend in backends:
            if backend not in self.per_backend:
                self.per_backend[backend] = _BackendStat()
        for backend in [b for b, s in self.per_backend.items() if b not in backends and not s.active]:
            del self.per_backend[backend]

    def stat(self, backend: tuple) -> _BackendStat:
        stat = self.per_backend.get(backend)
        if stat is None:
            stat = self.per_backend[backend] = _BackendStat()
        return stat

    def pick(self, backends: tuple, tried: set) -> tuple | None:
        """The untried backend with the fewest active connections (not ejected if any untried one is not),
        ties broken round-robin from the one after the last pick."""
        n = len(backends)
        if not n:
            return None
        now = self.loop.time()
        best = best_i = None
        best_ejected = best_ejected_i = None
        start = self.rr % n
        for step in range(n):
            i = (start + step) % n
            backend = backends[i]
            if backend in tried:
                continue
            stat = self.per_backend.get(backend)
            active = stat.active if stat else 0
            if stat is not None and stat.ejected_until > now:
                if best_ejected is None or active < best_ejected[0]:
                    best_ejected, best_ejected_i = (active, backend), i
                continue
            if best is None or active < best[0]:
                best, best_i = (active, backend), i
        if best is None:
            best, best_i = best_ejected, best_ejected_i
        if best is None:
            return None
        self.rr = best_i + 1
        return best[1]

    def stats(self) -> dict:
        now = self.loop.time()
        return {"proto": self.proto, "listening": self.listening, "total": self.total, "active": self.active,
                "failed": self.failed, "retried": self.retried,
                "backends": {_addr(b): {"active": s.active, "total": s.total, "failed": s.failed,
                                        "ejected": s.ejected_until > now}
                             for b, s in self.per_backend.items()}}

    async def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def sweep(self, now: float) -> None:
        pass


# ---------------------------------------------------------------------------------------------- TCP


class _Side(asyncio.Protocol):
    """One end of a proxied TCP connection; ``peer`` is the other end."""

    __slots__ = ("conn", "peer", "transport", "eof")

    def __init__(self, conn: "_Conn"):
        self.conn = conn
        self.peer: _Side | None = None
        self.transport = None
        self.eof = False

    kind = "backend"

    def connection_made(self, transport):
        self.transport = transport
        _nodelay(transport, self.kind)
        transport.set_write_buffer_limits(high=WRITE_HIGH)

    def data_received(self, data):
        conn = self.conn
        conn.touched = True
        if conn.replay is not None and self is conn.backend:
            conn.replay = None  # the backend answered: from now on it is this backend's connection
        self.peer.transport.write(data)

    def eof_received(self):
        if self.kind == "backend" and self.conn.retry_from(self):
            return False
        self.eof = True
        self.conn.touched = True
        peer = self.peer
        if peer.eof or peer.transport is None or peer.transport.is_closing():
            self.conn.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True

    def connection_lost(self, exc):
        if self.kind == "backend" and self.conn.retry_from(self):
            return
        self.conn.close()

    def pause_writing(self):
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.pause_reading()

    def resume_writing(self):
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.resume_reading()


class _Client(_Side):
    """The accepted side. What it sends before a backend is connected is kept in ``early`` and sent once
    the backend is there; reading is paused only if that grows past WRITE_HIGH (pausing every new
    connection would cost two more epoll calls, and a request usually fits in one read)."""

    __slots__ = ("early", "early_size", "paused")
    kind = "client"

    def __init__(self, conn):
        super().__init__(conn)
        self.early: list[bytes] | None = []
        self.early_size = 0
        self.paused = False

    def connection_made(self, transport):
        super().connection_made(transport)
        self.conn.start(self)

    def data_received(self, data):
        if self.early is not None:
            self.early.append(data)
            self.early_size += len(data)
            if self.early_size > WRITE_HIGH and not self.paused:
                self.paused = True
                self.transport.pause_reading()
            return
        conn = self.conn
        conn.touched = True
        conn.keep(data)
        self.peer.transport.write(data)

    def eof_received(self):
        if self.early is not None:
            self.eof = True
            return True
        return super().eof_received()

    def attach(self, peer: _Side) -> None:
        """The backend is connected: send what came early, and start reading."""
        self.peer = peer
        early, self.early = self.early, None
        if early is None:  # a replay: the kept bytes go to the new backend
            early = self.conn.replay or []
        else:
            for data in early:
                self.conn.keep(data)
        for data in early:
            peer.transport.write(data)
        if self.eof:
            if peer.transport.can_write_eof():
                peer.transport.write_eof()
        elif self.paused:
            self.paused = False
            self.transport.resume_reading()


class _Conn:
    """A client connection and, once connected, its backend connection."""

    __slots__ = ("listener", "client", "backend", "backend_addr", "closed", "touched", "idle_since", "task",
                 "replay", "replay_size", "tried")

    def __init__(self, listener: "_TcpListener"):
        self.listener = listener
        self.replay: list[bytes] | None = []  # what the client sent, until the backend's first byte
        self.replay_size = 0
        self.tried: set = set()
        self.client: _Side | None = None
        self.backend: _Side | None = None
        self.backend_addr = None
        self.closed = False
        self.touched = False
        self.idle_since = listener.loop.time()
        self.task = None

    def start(self, client: _Side) -> None:
        self.client = client
        listener = self.listener
        listener.total += 1
        listener.active += 1
        listener.conns.add(self)
        if not listener.backends:
            listener.failed += 1
            self.close()
            return
        self.task = listener.loop.create_task(self._connect())

    def keep(self, data: bytes) -> None:
        """Keep what is sent to the backend until it answers (REPLAY_MAX at most, then no replay)."""
        if self.replay is not None:
            self.replay_size += len(data)
            if self.replay_size > REPLAY_MAX:
                self.replay = None
            else:
                self.replay.append(data)

    def retry_from(self, side) -> bool:
        """The backend `side` closed: if it never answered and the kept bytes can be replayed, connect to
        another backend and replay them (True). Else the connection ends as usual (False)."""
        if self.closed or side is not self.backend or self.replay is None:
            return False
        listener = self.listener
        stat = listener.per_backend.get(self.backend_addr)
        if stat is not None:
            stat.active -= 1
            stat.failed += 1
            stat.ejected_until = listener.loop.time() + EJECT_SECONDS
        self.backend, self.backend_addr = None, None
        side.conn = _Detached
        if side.transport is not None:
            side.transport.abort()
        self.task = listener.loop.create_task(self._connect(retry=True))
        return True

    async def _connect(self, retry: bool = False) -> None:
        listener = self.listener
        loop = listener.loop
        backends = listener.backends  # the tuple as it is now: a swap does not change this connection's tries
        tried = self.tried
        attempt = 1 if retry else 0
        while not self.closed:
            backend = listener.pick(backends, tried)
            if backend is None:
                break
            tried.add(backend)
            if attempt:
                listener.retried += 1
            timeout = CONNECT_LADDER[min(attempt, len(CONNECT_LADDER) - 1)]
            attempt += 1
            stat = listener.stat(backend)
            stat.active += 1  # counted while connecting, so concurrent picks spread
            side = _Side(self)
            side.peer = self.client  # data the backend sends at once goes to the client
            source = listener.source
            try:
                async with asyncio.timeout(timeout):
                    await loop.create_connection(lambda: side, backend[0], backend[1],
                                                 local_addr=(source, 0) if source else None)
            except asyncio.CancelledError:
                stat.active -= 1
                raise
            except (OSError, TimeoutError) as exc:
                stat.active -= 1
                stat.failed += 1
                stat.ejected_until = loop.time() + EJECT_SECONDS
                log.debug("%s: backend %s: %s", listener.key, _addr(backend), _error_text(exc))
                continue
            if self.closed:  # the client went away while we connected
                stat.active -= 1
                side.transport.close()
                return
            stat.total += 1
            self.backend_addr = backend
            self.backend = side
            self.client.attach(side)
            return
        if not self.closed:
            listener.failed += 1
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        listener = self.listener
        listener.active -= 1
        listener.conns.discard(self)
        if self.backend_addr is not None:
            stat = listener.per_backend.get(self.backend_addr)
            if stat is not None:
                stat.active -= 1
        for side in (self.client, self.backend):
            if side is not None and side.transport is not None:
                side.transport.close()
        if self.task is not None and not self.task.done() and self.task is not asyncio.current_task():
            self.task.cancel()

    def abort(self) -> None:
        for side in (self.client, self.backend):
            if side is not None and side.transport is not None:
                side.transport.abort()
        self.close()


class _DetachedConn:
    """What a replaced backend side points at: its late events change nothing."""
    replay = None
    backend = None
    touched = False

    @staticmethod
    def retry_from(_side) -> bool:
        return True

    @staticmethod
    def close() -> None:
        pass


_Detached = _DetachedConn()


class _TcpListener(_Listener):
    proto = "tcp"

    def __init__(self, proxy, host, port):
        super().__init__(proxy, host, port)
        self.server = None
        self.conns: set[_Conn] = set()

    async def open(self) -> None:
        self.server = await self.loop.create_server(
            lambda: _Client(_Conn(self)), self.host, self.port, reuse_address=True, backlog=4096)
        self.listening = True

    def close(self) -> None:
        """Stop accepting; established connections go on until they end."""
        if self.server is not None:
            self.server.close()
            self.server = None
        self.listening = False

    def abort(self) -> None:
        self.close()
        for conn in list(self.conns):
            conn.abort()

    def sweep(self, now: float) -> None:
        for conn in list(self.conns):
            if conn.touched:
                conn.touched = False
                conn.idle_since = now
            elif now - conn.idle_since > self.proxy.tcp_idle:
                conn.close()


# ---------------------------------------------------------------------------------------------- UDP


class _UdpSession(asyncio.DatagramProtocol):
    """The connected socket from the proxy to one backend for one client address."""

    def __init__(self, listener: "_UdpListener", client, backend):
        self.listener = listener
        self.client = client
        self.backend = backend
        self.transport = None
        self.pending: list[bytes] | None = []
        self.touched = False
        self.idle_since = listener.loop.time()
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCK_BUF)
                except OSError:
                    pass

    def datagram_received(self, data, addr):
        self.touched = True
        out = self.listener.transport
        if out is not None:
            self.listener.datagrams += 1
            out.sendto(data, self.client)

    def error_received(self, exc):
        # ICMP port unreachable on a connected socket: the backend is gone; the next datagram picks another
        stat = self.listener.per_backend.get(self.backend)
        if stat is not None:
            stat.failed += 1
            stat.ejected_until = self.listener.loop.time() + EJECT_SECONDS
        self.close()

    def connection_lost(self, exc):
        self.close()

    def send(self, data: bytes) -> None:
        self.touched = True
        if self.pending is not None:
            self.pending.append(data)
        elif self.transport is not None and not self.closed:
            self.transport.sendto(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        listener = self.listener
        if listener.sessions.get(self.client) is self:
            del listener.sessions[self.client]
        listener.active -= 1
        stat = listener.per_backend.get(self.backend)
        if stat is not None:
            stat.active -= 1
        if self.transport is not None:
            self.transport.close()


class _UdpListener(_Listener, asyncio.DatagramProtocol):
    proto = "udp"

    def __init__(self, proxy, host, port):
        _Listener.__init__(self, proxy, host, port)
        self.transport = None
        self.sessions: dict[tuple, _UdpSession] = {}
        self.datagrams = 0

    async def open(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCK_BUF)
                except OSError:
                    pass
            sock.bind((self.host, self.port))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.transport, _ = await self.loop.create_datagram_endpoint(lambda: self, sock=sock)
        self.listening = True

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.datagrams += 1
        session = self.sessions.get(addr)
        if session is not None and not session.closed:
            session.send(data)
            return
        backend = self.pick(self.backends, set())
        if backend is None:
            self.failed += 1
            return
        session = _UdpSession(self, addr, backend)
        self.sessions[addr] = session
        self.total += 1
        self.active += 1
        stat = self.stat(backend)
        stat.active += 1
        stat.total += 1
        session.pending.append(data)
        self.loop.create_task(self._connect(session))

    async def _connect(self, session: _UdpSession) -> None:
        source = self.source
        try:
            await self.loop.create_datagram_endpoint(
                lambda: session, remote_addr=session.backend, local_addr=(source, 0) if source else None)
        except OSError as exc:
            stat = self.per_backend.get(session.backend)
            if stat is not None:
                stat.failed += 1
                stat.ejected_until = self.loop.time() + EJECT_SECONDS
            log.debug("%s: backend %s: %s", self.key, _addr(session.backend), _error_text(exc))
            session.close()
            return
        pending, session.pending = session.pending, None
        if session.closed:
            session.transport.close()
            return
        for data in pending:
            session.transport.sendto(data)

    def error_received(self, exc):
        pass

    def connection_lost(self, exc):
        self.transport = None
        self.listening = False

    def close(self) -> None:
        """A UDP listener cannot leave sessions behind: their replies go out of the listening socket."""
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.listening = False
        for session in list(self.sessions.values()):
            session.close()

    def sweep(self, now: float) -> None:
        for session in list(self.sessions.values()):
            if session.touched:
                session.touched = False
                session.idle_since = now
            elif now - session.idle_since > self.proxy.udp_idle:
                session.close()

    def stats(self) -> dict:
        out = super().stats()
        out["datagrams"] = self.datagrams
        return out


# ---------------------------------------------------------------------------------------------- the child


def _parse_route(route: dict) -> tuple[str, tuple, str | None]:
    proto = route.get("proto", "tcp")
    if proto not in ("tcp", "udp"):
        raise ValueError(f"unknown proto {proto!r}")
    host, port = route["listen"]
    if not isinstance(host, str) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"bad listen address {route['listen']!r}")
    backends = []
    for backend in route.get("backends") or ():
        bhost, bport = backend
        if not isinstance(bhost, str) or not isinstance(bport, int) or not 0 < bport < 65536:
            raise ValueError(f"bad backend {backend!r}")
        backends.append((bhost, bport))
    source = route.get("source") or None
    if source is not None and not isinstance(source, str):
        raise ValueError(f"bad source {source!r}")
    return route_key(host, port, proto), tuple(backends), source


class Proxy:
    """The route table and its listeners, in the child's event loop."""

    def __init__(self, loop, tcp_idle: float = TCP_IDLE, udp_idle: float = UDP_IDLE):
        self.loop = loop
        self.tcp_idle = tcp_idle
        self.udp_idle = udp_idle
        self.listeners: dict[str, _Listener] = {}
        self.retired: set[_TcpListener] = set()  # removed TCP listeners whose connections are still open
        self._sweeper = loop.create_task(self._sweep())

    async def set_routes(self, routes: list) -> dict:
        errors: dict[str, str] = {}
        wanted: dict[str, tuple] = {}
        for i, route in enumerate(routes or ()):
            try:
                key, backends, source = _parse_route(route)
            except (KeyError, TypeError, ValueError) as exc:
                errors[f"route {i}"] = f"invalid route: {exc}"
                continue
            wanted[key] = (route, backends, source)
        for key in [k for k in self.listeners if k not in wanted]:
            listener = self.listeners.pop(key)
            listener.close()
            if isinstance(listener, _TcpListener) and listener.conns:
                self.retired.add(listener)  # its connections still count down to their idle timeout
        for key, (route, backends, source) in wanted.items():
            listener = self.listeners.get(key)
            if listener is None:
                host, port = route["listen"]
                cls = _TcpListener if route.get("proto", "tcp") == "tcp" else _UdpListener
                listener = self.listeners[key] = cls(self, host, port)
            listener.set_backends(backends, source)
            if not listener.listening:
                try:
                    await listener.open()
                except OSError as exc:
                    errors[key] = _error_text(exc)
        await asyncio.sleep(0)  # let closed listening sockets go before the reply
        return errors

    def stats(self) -> dict:
        return {key: listener.stats() for key, listener in self.listeners.items()}

    async def _sweep(self) -> None:
        period = min(max(0.05, min(self.tcp_idle, self.udp_idle) / 4), 30.0)
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            for listener in list(self.listeners.values()):
                listener.sweep(now)
            for listener in list(self.retired):
                listener.sweep(now)
                if not listener.conns:
                    self.retired.discard(listener)

    def close(self) -> None:
        """Close every listener and every connection (the child is exiting)."""
        self._sweeper.cancel()
        for listener in list(self.listeners.values()) + list(self.retired):
            listener.abort()
        self.listeners.clear()
        self.retired.clear()


def _set_pdeathsig() -> None:
    """Ask Linux for SIGTERM when the parent (thread) that started us dies: a backstop to stdin EOF."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _write(message: dict) -> None:
    data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
    view = memoryview(data)
    while view:
        n = os.write(1, view)
        view = view[n:]


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tcp_idle = float(os.environ.get("SWARMCTL_MESH_TCP_IDLE", TCP_IDLE))
    udp_idle = float(os.environ.get("SWARMCTL_MESH_UDP_IDLE", UDP_IDLE))
    proxy = Proxy(loop, tcp_idle=tcp_idle, udp_idle=udp_idle)
    reader = asyncio.StreamReader(limit=CONTROL_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def commands():
        while True:
            try:
                line = await reader.readline()
            except (ValueError, asyncio.LimitOverrunError):
                _write({"ok": False, "error": "command line too long"})
                continue
            if not line:
                return
            if not line.strip():
                continue
            try:
                command = json.loads(line)
                if not isinstance(command, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                _write({"ok": False, "error": f"bad command: {exc}"})
                continue
            op = command.get("op")
            reply: dict = {"op": op, "ok": True}
            if "id" in command:
                reply["id"] = command["id"]
            try:
                if op == "routes":
                    reply["errors"] = await proxy.set_routes(command.get("routes") or [])
                elif op == "stats":
                    reply["listeners"] = proxy.stats()
                elif op == "ping":
                    pass
                else:
                    reply.update(ok=False, error=f"unknown op {op!r}")
            except Exception as exc:  # a bug must not take the data plane down
                log.exception("mesh proxy: %s failed", op)
                reply.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            _write(reply)

    loop_name = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
    _write({"event": "ready", "pid": os.getpid(), "loop": loop_name})
    command_task = loop.create_task(commands())
    stop_task = loop.create_task(stop.wait())
    try:
        await asyncio.wait({command_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        command_task.cancel()
        stop_task.cancel()
        proxy.close()
        await asyncio.sleep(0)


def _loop_factory():
    if os.environ.get("SWARMCTL_MESH_LOOP", "") != "asyncio":
        try:
            import uvloop
            return uvloop.new_event_loop
        except ImportError:
            pass
    return asyncio.new_event_loop


def main() -> int:
    if sys.platform.startswith("linux"):
        _set_pdeathsig()
        if os.getppid() == 1:  # the parent died before prctl took effect
            return 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides; a terminal's ^C reaches it
    logging.basicConfig(level=os.environ.get("SWARMCTL_MESH_LOG", "WARNING"),
                        format="mesh-proxy %(levelname)s %(message)s", stream=sys.stderr)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve())
    return 0


# ---------------------------------------------------------------------------------------------- the handle


class ProxyError(RuntimeError):
    """The proxy child is not running, died during a request, or refused a command."""


class ProxyProcess:
    """The daemon's handle on the proxy child.

    ``await start()``; ``await set_routes(routes) -> errors`` (the reply's ``errors``: route key -> text);
    ``await stats() -> {route key: counters}`` ({} when the child is not running); ``await stop()``
    (closes stdin, waits up to 3 s, then kills); ``running``. If the child dies, the next set_routes
    starts a new one (a warning is logged) and sends it the table. ``env`` is added to the child's
    environment (e.g. SWARMCTL_MESH_LOOP=asyncio)."""

    kind = "proxy"

    def __init__(self, *, env: dict | None = None, python: str | None = None):
        self._env = env
        self._python = python or sys.executable
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._seq = 0
        self._started = False
        self.loop_name: str | None = None
        self.pid: int | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        async with self._lock:
            await self._start()

    async def _start(self) -> None:
        if self.running:
            return
        await self._reap()
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if self._env:
            env.update(self._env)
        self._proc = await asyncio.create_subprocess_exec(
            self._python, "-m", "swarmctl.mesh.proxy", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env=env, limit=CONTROL_LIMIT, close_fds=True)
        self._started = True
        try:
            while True:
                line = await asyncio.wait_for(self._proc.stdout.readline(), 10.0)
                if not line:
                    raise ProxyError("mesh proxy exited at start")
                message = json.loads(line)
                if message.get("event") == "ready":
                    self.loop_name = message.get("loop")
                    self.pid = message.get("pid")
                    return
        except BaseException:
            await self._kill()
            raise

    async def _request(self, command: dict) -> dict:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            raise ProxyError("mesh proxy is not running")
        self._seq += 1
        command = dict(command, id=self._seq)
        try:
            proc.stdin.write((json.dumps(command, separators=(",", ":")) + "\n").encode())
            await proc.stdin.drain()
            while True:
                line = await asyncio.wait_for(proc.stdout.readline(), REQUEST_TIMEOUT)
                if not line:
                    raise ProxyError("mesh proxy exited")
                message = json.loads(line)
                if message.get("id") == self._seq:
                    break
        except (OSError, ValueError, asyncio.TimeoutError) as exc:
            await self._kill()
            raise ProxyError(f"mesh proxy: {type(exc).__name__}: {exc}") from exc
        except ProxyError:
            await self._kill()
            raise
        if not message.get("ok"):
            raise ProxyError(message.get("error") or "mesh proxy refused the command")
        return message

    async def set_routes(self, routes: list[dict]) -> dict:
        async with self._lock:
            for attempt in (1, 2):
                if not self.running:
                    if self._started:
                        log.warning("mesh proxy (pid %s) is gone (exit %s); starting a new one",
                                    self.pid, self._proc.returncode if self._proc else None)
                    await self._start()
                try:
                    reply = await self._request({"op": "routes", "routes": routes})
                    return reply.get("errors") or {}
                except ProxyError:
                    if self.running or attempt == 2:
                        raise

    async def stats(self) -> dict:
        async with self._lock:
            if not self.running:
                return {}
            return (await self._request({"op": "stats"})).get("listeners") or {}

    async def stop(self) -> None:
        async with self._lock:
            proc = self._proc
            self._started = False
            if proc is None:
                return
            if proc.returncode is None:
                try:
                    proc.stdin.close()
                except (OSError, RuntimeError):
                    pass
                try:
                    await asyncio.wait_for(proc.wait(), STOP_WAIT)
                except asyncio.TimeoutError:
                    pass
            await self._kill()

    async def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except asyncio.TimeoutError:
            pass
        await self._reap()

    async def _reap(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is None:
            return
        self._proc = None
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except (OSError, RuntimeError):
                pass


if __name__ == "__main__":
    sys.exit(main())

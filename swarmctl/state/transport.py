"""Raft between certified managers only: a pysyncobj Transport over mutual TLS with the node certificates.

pysyncobj's own TCP transport carries Fernet-encrypted pickles keyed by one password for the cluster's
life, accepts a 2 GiB length prefix and grows its receive buffer quadratically before it authenticates
anything. This transport replaces it (SyncObj(..., transportClass=functools.partial(TLSTransport, ...))).
It keeps pysyncobj's rules: the node with the greater address dials, a dial is retried at most every
`connectionRetryTime`, a connection that received nothing for `connectionTimeout` is dead, and the
node connected / disconnected / message received callbacks mean what they meant. It runs on pysyncobj's
poller, on its tick thread, with non-blocking sockets.

A connection, in order:
1. TCP, then a TLS handshake (TLS 1.2 or newer). Both sides present their node certificate and verify the
   other's against the cluster CA; the server requires a client certificate (CERT_REQUIRED).
2. The dialer checks `authorize(identity, raft_addr)` for the address it dialled, then sends HELLO (its own
   Raft address, at most MAX_HELLO bytes of JSON). The server checks that the address is a Raft member that
   should dial it and calls `authorize(identity, claimed_addr)`, then answers ACCEPT. Only then do both
   sides report the node connected. `authorize` decides who is a current manager of this cluster
   (RaftStore._authorize); every connection is checked again each RECHECK_PERIOD, and one whose peer is
   no longer authorised (demoted, removed, certificate expired) is closed at once.
3. Messages: pickles (protocol 5), read back only through swarmctl.state.codec's restricted unpickler,
   each at most MAX_MESSAGE bytes. PING frames keep an idle link alive, so that `connectionTimeout`
   detects dead peers without tearing down quiet but healthy links (pysyncobj's own transport
   disconnects a link idle for `connectionTimeout` the first time it sends on it).

Frames are a 4-byte big-endian length, a 1-byte kind and the payload. A length over the limit for the
connection's state (MAX_HELLO before it is admitted, MAX_MESSAGE after) closes the connection before any
of it is read, so memory held for a peer that has not authenticated is bounded (the TLS records and one
HELLO); receive buffers are bytearrays consumed by offset, so they grow linearly. At most
MAX_UNAUTHENTICATED incoming connections may be unadmitted at a time (the oldest is dropped for a new
one), each within a handshake deadline of `connectionTimeout`. pysyncobj's utility messages
(status/add/remove/set_version/transfer of syncobj_admin) have no frame kind here and are never served:
membership changes come only through the API.
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import socket
import ssl
import struct
import threading
import time
import zlib
from datetime import datetime, timezone
from typing import Callable

from pysyncobj.node import TCPNode
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.transport import Transport, TransportNotReadyError

from swarmctl.security.tls import peer_identity
from swarmctl.state import codec

log = logging.getLogger(__name__)

MAX_MESSAGE = 64 * 1024 * 1024   # bytes of one message; snapshots travel in logCompactionBatchSize chunks
MAX_HELLO = 1024                 # bytes of a HELLO; the most a peer can make us hold before it is admitted
MAX_UNAUTHENTICATED = 16         # incoming connections that have not been admitted yet
MAX_SEND_BUFFER = 2 * MAX_MESSAGE  # bytes queued for a peer that does not read; then it is disconnected
RECHECK_PERIOD = 1.0             # seconds between re-authorisations of open connections
ACCEPT_BATCH = 64                # connections accepted per poll event
RECV_CHUNK = 256 * 1024          # one SSL read returns at most one TLS record (16 KiB) anyway
SEND_CHUNK = 256 * 1024
READ_BUDGET = 4 * 1024 * 1024    # bytes read from one connection per poll event, so one peer cannot starve the others
# zlib costs more CPU than it saves on a LAN (bench/raft_transport.py measures both); receivers accept
# either kind, so this can change without breaking compatibility.
COMPRESS_LEVEL = 0
COMPRESS_MIN = 4096              # with compression on, smaller messages go uncompressed

_HEADER = struct.Struct("!IB")
HELLO, ACCEPT, PICKLE, ZPICKLE, PING = 1, 2, 3, 4, 5

Authorize = Callable[[object, str], bool]


class _State:
    CONNECTING = "connecting"   # TCP connect in progress (dialer)
    HANDSHAKE = "handshake"     # TLS handshake
    HELLO = "hello"             # waiting for HELLO (server) or ACCEPT (dialer)
    CONNECTED = "connected"
    CLOSED = "closed"


def frame(kind: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(len(payload), kind) + payload


def encode_message(message) -> tuple[int, bytes]:
    """(kind, payload) of a pysyncobj message."""
    data = codec.dumps(message)
    if COMPRESS_LEVEL and len(data) >= COMPRESS_MIN:
        return ZPICKLE, zlib.compress(data, COMPRESS_LEVEL)
    return PICKLE, data


def decode_message(kind: int, payload: bytes):
    """The message of a PICKLE or ZPICKLE payload; raises ValueError (or UnpicklingError) if it is not
    one, is larger than MAX_MESSAGE once inflated, or names anything but plain data."""
    if kind == ZPICKLE:
        inflater = zlib.decompressobj()
        payload = inflater.decompress(payload, MAX_MESSAGE)
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("compressed message is larger than the limit or truncated")
    elif kind != PICKLE:
        raise ValueError(f"unexpected frame kind {kind}")
    message = codec.loads(payload)
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError("not a Raft message")
    return message


class FrameReader:
    """Splits a byte stream into frames: a bytearray consumed by offset, never holding more than one
    partial frame plus the last chunk fed, and refusing a length over `limit` before reading its body."""

    def __init__(self, limit: int):
        self.limit = limit
        self.buffer = bytearray()
        self.offset = 0

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def next(self) -> tuple[int, bytes] | None:
        """The next complete frame (kind, payload), or None; raises FrameTooLarge."""
        buf, off = self.buffer, self.offset
        if len(buf) - off < _HEADER.size:
            self._compact()
            return None
        length, kind = _HEADER.unpack_from(buf, off)
        if length > self.limit:
            raise FrameTooLarge(length, self.limit)
        end = off + _HEADER.size + length
        if len(buf) < end:
            self._compact()
            return None
        with memoryview(buf) as view, view[off + _HEADER.size:end] as body:
            payload = bytes(body)  # one copy; the views are released before the buffer changes again
        self.offset = end
        return kind, payload

    def _compact(self) -> None:
        if self.offset:
            del self.buffer[:self.offset]  # what is left is a part of one frame
            self.offset = 0

    @property
    def held(self) -> int:
        return len(self.buffer) - self.offset


class FrameTooLarge(ValueError):
    def __init__(self, length: int, limit: int):
        super().__init__(f"a frame of {length} bytes exceeds the limit of {limit}")
        self.length = length


class _Conn:
    """One TLS connection, driven by poll events on the tick thread (under the transport's lock)."""

    def __init__(self, transport: "TLSTransport", sock: socket.socket, outgoing: bool, node: TCPNode | None,
                 peer: str, deadline: float):
        self.transport = transport
        self.sock = sock
        self.fileno = sock.fileno()
        self.outgoing = outgoing
        self.node = node            # the member this connection belongs to (dialer: from the start)
        self.peer = peer            # ip:port, for log lines
        self.identity = None
        self.state = _State.CONNECTING if outgoing else _State.HANDSHAKE
        self.deadline = deadline
        self.reader = FrameReader(MAX_HELLO)
        self.wbuf = bytearray()
        self.woff = 0
        self.retry_len = 0          # an SSL write that must be repeated with this length
        self.want = 0               # poll events the TLS layer waits for (handshake, reads needing writes)
        self.mask = None
        self.last_recv = self.last_send = time.monotonic()

    # ---- events ------------------------------------------------------------------------------
    def on_event(self, descr: int, event: int) -> None:
        if self.state == _State.CLOSED or descr != self.fileno:
            return
        if event & POLL_EVENT_TYPE.ERROR and not event & POLL_EVENT_TYPE.READ:
            self.close("connection error", quiet=self.state == _State.CONNECTING)
            return
        if self.state == _State.CONNECTING:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.close(f"connect failed: {errno.errorcode.get(err, err)}", quiet=True)
                return
            self._start_tls()
        if self.state == _State.HANDSHAKE:
            self._handshake()
        elif self.state != _State.CLOSED:
            if event & POLL_EVENT_TYPE.WRITE or self.want & POLL_EVENT_TYPE.WRITE:
                self.want = 0
                self.flush()
            if self.state != _State.CLOSED and event & (POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR):
                self._read()
        self.subscribe()

    def subscribe(self) -> None:
        if self.state == _State.CLOSED:
            return
        mask = POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR
        if self.state == _State.CONNECTING or self.woff < len(self.wbuf) or self.want & POLL_EVENT_TYPE.WRITE:
            mask |= POLL_EVENT_TYPE.WRITE
        if mask != self.mask:
            self.mask = mask
            self.transport._poller.subscribe(self.fileno, self.on_event, mask)

    # ---- TLS ---------------------------------------------------------------------------------
    def _start_tls(self) -> None:
        try:
            self.sock = self.transport._client_ctx.wrap_socket(self.sock, server_side=False,
                                                                do_handshake_on_connect=False)
        except (ssl.SSLError, OSError) as exc:
            self.close(f"TLS setup failed: {exc}")
            return
        self.state = _State.HANDSHAKE

    def _handshake(self) -> None:
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.want = POLL_EVENT_TYPE.READ
            return
        except ssl.SSLWantWriteError:
            self.want = POLL_EVENT_TYPE.WRITE
            return
        except (ssl.SSLError, OSError) as exc:
            self.transport._refused(self, f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}")
            return
        self.want = 0
        try:
            self.identity = peer_identity(self.sock)
        except ValueError as exc:
            self.identity = None
            reason = str(exc)
        else:
            reason = "no certificate"
        if self.identity is None:
            self.transport._refused(self, reason)
            return
        self.state = _State.HELLO
        if self.outgoing:
            if not self.transport._check(self.identity, self.node.address):
                self.transport._refused(self, f"{self.identity.node_id} is not a manager at {self.node.address}")
                return
            self.send_frame(HELLO, json.dumps({"addr": self.transport._self_addr}).encode())
        if self.state != _State.CLOSED:
            self._read()  # the peer's first frame may have come with the end of the handshake

    # ---- reading -----------------------------------------------------------------------------
    def _read(self) -> None:
        budget = READ_BUDGET
        while self.state != _State.CLOSED:
            try:
                data = self.sock.recv(RECV_CHUNK)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLWantWriteError:
                self.want = POLL_EVENT_TYPE.WRITE
                return
            except ssl.SSLZeroReturnError:
                data = b""
            except (ssl.SSLError, OSError) as exc:
                self.close(f"read failed: {exc}")
                return
            if not data:
                self.close("closed by the peer", quiet=True)
                return
            self.last_recv = time.monotonic()
            self.reader.feed(data)
            self._frames()
            budget -= len(data)
            if budget <= 0 and not self.sock.pending():
                return  # more in the kernel buffer: poll reports it again

    def _frames(self) -> None:
        while self.state != _State.CLOSED:
            try:
                got = self.reader.next()
            except FrameTooLarge as exc:
                self.transport._refused(self, str(exc))
                return
            if got is None:
                return
            kind, payload = got
            if self.state == _State.CONNECTED:
                self._message(kind, payload)
            elif self.outgoing and kind == ACCEPT:
                self.transport._accepted(self)
            elif not self.outgoing and kind == HELLO:
                self.transport._hello(self, payload)
            else:
                self.transport._refused(self, f"unexpected frame kind {kind} before admission")

    def _message(self, kind: int, payload: bytes) -> None:
        if kind == PING:
            return
        try:
            message = decode_message(kind, payload)
        except Exception as exc:  # noqa: BLE001 - any undecodable input closes the connection
            self.transport._refused(self, f"undecodable message: {exc}")
            return
        self.transport._deliver(self, message)

    # ---- writing -----------------------------------------------------------------------------
    def send_frame(self, kind: int, payload: bytes = b"") -> None:
        if self.state == _State.CLOSED:
            return
        self.wbuf += _HEADER.pack(len(payload), kind)
        self.wbuf += payload
        if len(self.wbuf) - self.woff > MAX_SEND_BUFFER:
            self.close(f"peer does not read: more than {MAX_SEND_BUFFER} bytes queued")
            return
        self.flush()
        self.subscribe()

    def flush(self) -> None:
        if self.state in (_State.CONNECTING, _State.HANDSHAKE, _State.CLOSED):
            return
        while self.woff < len(self.wbuf):
            n = self.retry_len or min(SEND_CHUNK, len(self.wbuf) - self.woff)
            try:
                with memoryview(self.wbuf) as view, view[self.woff:self.woff + n] as chunk:
                    sent = self.sock.send(chunk)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                self.retry_len = n  # OpenSSL wants the same write repeated
                break
            except (ssl.SSLError, OSError) as exc:
                self.close(f"write failed: {exc}")
                return
            self.retry_len = 0
            if sent <= 0:
                break
            self.woff += sent
            self.last_send = time.monotonic()
        if self.woff == len(self.wbuf):
            self.wbuf.clear()
            self.woff = 0
        elif self.woff > SEND_CHUNK * 4:
            del self.wbuf[:self.woff]
            self.woff = 0

    # ---- closing -----------------------------------------------------------------------------
    def close(self, reason: str, quiet: bool = False) -> None:
        if self.state == _State.CLOSED:
            return
        was = self.state
        self.state = _State.CLOSED
        self.transport._poller.unsubscribe(self.fileno)
        try:
            self.sock.close()
        except OSError:
            pass
        self.reader = FrameReader(0)
        self.wbuf = bytearray()
        (log.debug if quiet else log.info)("raft connection %s %s closed: %s",
                                           "to" if self.outgoing else "from", self.peer, reason)
        self.transport._closed(self, was)


class TransmissionGuard:
    """Works around a bug in pysyncobj 0.3.x: an entry larger than appendEntriesBatchSizeBytes travels in chunks
    labelled start, process... finish, but the leader labels a chunk 'finish' as soon as it reaches the length of
    the entry's *data*, while the chunks cut the *pickled* entry, which is a few dozen bytes longer. When the data
    ends just before a chunk boundary, the follower is told to unpickle before the last chunk came: "pickle data
    was truncated", its connection closes, the leader sends the same entry again, and that follower never catches
    up (found by the 200-node scale test: a 3-manager swarm lost its quorum this way).

    The guard sees every chunk before pysyncobj does (one transmission at a time, as pysyncobj keeps one buffer).
    A 'finish' whose assembled bytes do not yet unpickle completely is passed on as 'process', so pysyncobj waits
    for the real last chunk, which the leader labels 'finish' as well. Raft settings keep such entries rare
    (appendEntriesBatchSizeBytes in state/raft.py), so the extra decode costs little."""

    def __init__(self):
        self._data: bytearray | None = None

    def check(self, message: dict) -> dict:
        kind = message.get("transmission")
        if kind is None or message.get("type") != "append_entries":
            return message
        data = message.get("data") or b""
        if kind == "start":
            self._data = bytearray(data)
            return message
        if self._data is None:
            return message  # a chunk whose start we did not see: pysyncobj refuses it as it would anyway
        self._data += data
        if kind != "finish":
            return message
        if _truncated(bytes(self._data)):
            return dict(message, transmission="process")
        self._data = None
        return message


def _truncated(data: bytes) -> bool:
    try:
        codec.loads(data)
    except EOFError:
        return True
    except Exception as exc:  # noqa: BLE001 - anything but truncation is pysyncobj's to refuse
        return "truncated" in str(exc)
    return False


class Backtracks:
    """Drops the append_entries that a follower's log backtrack has made stale.

    pysyncobj's leader pipelines every entry a lagging follower lacks, in many append_entries messages per
    tick, before any answer comes back. A follower whose last entries conflict with the leader's (an old
    leader's uncommitted tail, after a partition) answers the first message with reset to the conflicting
    index X, and every later message of the burst (whose prevLogIdx lies beyond its log) with reset to its
    last index + 1. Those later answers reach the leader after the first and undo its backtrack, so the next
    burst starts at the same place: the follower never catches up (seen in tests/faults/test_partitions.py).

    So once this follower has answered reset to X, an append_entries from the same term whose prevLogIdx is X
    or more can only be stale (the leader has not yet seen the answer) and is dropped here, unanswered, as if
    lost on the network, which Raft tolerates; the leader's next message, sent from X - 1, passes. The filter
    ends with that message, with a new term, or after WINDOW seconds. Written here because pysyncobj's
    message handling is one private method; the transport is the one place that sees both directions."""

    WINDOW = 1.0

    def __init__(self):
        self._since: dict = {}  # node -> (term or None, index X, monotonic time of the reset)

    def sent(self, node, message) -> None:
        if message.get("type") == "next_node_idx" and message.get("reset") and not message.get("success"):
            self._since[node] = (None, message.get("next_node_idx"), time.monotonic())

    def stale(self, node, message) -> bool:
        held = self._since.get(node)
        if held is None or message.get("type") != "append_entries" or "prevLogIdx" not in message:
            return False
        term, index, at = held
        if term is None:
            term = message.get("term")
            self._since[node] = (term, index, at)
        prev = message.get("prevLogIdx")
        if (message.get("term") != term or time.monotonic() - at > self.WINDOW or not isinstance(index, int)
                or not isinstance(prev, int) or prev < index):
            del self._since[node]
            return False
        return True


class TLSTransport(Transport):
    """pysyncobj Transport over mutual TLS; see the module docstring.

    server_context / client_context: ssl contexts with the node certificate (swarmctl.security.tls);
    authorize(identity, raft_addr) -> bool: whether a certificate identity is a current manager at that
    Raft address; before_send(message): optional, called with each outgoing message before it is
    serialised."""

    def __init__(self, syncObj, selfNode, otherNodes, *, server_context: ssl.SSLContext,
                 client_context: ssl.SSLContext, authorize: Authorize, before_send=None):
        super().__init__(syncObj, selfNode, otherNodes)
        if selfNode is None:
            raise ValueError("read-only pysyncobj nodes are not supported")
        self._syncObj = syncObj
        self._poller = syncObj._poller
        self._conf = syncObj.conf
        self._selfNode = selfNode
        self._self_addr = selfNode.address
        self._server_ctx = server_context
        self._client_ctx = client_context
        self._authorize = authorize
        self._before_send = before_send
        self._backtracks = Backtracks()
        self._transmissions = TransmissionGuard()
        self._lock = threading.RLock()  # SyncObj.transferLeadership sends from the caller's thread
        self._nodes: set[TCPNode] = set()
        self._addr_to_node: dict[str, TCPNode] = {}
        self._connections: dict[TCPNode, _Conn] = {}
        self._pending: collections.OrderedDict[_Conn, None] = collections.OrderedDict()  # not admitted
        self._last_connect: dict[TCPNode, float] = {}
        self._prevent_connect: set[TCPNode] = set()
        self._server: socket.socket | None = None
        self._ready = False
        self._bind_attempts = 0
        self._last_bind = 0.0
        self._bind_over = threading.Event()
        self._last_recheck = 0.0
        self._last_refusal_log: dict[str, float] = {}
        self.refusals = 0  # connections refused since start (for tests and status)
        syncObj.addOnTickCallback(self._onTick)
        for node in otherNodes:
            self.addNode(node)

    # ---- pysyncobj Transport interface -------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready

    def tryGetReady(self) -> None:
        with self._lock:
            self._maybe_bind()

    def waitReady(self) -> None:
        self._bind_over.wait()
        if not self._ready:
            raise TransportNotReadyError

    def addNode(self, node) -> None:
        with self._lock:
            self._nodes.add(node)
            self._addr_to_node[node.address] = node

    def dropNode(self, node, quiet: bool = False) -> None:
        with self._lock:
            conn = self._connections.get(node)
            if conn is not None:
                self._prevent_connect.add(node)
                conn.close("member removed", quiet=quiet)
                self._prevent_connect.discard(node)
            self._connections.pop(node, None)
            self._nodes.discard(node)
            self._addr_to_node.pop(node.address, None)
            self._last_connect.pop(node, None)

    def send(self, node, message) -> bool:
        with self._lock:
            conn = self._connections.get(node)
            if conn is None or conn.state != _State.CONNECTED:
                return False
            if self._before_send is not None:
                self._before_send(message)
            self._backtracks.sent(node, message)
            kind, payload = encode_message(message)
            if len(payload) > MAX_MESSAGE:
                log.error("not sending a %s message of %d bytes to %s: over the limit of %d bytes",
                          message.get("type"), len(payload), node.address, MAX_MESSAGE)
                return False
            conn.send_frame(kind, payload)
            return conn.state == _State.CONNECTED

    def destroy(self) -> None:
        with self._lock:
            self.setOnMessageReceivedCallback(None)
            self.setOnNodeConnectedCallback(None)
            self.setOnNodeDisconnectedCallback(None)
            self.setOnReadonlyNodeConnectedCallback(None)
            self.setOnReadonlyNodeDisconnectedCallback(None)
            for node in list(self._nodes):
                self.dropNode(node, quiet=True)
            for conn in list(self._pending):
                conn.close("shutting down", quiet=True)
            for conn in list(self._connections.values()):
                conn.close("shutting down", quiet=True)
            self._unbind()
            self._ready = False

    # ---- server ------------------------------------------------------------------------------
    def _maybe_bind(self) -> None:
        """Bind unless bound or tried within bindRetryTime; raise after maxBindRetries failures (as pysyncobj)."""
        if self._ready or time.monotonic() < self._last_bind + self._conf.bindRetryTime:
            return
        self._last_bind = time.monotonic()
        address = self._conf.bindAddress or self._self_addr
        host, port = address.rsplit(":", 1)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._conf.sendBufferSize)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._conf.recvBufferSize)
            sock.setblocking(False)
            sock.bind((host.strip("[]"), int(port)))
            sock.listen(MAX_UNAUTHENTICATED)
        except OSError as exc:
            sock.close()
            self._bind_attempts += 1
            log.warning("cannot bind the Raft port %s: %s", address, exc.strerror or exc)
            if self._conf.maxBindRetries and self._bind_attempts >= self._conf.maxBindRetries:
                self._bind_over.set()
                raise TransportNotReadyError from None
            return
        self._server = sock
        self._poller.subscribe(sock.fileno(), self._on_accept, POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR)
        self._ready = True
        self._bind_over.set()

    def _unbind(self) -> None:
        if self._server is not None:
            self._poller.unsubscribe(self._server.fileno())
            self._server.close()
            self._server = None

    def _on_accept(self, descr: int, event: int) -> None:
        with self._lock:
            if self._server is None or descr != self._server.fileno():
                return
            if event & POLL_EVENT_TYPE.ERROR:
                log.warning("the Raft port failed; binding it again")
                self._unbind()
                self._ready = False
                self._last_bind = 0.0
                return
            for _ in range(ACCEPT_BATCH):
                try:
                    sock, addr = self._server.accept()
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:  # out of descriptors or memory: leave the rest in the backlog
                    log.warning("cannot accept a Raft connection: %s", exc.strerror or exc)
                    return
                self._admit_socket(sock, f"{addr[0]}:{addr[1]}")

    def _admit_socket(self, sock: socket.socket, peer: str) -> None:
        while len(self._pending) >= MAX_UNAUTHENTICATED:
            self._refused(next(iter(self._pending)), "too many connections waiting for authentication")
        try:
            self._tune(sock)
            sock = self._server_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            log.info("raft connection from %s closed: %s", peer, exc)
            return
        conn = _Conn(self, sock, outgoing=False, node=None, peer=peer,
                     deadline=time.monotonic() + self._conf.connectionTimeout)
        self._pending[conn] = None
        conn.want = POLL_EVENT_TYPE.READ
        conn.subscribe()

    def _tune(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._conf.sendBufferSize)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._conf.recvBufferSize)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        keepalive = self._conf.tcp_keepalive
        if keepalive is not None and hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, keepalive[0])
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, keepalive[1])
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, keepalive[2])

    # ---- dialing -----------------------------------------------------------------------------
    def _should_connect(self, node) -> bool:
        return node not in self._prevent_connect and self._self_addr > node.address

    def _connect_if_necessary(self, node) -> None:
        conn = self._connections.get(node)
        if conn is not None and conn.state != _State.CLOSED:
            return
        if node not in self._nodes or not self._should_connect(node):
            return
        now = time.monotonic()
        last = self._last_connect.get(node)
        if last is not None and now - last < self._conf.connectionRetryTime:
            return
        self._last_connect[node] = now
        self._dial(node)

    def _dial(self, node) -> None:
        host = node.ip
        if host is None:
            return
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._tune(sock)
            try:  # from our own Raft address, so that the peer (and a firewall) sees which member speaks
                sock.bind((self._selfNode.host.strip("[]"), 0))
            except OSError:
                pass
            err = sock.connect_ex((host, node.port))
        except OSError as exc:
            sock.close()
            log.debug("cannot dial %s: %s", node.address, exc)
            return
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            sock.close()
            return
        conn = _Conn(self, sock, outgoing=True, node=node, peer=node.address,
                     deadline=time.monotonic() + self._conf.connectionTimeout)
        self._connections[node] = conn
        conn.subscribe()

    # ---- admission ---------------------------------------------------------------------------
    def _check(self, identity, raft_addr: str) -> bool:
        try:
            return bool(self._authorize(identity, raft_addr))
        except Exception:  # noqa: BLE001 - a failing check refuses, it does not crash the tick thread
            log.exception("raft authorisation check failed")
            return False

    def _hello(self, conn: _Conn, payload: bytes) -> None:
        """The server side: the dialer says which member it is."""
        try:
            addr = json.loads(payload.decode("utf-8"))["addr"]
            if not isinstance(addr, str):
                raise ValueError("addr is not a string")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            self._refused(conn, "malformed HELLO")
            return
        node = self._addr_to_node.get(addr)
        if node is None:  # also a manager that is about to join, until the leader adds it: not a warning
            self._refused(conn, f"{addr} is not a Raft member here", level=logging.INFO)
            return
        if not addr > self._self_addr:
            self._refused(conn, f"{addr} should not dial {self._self_addr}", level=logging.INFO)
            return
        if not self._check(conn.identity, addr):
            self._refused(conn, f"{conn.identity.node_id} ({conn.identity.role}) is not a current manager at {addr}")
            return
        self._pending.pop(conn, None)
        old = self._connections.get(node)
        conn.node = node
        self._connections[node] = conn
        if old is not None and old is not conn:
            old.node = None  # replaced: its closing must not report the node disconnected
            old.close("replaced by a new connection", quiet=True)
        conn.send_frame(ACCEPT)
        if conn.state == _State.CLOSED:
            return
        self._established(conn)

    def _accepted(self, conn: _Conn) -> None:
        """The dialer side: the server admitted us."""
        if self._connections.get(conn.node) is not conn:
            conn.close("superseded", quiet=True)
            return
        self._established(conn)

    def _established(self, conn: _Conn) -> None:
        conn.state = _State.CONNECTED
        conn.reader.limit = MAX_MESSAGE
        conn.last_recv = time.monotonic()
        log.debug("raft connection %s %s established (%s)", "to" if conn.outgoing else "from",
                  conn.node.address, conn.identity.node_id)
        self._onNodeConnected(conn.node)

    def _deliver(self, conn: _Conn, message: dict) -> None:
        if self._backtracks.stale(conn.node, message):
            return
        message = self._transmissions.check(message)
        try:
            self._onMessageReceived(conn.node, message)
        except Exception:  # noqa: BLE001 - a message pysyncobj cannot handle closes its connection only
            log.exception("raft message from %s failed", conn.node.address if conn.node else conn.peer)
            conn.close("message handling failed")

    def _refused(self, conn: _Conn, reason: str, level: int = logging.WARNING) -> None:
        """Close a connection we do not admit; logged once per peer address and reason in 10 s."""
        self.refusals += 1
        now = time.monotonic()
        key = conn.peer.rsplit(":", 1)[0] + reason[:40]
        if now - self._last_refusal_log.get(key, -60.0) >= 10.0:
            if len(self._last_refusal_log) > 1000:
                self._last_refusal_log.clear()
            self._last_refusal_log[key] = now
            log.log(level, "raft connection %s %s refused: %s", "to" if conn.outgoing else "from", conn.peer, reason)
        conn.close(reason, quiet=True)

    def _closed(self, conn: _Conn, was: str) -> None:
        self._pending.pop(conn, None)
        node = conn.node
        if node is None or self._connections.get(node) is not conn:
            return
        del self._connections[node]
        if was == _State.CONNECTED:
            self._onNodeDisconnected(node)
        if node in self._nodes:
            self._connect_if_necessary(node)

    # ---- tick --------------------------------------------------------------------------------
    def _onTick(self) -> None:
        with self._lock:
            try:
                self._maybe_bind()
            except TransportNotReadyError:
                pass
            for node in list(self._nodes):
                self._connect_if_necessary(node)
            now = time.monotonic()
            timeout = self._conf.connectionTimeout
            for conn in list(self._pending) + list(self._connections.values()):
                if conn.state == _State.CLOSED:
                    continue
                if conn.state != _State.CONNECTED:
                    if now > conn.deadline:
                        if not conn.outgoing:
                            self._refused(conn, "handshake timed out")
                        else:
                            conn.close(f"{conn.state} timed out", quiet=conn.state == _State.CONNECTING)
                    continue
                if now - conn.last_recv > timeout:
                    conn.close(f"nothing received for {timeout:.1f}s")
                elif now - conn.last_send > timeout / 4:
                    conn.send_frame(PING)
            if now - self._last_recheck >= RECHECK_PERIOD:
                self._last_recheck = now
                self._recheck()

    def _recheck(self) -> None:
        """Close every admitted connection whose peer is no longer a current manager at its address."""
        utc_now = datetime.now(timezone.utc)
        for node, conn in list(self._connections.items()):
            if conn.identity is None or conn.state in (_State.CLOSED, _State.CONNECTING, _State.HANDSHAKE):
                continue
            if conn.identity.not_after < utc_now:
                self._refused(conn, f"the certificate of {conn.identity.node_id} expired")
            elif not self._check(conn.identity, node.address):
                self._refused(conn, f"{conn.identity.node_id} is no longer a manager at {node.address}")

    # ---- status ------------------------------------------------------------------------------
    def connection_states(self) -> dict[str, str]:
        """{member address: state} of the current connections, for tests and status."""
        with self._lock:
            return {node.address: conn.state for node, conn in self._connections.items()}

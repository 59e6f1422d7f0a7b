"""The Raft transport over mutual TLS (swarmctl/state/transport.py) and the restricted unpickler (codec.py).

Framing and the unpickler are tested directly; the transport with real pysyncobj replicas in this process,
each on its own loopback address with a free port, talking real TLS over TCP.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import io
import json
import os
import pickle
import socket
import ssl
import struct
import threading
import time
import zlib

import pysyncobj.journal
import pysyncobj.pickle
import pytest
from pysyncobj import SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.node import TCPNode

from swarmctl.manager.ca import create_root_ca, sign_node_certificate
from swarmctl.security import tls
from swarmctl.security.certs import generate_key, make_csr
from swarmctl.state import codec, transport
from swarmctl.state.machine import StateMachine
from swarmctl.state.raft import RaftStore, raft_conf
from swarmctl.state.records import new_node
from swarmctl.state.transport import (ACCEPT, HELLO, MAX_HELLO, MAX_MESSAGE, PICKLE, PING, ZPICKLE, FrameReader,
                                      FrameTooLarge, TLSTransport, decode_message, frame)

CLUSTER = "clusterunit"


# ---- framing ---------------------------------------------------------------------------------
def test_frames_split_across_and_within_chunks():
    frames = [frame(PICKLE, os.urandom(n)) for n in (0, 1, 100, 70000, 3)] + [frame(PING)]
    stream = b"".join(frames)
    for chunk in (1, 7, 4096, len(stream)):
        reader = FrameReader(MAX_MESSAGE)
        got = []
        for pos in range(0, len(stream), chunk):
            reader.feed(stream[pos:pos + chunk])
            while (item := reader.next()) is not None:
                got.append(frame(*item))
        assert got == frames, chunk
        assert reader.held == 0


def test_a_length_over_the_limit_is_refused_from_the_header_alone():
    reader = FrameReader(MAX_HELLO)
    reader.feed(struct.pack("!IB", 2**31, PICKLE))  # a 2 GiB prefix, no body at all
    with pytest.raises(FrameTooLarge):
        reader.next()
    reader = FrameReader(MAX_MESSAGE)
    reader.feed(struct.pack("!IB", MAX_MESSAGE + 1, PICKLE))
    with pytest.raises(FrameTooLarge):
        reader.next()
    reader = FrameReader(MAX_MESSAGE)
    reader.feed(struct.pack("!IB", MAX_MESSAGE, PICKLE))
    assert reader.next() is None  # at the limit: waits for the body


def test_receive_buffer_grows_in_place_and_keeps_at_most_one_partial_frame():
    reader = FrameReader(MAX_MESSAGE)
    buffer = reader.buffer
    body = os.urandom(1 << 20)
    data = frame(PICKLE, body)
    for pos in range(0, len(data), 16384):  # TLS records are at most 16 KiB
        reader.feed(data[pos:pos + 16384])
        assert reader.buffer is buffer  # a bytearray extended in place, never re-built by concatenation
        assert reader.next() is None or pos + 16384 >= len(data)
    small = frame(PING) * 1000 + frame(PICKLE, b"x" * 10)[:8]
    reader.feed(small)
    while reader.next() is not None:
        pass
    assert reader.buffer is buffer and reader.held == 8 and len(reader.buffer) == 8  # consumed and compacted


# ---- restricted unpickling -------------------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class _Custom:
    pass


@pytest.mark.parametrize("obj", [_Evil(), _Custom(), functools.partial(print), threading.Lock])
@pytest.mark.parametrize("protocol", [2, 5])
def test_restricted_unpickler_refuses_anything_but_plain_data(obj, protocol):
    try:
        data = pickle.dumps(obj, protocol)
    except (TypeError, pickle.PicklingError):
        pytest.skip("not picklable")
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        codec.loads(data)


def test_restricted_unpickler_refuses_allocating_callables():
    # REDUCE bytes(2**40): a tiny pickle asking for a terabyte
    data = b"\x80\x02c__builtin__\nbytes\nq\x00\x8a\x06\x00\x00\x00\x00\x00\x01\x85R."
    with pytest.raises(pickle.UnpicklingError):
        codec.loads(data)
    data = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R."
    with pytest.raises(pickle.UnpicklingError):
        codec.loads(data)


def test_restricted_unpickler_reads_what_swarmctl_and_pysyncobj_write():
    record = new_node("n1", "manager", "h", "127.0.0.1", manager_addr="127.0.0.1:2377", raft_addr="127.0.0.1:2378")
    write = ("req", 1700000000.5, [{"op": "create", "kind": "node", "id": "n1", "record": record},
                                   {"op": "patch", "kind": "node", "id": "n1", "set": [(["spec", "labels", "a.b"], "x")]}])
    machine = StateMachine()
    machine.apply_batch([write])
    values = [
        (0, ([write],)),                                        # a replicated command, as pysyncobj pickles it
        ["add", "127.0.0.2:2378", TCPNode("127.0.0.2:2378")],   # a membership command
        ({"_SyncObj__enabledCodeVersion": 0}, machine.snapshot(), (b"\x01", 2, 1), {TCPNode("127.0.0.1:2378")}),
        {"type": "append_entries", "entries": [(b"\x00abc", 5, 2)], "serialized": (b"", True, False),
         "big": 2**70, "f": -1.5, "none": None, "fs": frozenset({1}), "ba": bytearray(b"x")},
        b"", collections.OrderedDict(a=1),
    ]
    for value in values:
        for protocol in (2, 5):
            assert codec.loads(pickle.dumps(value, protocol)) == value
    node = codec.loads(pickle.dumps(TCPNode("127.0.0.9:1"), 2))
    assert isinstance(node, TCPNode) and node.address == "127.0.0.9:1" and node.port == 1


def test_pysyncobj_unpickles_through_the_restricted_unpickler():
    codec.install()
    evil = pickle.dumps(_Evil(), 2)
    with pytest.raises(pickle.UnpicklingError):
        pysyncobj.pickle.loads(evil)
    with pytest.raises(pickle.UnpicklingError):
        pysyncobj.pickle.load(io.BytesIO(evil))
    with pytest.raises(pickle.UnpicklingError):
        pysyncobj.journal.loads(evil)  # the journal's meta file, imported by name there
    assert pysyncobj.pickle.loads(pysyncobj.pickle.dumps({"a": {1, 2}})) == {"a": {1, 2}}


def test_decode_message_bounds_and_shape():
    assert decode_message(PICKLE, codec.dumps({"type": "ping"})) == {"type": "ping"}
    assert decode_message(ZPICKLE, zlib.compress(codec.dumps({"type": "x", "d": b"0" * 10000}))) == \
        {"type": "x", "d": b"0" * 10000}
    bomb = zlib.compress(b"\0" * (MAX_MESSAGE + 1), 9)  # 64 KiB that inflates past the limit
    with pytest.raises(ValueError):
        decode_message(ZPICKLE, bomb)
    for bad in ([1, 2], {"no": "type"}, "x"):
        with pytest.raises(ValueError):
            decode_message(PICKLE, codec.dumps(bad))
    with pytest.raises(pickle.UnpicklingError):
        decode_message(PICKLE, pickle.dumps({"type": _Evil()}))


# ---- certificates and addresses --------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = create_root_ca(CLUSTER)
    (root / "ca.pem").write_bytes(ca_cert)

    def issue(node_id: str, role: str = "manager", cluster: str = CLUSTER, ca=(ca_cert, ca_key)) -> dict:
        key = generate_key()
        cert = sign_node_certificate(ca[0], ca[1], make_csr(key), node_id, role, cluster)
        d = root / f"{node_id}-{role}-{cluster}-{len(os.listdir(root))}"
        d.mkdir()
        (d / "node.pem").write_bytes(cert)
        (d / "node.key").write_bytes(key)
        return {"ca": str(root / "ca.pem"), "cert": str(d / "node.pem"), "key": str(d / "node.key"), "id": node_id}

    issue.ca = str(root / "ca.pem")
    issue.other_ca = create_root_ca(CLUSTER)  # same cluster id, a different CA
    return issue


_next_ip = iter(range(21, 250))


def free_addr() -> str:
    """A loopback address of its own (one per test node) with a free port on it."""
    ip = f"127.0.0.{next(_next_ip)}"
    with socket.socket() as s:
        s.bind((ip, 0))
        return f"{ip}:{s.getsockname()[1]}"


def wait(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# ---- real replicas in this process -----------------------------------------------------------
class Counter(SyncObjConsumer):
    def __init__(self):
        super().__init__()
        self.values = []

    @replicated
    def add(self, value):
        self.values.append(value)
        return len(self.values)


class Replica:
    def __init__(self, addr, members, creds, allowed, data_dir):
        self.addr, self.creds, self.allowed = addr, creds, allowed
        self.counter = Counter()
        server = tls.raft_server_context(creds["cert"], creds["key"], creds["ca"])
        client = tls.client_context(creds["ca"], creds["cert"], creds["key"])
        self.sent = []
        factory = functools.partial(TLSTransport, server_context=server, client_context=client,
                                    authorize=self.authorize, before_send=self.sent.append)
        os.makedirs(data_dir, exist_ok=True)
        conf = raft_conf(data_dir, bindAddress=addr)
        self.sync = SyncObj(addr, [m for m in members if m != addr], conf, consumers=[self.counter],
                            transportClass=factory)
        self.transport = self.sync._SyncObj__transport

    def authorize(self, identity, raft_addr):
        return (identity.cluster_id == CLUSTER and identity.role == "manager"
                and self.allowed.get(raft_addr) == identity.node_id)

    def destroy(self):
        self.sync.destroy()


@pytest.fixture
def replicas(pki, tmp_path):
    made = []

    def make(count=3):
        addrs = [free_addr() for _ in range(count)]
        creds = [pki(f"node{i}") for i in range(count)]
        allowed = {addr: c["id"] for addr, c in zip(addrs, creds)}
        for i, addr in enumerate(addrs):
            made.append(Replica(addr, addrs, creds[i], dict(allowed), str(tmp_path / f"r{i}")))
        return made

    yield make
    for r in made:
        r.destroy()
    for r in made:
        thread = r.sync._SyncObj__thread
        if thread is not None:
            thread.join(5)


def leader_of(group):
    for r in group:
        if r.sync._isLeader():
            return r
    return None


def replicate(group, value, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader = leader_of(group)
        if leader is not None:
            try:
                leader.counter.add(value, sync=True, timeout=2)
            except Exception:  # noqa: BLE001 - no leader yet or lost: try again
                time.sleep(0.05)
                continue
            wait(lambda: all(value in r.counter.values for r in group), what=f"{value} on every replica")
            return leader
        time.sleep(0.05)
    raise AssertionError("no leader committed the write")


def test_three_replicas_elect_and_replicate_over_tls(replicas):
    group = replicas(3)
    leader = replicate(group, "first")
    for i in range(50):
        leader.counter.add(i)
    wait(lambda: all(len(r.counter.values) == 51 for r in group), what="50 writes everywhere")
    assert all(r.counter.values == group[0].counter.values for r in group)
    for r in group:
        assert set(r.transport.connection_states().values()) == {"connected"}
        assert r.transport.refusals == 0
    # before_send saw every outgoing message as a dict, before it was serialised
    assert any(m["type"] == "append_entries" for m in leader.sent)
    # a follower killed and restarted on its journal catches up
    follower = next(r for r in group if r is not leader)
    follower.destroy()
    follower.sync._SyncObj__thread.join(5)
    leader = replicate([r for r in group if r is not follower], "without")
    index = group.index(follower)
    again = Replica(follower.addr, [r.addr for r in group], follower.creds, follower.allowed,
                    os.path.dirname(follower.sync.conf.journalFile))
    group[index] = again
    wait(lambda: "without" in again.counter.values, what="the restarted replica to catch up")
    again.destroy()
    again.sync._SyncObj__thread.join(5)


def test_leader_election_after_the_leader_stops(replicas):
    group = replicas(3)
    leader = replicate(group, "a")
    leader.destroy()
    leader.sync._SyncObj__thread.join(5)
    rest = [r for r in group if r is not leader]
    started = time.monotonic()
    replicate(rest, "b")
    assert time.monotonic() - started < 5


def _tls_client(addr, creds=None, ca=None, timeout=5.0):
    """A blocking TLS connection to a Raft port, presenting creds (or no certificate)."""
    if creds is not None:
        ctx = tls.client_context(creds["ca"], creds["cert"], creds["key"])
    else:
        ctx = tls.client_context(ca)
    host, port = addr.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=timeout)
    return ctx.wrap_socket(raw)


def _closed_by_peer(sock, timeout=5.0) -> bool:
    """Whether the server closes the connection without admitting us (no ACCEPT, no message)."""
    sock.settimeout(timeout)
    reader = FrameReader(MAX_MESSAGE)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
            reader.feed(data)
            while (item := reader.next()) is not None:
                if item[0] in (ACCEPT, PICKLE, ZPICKLE):
                    return False
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        return True
    except socket.timeout:
        return False


def _refused(addr, first: bytes, **client) -> bool:
    """Connect over TLS, send `first`, and tell whether the peer refused (failed handshake or closed)."""
    try:
        sock = _tls_client(addr, **client)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    with sock:
        try:
            sock.sendall(first)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return True
        return _closed_by_peer(sock)


def _hello(addr: str) -> bytes:
    return frame(HELLO, json.dumps({"addr": addr}).encode())


# a well-formed Raft message, sent right behind the HELLO: it must never be read
_APPEND = frame(PICKLE, codec.dumps({"type": "append_entries", "term": 99, "commit_index": 0, "prevLogIdx": 0,
                                     "prevLogTerm": 0, "entries": []}))


def test_refusals_leave_the_cluster_working(replicas, pki):
    group = replicas(3)
    replicate(group, "before")
    server = min(group, key=lambda r: r.addr)  # every other member dials it
    top = max(group, key=lambda r: r.addr)
    claim = top.addr
    node_id = server.allowed[claim]
    # no client certificate, or one of another CA (with the same cluster id): the handshake fails
    assert _refused(server.addr, _hello(claim), ca=pki.ca)
    other = pki(node_id, ca=pki.other_ca)
    assert _refused(server.addr, _hello(claim), creds=dict(other, ca=pki.ca))
    # valid certificates that are not a current manager at the claimed address
    cases = [
        (pki(node_id, role="worker"), claim),                  # a worker (demoted) certificate
        (pki("stranger"), claim),                              # a manager that nobody authorised
        (pki(node_id, cluster="othercluster"), claim),         # another cluster's certificate
        (pki(node_id), "127.0.0.254:1"),                       # the right node, an address that is no member
    ]
    for creds, addr in cases:
        assert _refused(server.addr, _hello(addr) + _APPEND, creds=creds), (creds["cert"], addr)
    # the member with the smaller address never dials: a connection claiming to be it is refused
    low_id = top.allowed[server.addr]
    assert _refused(top.addr, _hello(server.addr) + _APPEND, creds=pki(low_id))
    # before admission, a frame over MAX_HELLO (here: a 2 GiB length) closes the connection at once
    assert _refused(server.addr, struct.pack("!IB", 2**31, HELLO), creds=pki(node_id))
    assert _refused(server.addr, frame(PICKLE, b"x" * 10), creds=pki(node_id))  # no message before HELLO
    # not TLS at all: a 2 GiB length prefix and random bytes
    host, port = server.addr.rsplit(":", 1)
    for junk in (struct.pack("!I", 2**31 - 1) + b"\0" * 100, os.urandom(200000)):
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            try:
                raw.sendall(junk)
                raw.settimeout(5)
                while raw.recv(65536):
                    pass
            except (ConnectionResetError, BrokenPipeError):
                pass
    assert server.transport.refusals >= len(cases) + 5
    replicate(group, "after")
    assert set(server.transport.connection_states().values()) == {"connected"}
    assert all(len(r.sync.otherNodes) == 2 for r in group)
    assert all(r.counter.values == ["before", "after"] for r in group)


def test_unauthenticated_connections_are_capped_and_time_out(replicas):
    group = replicas(3)
    replicate(group, "before")
    target = group[0]
    host, port = target.addr.rsplit(":", 1)
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(transport.MAX_UNAUTHENTICATED * 2)]
    try:
        time.sleep(0.5)
        assert len(target.transport._pending) <= transport.MAX_UNAUTHENTICATED
        wait(lambda: len(target.transport._pending) == 0, timeout=target.sync.conf.connectionTimeout + 3,
             what="handshake deadline")
        replicate(group, "after")
    finally:
        for s in idle:
            s.close()


def test_a_peer_no_longer_authorised_is_cut_off_and_stays_out(replicas):
    group = replicas(3)
    replicate(group, "before")
    victim = group[2]
    for r in group[:2]:
        r.allowed.pop(victim.addr)  # as when its record is demoted or removed
    wait(lambda: all(victim.addr not in r.transport.connection_states() or
                     r.transport.connection_states()[victim.addr] != "connected" for r in group[:2]),
         timeout=5, what="the victim's connections to close")
    time.sleep(2 * group[0].sync.conf.connectionRetryTime + 0.5)  # it keeps trying to reconnect
    for r in group[:2]:
        assert not r.sync.isNodeConnected(TCPNode(victim.addr))
    leader = replicate(group[:2], "without the victim")
    assert leader is not victim
    assert "without the victim" not in victim.counter.values


def test_raft_store_authorises_current_managers_from_the_records(pki, tmp_path):
    addr = free_addr()
    creds = pki("self")
    store = RaftStore(addr, [addr], str(tmp_path / "raft"), cluster_id=CLUSTER,
                      server_context=tls.raft_server_context(creds["cert"], creds["key"], creds["ca"]),
                      client_context=tls.client_context(creds["ca"], creds["cert"], creds["key"]),
                      peers={"127.0.0.2:2378": "m2"})
    try:
        from swarmctl.security.certs import CertIdentity
        from datetime import datetime, timezone
        later = datetime(2100, 1, 1, tzinfo=timezone.utc)

        def ident(node_id, role="manager", cluster=CLUSTER):
            return CertIdentity(node_id, role, cluster, later)

        # no state yet: the peers map from /v1/raft/join decides
        assert store._authorize(ident("m2"), "127.0.0.2:2378")
        assert not store._authorize(ident("m2"), "127.0.0.3:2378")
        assert not store._authorize(ident("m3"), "127.0.0.2:2378")
        assert not store._authorize(ident("m2", role="worker"), "127.0.0.2:2378")
        assert not store._authorize(ident("m2", cluster="x"), "127.0.0.2:2378")

        async def fill():
            wait(store.is_leader, what="leader")
            m3 = new_node("m3", "manager", "h3", "127.0.0.3", manager_addr="127.0.0.3:2377", raft_addr="127.0.0.3:2378")
            w4 = new_node("w4", "worker", "h4", "127.0.0.4", manager_addr="127.0.0.4:2377", raft_addr="127.0.0.4:2378")
            await store.write([{"op": "create", "kind": "cluster", "id": CLUSTER, "record": {"id": CLUSTER, "spec": {}}},
                               {"op": "create", "kind": "node", "id": "m3", "record": m3},
                               {"op": "create", "kind": "node", "id": "w4", "record": w4}])
        asyncio.run(fill())
        # with state: only the records decide, the peers map no longer counts
        assert store._authorize(ident("m3"), "127.0.0.3:2378")
        assert not store._authorize(ident("m2"), "127.0.0.2:2378")
        assert not store._authorize(ident("m3"), "127.0.0.2:2378")
        assert not store._authorize(ident("w4"), "127.0.0.4:2378")   # a worker record (a demoted manager)
        assert not store._authorize(ident("gone"), "127.0.0.3:2378")  # no record (a removed node)
    finally:
        store.destroy()


def test_data_dirs_of_older_versions_load_and_their_raft_secret_is_dropped(tmp_path):
    from swarmctl.node.datadir import DataDir
    data = DataDir(str(tmp_path / "d"))
    os.makedirs(data.raft_dir)
    with open(os.path.join(data.raft_dir, "members.json"), "w") as f:
        json.dump({"secret": "old-fernet-secret", "members": ["127.0.0.1:2378", "127.0.0.2:2378"]}, f)
    assert data.load_raft() == {"members": ["127.0.0.1:2378", "127.0.0.2:2378"], "peers": {}}
    data.save_raft(["127.0.0.1:2378"], {"127.0.0.2:2378": "n2"})
    with open(os.path.join(data.raft_dir, "members.json")) as f:
        saved = json.load(f)
    assert saved == {"members": ["127.0.0.1:2378"], "peers": {"127.0.0.2:2378": "n2"}}
    assert data.load_raft()["peers"] == {"127.0.0.2:2378": "n2"}
    assert "password" not in vars(raft_conf(str(tmp_path))) or raft_conf(str(tmp_path)).password is None


def test_backtracks_drop_the_append_entries_a_conflict_made_stale(monkeypatch):
    """A follower that answered reset to X ignores the rest of the leader's pipelined burst (prevLogIdx >= X,
    same term) until the leader's retry from X - 1 arrives; pysyncobj would otherwise answer those with reset
    to its last index + 1 and undo the backtrack, so a follower with a conflicting tail never caught up."""
    from swarmctl.state import transport as tr
    b = tr.Backtracks()
    node = object()
    ae = lambda prev, term=6: {"type": "append_entries", "term": term, "prevLogIdx": prev, "entries": []}  # noqa: E731
    assert not b.stale(node, ae(310))                      # nothing answered yet: delivered
    b.sent(node, {"type": "next_node_idx", "next_node_idx": 310, "reset": True, "success": False})
    assert b.stale(node, ae(500)) and b.stale(node, ae(310))  # the rest of the burst: stale
    assert not b.stale(node, ae(309))                      # the retry from X - 1 passes, and ends the filter
    assert not b.stale(node, ae(700))
    b.sent(node, {"type": "next_node_idx", "next_node_idx": 309, "reset": True, "success": False})
    assert b.stale(node, ae(400))
    assert not b.stale(node, ae(400, term=7))              # a new leader's term ends it
    b.sent(node, {"type": "next_node_idx", "next_node_idx": 100, "reset": True, "success": False})
    assert not b.stale(node, {"type": "append_entries", "term": 7, "serialized": None})  # snapshots pass
    assert b.stale(node, ae(150, term=7))
    now = tr.time.monotonic()
    monkeypatch.setattr(tr.time, "monotonic", lambda: now + tr.Backtracks.WINDOW + 0.1)
    assert not b.stale(node, ae(150, term=7))              # and so does time
    b.sent(node, {"type": "next_node_idx", "next_node_idx": 12, "reset": False, "success": True})
    assert not b.stale(node, ae(50, term=7))


def _pysyncobj_chunks(entry_data: bytes, batch: int):
    """The append_entries chunks pysyncobj 0.3's leader sends for one large entry, labels included (it compares
    the position with the length of the entry's data, not of the pickled entry it cuts)."""
    import pickle
    entry = pickle.dumps((entry_data, 7, 1))
    for pos in range(0, len(entry), batch):
        label = "start" if pos == 0 else "finish" if pos + batch >= len(entry_data) else "process"
        yield {"type": "append_entries", "transmission": label, "data": entry[pos:pos + batch], "term": 1}


def test_the_transmission_guard_holds_back_a_finish_that_comes_too_early():
    import pickle
    from swarmctl.state.transport import TransmissionGuard
    batch, premature = 1024, 0
    for size in range(batch, 3 * batch + 200):
        data = b"x" * size
        guard, assembled, finished = TransmissionGuard(), b"", None
        for chunk in _pysyncobj_chunks(data, batch):
            seen = guard.check(chunk)
            premature += chunk["transmission"] == "finish" and seen["transmission"] == "process"
            assembled = chunk["data"] if seen["transmission"] == "start" else assembled + chunk["data"]
            if seen["transmission"] == "finish":
                finished = pickle.loads(assembled)
                break
        assert finished == (data, 7, 1), size
    assert premature > 0  # the sweep met the bug (sizes just below a chunk boundary)


def test_followers_catch_up_on_entries_of_every_size_around_a_chunk_boundary(tmp_path):
    """Real replicas with 1 KiB chunks: entries whose data ends just before a chunk boundary used to stop a follower
    for good ("pickle data was truncated")."""
    import asyncio
    from tests.raft_helpers import PKI as StorePKI, free_addr as store_addr, tls_store
    addrs = [store_addr() for _ in range(3)]
    pki = StorePKI(f"{tmp_path}-pki")

    async def run():
        stores = [tls_store(addrs[i], addrs, tmp_path / f"m{i}", pki, appendEntriesBatchSizeBytes=1024)
                  for i in range(3)]
        try:
            deadline = time.monotonic() + 15
            while not any(s.is_leader() for s in stores) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            leader = next(s for s in stores if s.is_leader())
            sizes = range(900, 2200, 3)
            for n, size in enumerate(sizes):
                await leader.write([{"op": "put", "kind": "task", "id": f"t{n}", "record": {"pad": "y" * size}}],
                                   timeout=10)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not all(len(s.list("task")) == len(sizes) for s in stores):
                await asyncio.sleep(0.1)
            assert [len(s.list("task")) for s in stores] == [len(sizes)] * 3
        finally:
            for s in stores:
                s.destroy()
            await asyncio.sleep(0.3)
    asyncio.run(run())

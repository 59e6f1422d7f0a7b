"""Raft snapshots (swarmctl/state/snapshot.py): format round trip, the serializer/checker protocol
pysyncobj drives, consistency while writes go on, damage, and real in-process replicas that restart from a
snapshot or catch up through a snapshot transfer."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from tests.raft_helpers import PKI, tls_store
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.monotonic import monotonic as pysyncobj_monotonic
from pysyncobj.node import TCPNode

from swarmctl.state.journal import StorageError, check_storage
from swarmctl.state.machine import StateMachine
from swarmctl.state.snapshot import SnapshotStore, load_snapshot, read_snapshot_meta, verify_snapshot

LAST, PREV = (b"\x00\x80last", 41, 3), (b"\x00prev", 40, 3)


def _machine(tasks=1200) -> StateMachine:
    m = StateMachine()
    m.apply_batch([("r-cluster", 1.5, [{"op": "create", "kind": "cluster", "id": "c1",
                                        "record": {"name": "ünïcode ✓", "spec": {"x": [1, 2.5, None, True]}}}])])
    batch = []
    for i in range(tasks):
        batch.append({"op": "create", "kind": "task", "id": f"t{i}",
                      "record": {"node_id": f"n{i % 7}", "service_id": "s", "slot": i, "status": {"state": "new"}}})
        if len(batch) == 200:
            m.apply_batch([(f"r{i}", 2.0 + i, batch)])
            batch = []
    m.apply_batch([("r-last", 3.0, batch)])
    return m


def _wait(store: SnapshotStore, timeout=10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = store.check()
        if state != SERIALIZER_STATE.SERIALIZING:
            return state
        time.sleep(0.005)
    raise AssertionError("snapshot did not finish")


def _take(tmp_path, machine) -> SnapshotStore:
    store = SnapshotStore(machine, str(tmp_path / "raft.snapshot"))
    cluster = {TCPNode("127.0.0.2:2378"), TCPNode("127.0.0.1:2378")}
    store.serialize(str(tmp_path / "raft.snapshot.tmp"), (LAST, PREV, cluster))
    assert _wait(store) == SERIALIZER_STATE.SUCCESS
    return store


def test_round_trip_restores_records_index_request_memory_and_returns_pysyncobj_data(tmp_path):
    m = _machine()
    _take(tmp_path, m)
    other = StateMachine()
    events = []
    other.watch(lambda index, ev: events.extend(ev))
    last, prev, cluster = SnapshotStore(other, str(tmp_path / "raft.snapshot")).deserialize(
        str(tmp_path / "raft.snapshot"))
    assert (last, prev) == (LAST, PREV)
    assert all(isinstance(n, TCPNode) for n in cluster)
    assert sorted(n.address for n in cluster) == ["127.0.0.1:2378", "127.0.0.2:2378"]
    assert other.data == m.data and other.index == m.index
    assert list(other.applied.items()) == list(m.applied.items())  # order kept: the oldest ids are evicted first
    assert other.find("task", "node_id", "n3") == m.find("task", "node_id", "n3")  # indexes rebuilt
    assert events == [("reset", None, None, None)]
    meta = read_snapshot_meta(str(tmp_path / "raft.snapshot"))
    assert meta["last"][1:] == [41, 3] and meta["records"] == 1201


def test_pysyncobj_tmp_file_is_never_left_for_its_rename(tmp_path):
    """pysyncobj renames fullDumpFile + '.tmp' over the snapshot right after the serializer returns: there
    must be nothing to rename, so no incomplete file can ever be put in place."""
    (tmp_path / "raft.snapshot.tmp").write_bytes(b"stale half-written snapshot")
    store = SnapshotStore(_machine(10), str(tmp_path / "raft.snapshot"))
    store.serialize(str(tmp_path / "raft.snapshot.tmp"), (LAST, PREV, set()))
    assert not (tmp_path / "raft.snapshot.tmp").exists()
    assert not (tmp_path / "raft.snapshot").exists()  # not in place before it is durable
    assert _wait(store) == SERIALIZER_STATE.SUCCESS
    assert store.check() == SERIALIZER_STATE.NOT_SERIALIZING  # SUCCESS is reported once
    verify_snapshot(str(tmp_path / "raft.snapshot"))
    assert not (tmp_path / "raft.snapshot.writing").exists()


def test_snapshot_is_the_state_at_serialize_while_writes_continue(tmp_path):
    m = _machine(20000)
    expected = {kind: dict(records) for kind, records in m.data.items()}
    index = m.index
    store = SnapshotStore(m, str(tmp_path / "raft.snapshot"))
    store.serialize(str(tmp_path / "raft.snapshot.tmp"), (LAST, PREV, set()))
    writes = 0
    while store.check() == SERIALIZER_STATE.SERIALIZING or writes == 0:  # the tick thread goes on applying
        m.apply_batch([(None, 9.0, [{"op": "patch", "kind": "task", "id": f"t{writes}", "set": {"slot": -1}},
                                    {"op": "create", "kind": "task", "id": f"new{writes}", "record": {}}])])
        writes += 1
    assert writes > 1
    snap, _ = load_snapshot(str(tmp_path / "raft.snapshot"))
    assert snap["data"] == expected and snap["index"] == index


def test_failed_write_is_reported_once(tmp_path):
    store = SnapshotStore(_machine(10), str(tmp_path / "missing-dir" / "raft.snapshot"))
    store.serialize(str(tmp_path / "x.tmp"), (LAST, PREV, set()))
    assert _wait(store) == SERIALIZER_STATE.FAILED
    assert store.check() == SERIALIZER_STATE.NOT_SERIALIZING


def test_loading_a_received_snapshot_cancels_the_local_one(tmp_path):
    """A follower that receives the leader's snapshot while it writes its own must not later rename its
    older one over the received file."""
    (tmp_path / "a").mkdir()
    received = _take(tmp_path / "a", _machine(100))
    m = _machine(30000)
    local = SnapshotStore(m, str(tmp_path / "raft.snapshot"))
    local.serialize(str(tmp_path / "raft.snapshot.tmp"), ((b"old", 5, 1), (b"old", 4, 1), set()))
    os.replace(received.path, tmp_path / "raft.snapshot")  # what pysyncobj's transfer does
    last, _, _ = local.deserialize(str(tmp_path / "raft.snapshot"))
    assert last == LAST
    assert _wait(local) == SERIALIZER_STATE.FAILED
    assert read_snapshot_meta(str(tmp_path / "raft.snapshot"))["last"][1] == 41
    assert len(m.data["task"]) == 100


@pytest.mark.parametrize("damage,what", [
    ("body", "CRC mismatch"),
    ("header", "header CRC mismatch"),
    ("truncate", "truncated"),
    ("magic", "not a swarmctl Raft snapshot"),
])
def test_damaged_snapshot_is_refused_naming_the_file(tmp_path, damage, what):
    _take(tmp_path, _machine(500))
    path = tmp_path / "raft.snapshot"
    data = bytearray(path.read_bytes())
    if damage == "body":
        data[len(data) // 2] ^= 0x40
    elif damage == "header":
        data[30] ^= 0x01
    elif damage == "truncate":
        del data[len(data) - 100:]
    else:
        data[0:8] = b"PICKLE!!"
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError) as err:
        check_storage(str(tmp_path))
    assert str(path) in str(err.value) and what in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(StorageError):
        SnapshotStore(StateMachine(), str(path)).deserialize(str(path))


# ---- real replicas in this process ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


def test_restart_from_snapshot_and_journal_tail(tmp_path):
    addr = f"127.0.0.1:{_free_port()}"

    async def run(n_writes):
        store = tls_store(addr, [addr], tmp_path, PKI(f"{tmp_path}-pki"), logCompactionMinEntries=12)
        try:
            await _until(store.is_leader)
            await _until(lambda: store.index >= expected_before)
            for i in range(n_writes):
                await store.write([{"op": "put", "kind": "task", "id": f"t{i}", "record": {"round": n_writes}}])
            return len(store.list("task")), store.snapshots.last, store.journal.stats
        finally:
            store.destroy()
            await asyncio.sleep(0.3)

    expected_before = 0
    count, last, stats = asyncio.run(run(40))
    assert count == 40 and last and stats["compactions"] >= 1
    assert os.path.exists(tmp_path / "raft.snapshot")
    expected_before = 40
    count, _, _ = asyncio.run(run(45))
    assert count == 45


def test_follower_behind_the_compacted_log_catches_up_by_snapshot_transfer(tmp_path):
    addrs = [f"127.0.0.1:{_free_port()}" for _ in range(3)]

    pki = PKI(f"{tmp_path}-pki")

    async def run():
        def start(i):
            return tls_store(addrs[i], addrs, tmp_path / f"m{i}", pki, logCompactionMinEntries=30)
        stores = [start(i) for i in range(3)]
        try:
            await _until(lambda: any(s.is_leader() for s in stores))
            leader = next(s for s in stores if s.is_leader())
            behind = next(i for i, s in enumerate(stores) if s is not leader)
            stores[behind].destroy()
            await asyncio.sleep(0.5)
            for i in range(200):
                await leader.write([{"op": "put", "kind": "task", "id": f"t{i}", "record": {"i": i}}])
            await _until(lambda: leader.journal.stats["compactions"] >= 1)
            await _until(lambda: leader.journal[0][1] > 10)  # the entries the follower lacks are gone
            stores[behind] = start(behind)
            loads = []
            real = stores[behind].snapshots.on_loaded
            conf = stores[behind]._sync.conf
            # a load as slow as 100k tasks make it (longer than the election timeout), then the hook
            stores[behind].snapshots.on_loaded = lambda: (time.sleep(conf.raftMaxTimeout + 0.1), real(), loads.append(
                stores[behind]._sync._SyncObj__raftElectionDeadline - pysyncobj_monotonic()))
            await _until(lambda: len(stores[behind].list("task")) == 200, timeout=20)
            assert stores[behind].machine.data == leader.machine.data
            # the follower's election timeout counts from the end of the load, not from before it
            assert loads and all(conf.raftMinTimeout - 0.05 <= left <= conf.raftMaxTimeout for left in loads), loads
        finally:
            for s in stores:
                s.destroy()
            await asyncio.sleep(0.3)
    asyncio.run(run())


def test_replica_starts_from_a_legacy_pysyncobj_dir_with_its_state(tmp_path):
    from tests.unit.test_journal import _legacy_dir
    old = _machine(50)
    addr = f"127.0.0.1:{_free_port()}"
    _legacy_dir(tmp_path, old, member=addr)

    async def run():
        store = tls_store(addr, [addr], tmp_path, PKI(f"{tmp_path}-pki"))
        try:
            await _until(lambda: len(store.list("task")) == 50)
            await _until(store.is_leader)
            await store.write([{"op": "put", "kind": "task", "id": "new", "record": {}}])
            assert store.machine.data["cluster"] == old.data["cluster"] and len(store.list("task")) == 51
        finally:
            store.destroy()
            await asyncio.sleep(0.3)
    asyncio.run(run())


def test_a_replica_restarted_with_a_large_cluster_has_the_long_election_timeouts_at_once(tmp_path):
    """A follower restarted at 1,000 nodes with the short timeouts called an election a few seconds after its
    start and unseated a busy leader: the timeouts follow the restored state from the first deadline on."""
    from swarmctl.state.raft import election_timeouts
    addr = f"127.0.0.1:{_free_port()}"
    pki = PKI(f"{tmp_path}-pki")

    async def run(nodes, restored_nodes=0):
        store = tls_store(addr, [addr], tmp_path, pki, logCompactionMinEntries=10)
        try:
            await _until(lambda: len(store.list("node")) == restored_nodes)
            await asyncio.sleep(0.2)  # within the once-a-second check of the tick thread
            restored = store.election_timeouts()
            await _until(store.is_leader)
            ops = [{"op": "put", "kind": "node", "id": f"n{i}", "record": {"id": f"n{i}"}} for i in range(nodes)]
            for i in range(0, len(ops), 100):
                await store.write(ops[i:i + 100])
            store.compact()  # the nodes go into the snapshot
            await store.write([{"op": "put", "kind": "task", "id": "t", "record": {}}])
            await _until(lambda: store.snapshots.last)
            await _until(lambda: store.election_timeouts() == election_timeouts(len(store.list("node"))))
            return restored
        finally:
            store.destroy()
            await asyncio.sleep(0.3)

    assert asyncio.run(run(250)) == election_timeouts(0)  # a new replica: the short ones
    assert asyncio.run(run(0, 250)) == election_timeouts(250)  # restarted from the snapshot of 250 nodes: long at once
    assert election_timeouts(250) != election_timeouts(0)

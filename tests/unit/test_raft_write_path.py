"""The leader's write path on a real one-member pysyncobj replica: every entry in flight ends (callback,
deadline or leadership loss), so a lost callback can never block later writes, and a leader that steps down
fails what it holds with NotLeader (retried on the next leader with the same request id)."""

import asyncio
import socket

import pytest

from tests.raft_helpers import one_member_store

from swarmctl.state import raft
from swarmctl.state.raft import NotLeader, RaftStore


def _free_addr() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


async def _leader(tmp_path) -> RaftStore:
    store = one_member_store(tmp_path / "store")
    for _ in range(200):
        if store.is_leader():
            return store
        await asyncio.sleep(0.05)
    store.destroy()
    pytest.fail("a one-member replica did not elect itself")


def _op(i):
    return [{"op": "put", "kind": "node", "id": f"n{i}", "record": {"spec": {}}}]


def test_a_lost_callback_frees_its_slot_by_the_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(raft, "INFLIGHT_DEADLINE", 0.5)

    async def run():
        store = await _leader(tmp_path)
        try:
            real_apply = store._consumer.apply
            calls = []

            def apply_and_lose_callback(writes, callback):
                calls.append(len(writes))
                if len(calls) == 1:
                    return real_apply(writes, callback=lambda *_: None)  # pysyncobj never calls back
                return real_apply(writes, callback=callback)
            monkeypatch.setattr(store._consumer, "apply", apply_and_lose_callback)
            with pytest.raises(raft.NoLeader):
                await store.write(_op(1), timeout=2.0)  # the deadline answers it: outcome unknown
            result = await store.write(_op(2), timeout=2.0)  # the slot is free again
            assert result["ok"] and store.get("node", "n2") is not None
            assert store._inflight == {}
        finally:
            store.destroy()
    asyncio.run(run())


def test_losing_leadership_fails_queued_and_inflight_writes_with_not_leader(tmp_path, monkeypatch):
    async def run():
        store = await _leader(tmp_path)
        try:
            monkeypatch.setattr(store._consumer, "apply", lambda writes, callback: None)  # stays in flight
            first = asyncio.ensure_future(store.write(_op(1), timeout=5.0))
            await asyncio.sleep(0.05)
            second = asyncio.ensure_future(store.write(_op(2), timeout=5.0))  # queued behind the first
            await asyncio.sleep(0.05)
            assert len(store._inflight) == 1 and len(store._pending) == 1
            store._on_state_changed(raft._LEADER, 0)  # pysyncobj: leader -> follower, from its thread
            for future in (first, second):
                with pytest.raises(NotLeader):
                    await asyncio.wait_for(future, 1.0)
            assert store._inflight == {} and store._pending == []
        finally:
            store.destroy()
    asyncio.run(run())


def test_barriers_are_not_remembered_as_requests(tmp_path):
    async def run():
        store = await _leader(tmp_path)
        try:
            before = len(store.machine.applied)
            for _ in range(20):
                await store.barrier()
            await store.write(_op(1), request_id="r1")
            assert len(store.machine.applied) == before + 1 and store.applied("r1")["ok"]
        finally:
            store.destroy()
    asyncio.run(run())


def test_writes_sent_together_fill_entries_up_to_the_cap(tmp_path, monkeypatch):
    """commit_chunks queues a pass's 200-op writes together; the store merges them into entries of at most
    MAX_ENTRY_OPS ops (never one entry of everything), and every write commits."""
    from swarmctl.manager.writes import commit_chunks

    async def run():
        store = await _leader(tmp_path)
        try:
            real_apply = store._consumer.apply
            entries = []

            def counting_apply(writes, callback):
                entries.append(sum(len(ops) for _rid, _ts, ops in writes))
                return real_apply(writes, callback=callback)
            monkeypatch.setattr(store._consumer, "apply", counting_apply)
            ops = [{"op": "put", "kind": "node", "id": f"n{i}", "record": {"spec": {}}} for i in range(10_000)]
            await commit_chunks(store, ops)
            assert sum(entries) == 10_000 and all(store.get("node", f"n{i}") for i in (0, 4999, 9999))
            assert max(entries) <= raft.MAX_ENTRY_OPS
            assert len(entries) <= 10_000 // raft.MAX_ENTRY_OPS + 10  # filled toward the cap, not one per write (50)
        finally:
            store.destroy()
    asyncio.run(run())

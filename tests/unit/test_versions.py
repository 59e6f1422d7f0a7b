"""Optimistic concurrency and idempotent retries on a real one-member Raft store (pysyncobj over loopback TCP):
stale versions are refused with "update out of sequence", concurrent updates of one version never both
succeed, `unique` holds within one write, and a retried request applies once and answers as the first did."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from tests.raft_helpers import one_member_store

from swarmctl.errors import BadRequest, Conflict, NotFound, OutOfSequence
from swarmctl.manager import nodes, services
from swarmctl.manager.idempotent import derived_id, run_once
from swarmctl.state.machine import OUT_OF_SEQUENCE, StateMachine
from swarmctl.state.records import new_node


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def store(tmp_path):
    addr = f"127.0.0.1:{_free_port()}"
    s = one_member_store(tmp_path / "store", addr)
    deadline = time.monotonic() + 10
    while not s.is_leader():
        assert time.monotonic() < deadline, "the one-member store did not become leader"
        time.sleep(0.02)
    try:
        yield s
    finally:
        s.destroy()


def run(coro):
    return asyncio.run(coro)


def spec(name="web", **task):
    return {"name": name, "mode": "replicated", "replicas": 1, "labels": {}, "task": dict({"image": "busybox"}, **task)}


# ---- the state machine ---------------------------------------------------------------------------
def write(machine, ops, request_id=None):
    return machine.apply_batch([(request_id, 1.0, ops)])[0]


def test_unique_is_checked_against_earlier_ops_of_the_same_write():
    m = StateMachine()
    result = write(m, [{"op": "create", "kind": "service", "id": "a", "record": {"spec": {"name": "web"}}, "unique": "spec.name"},
                       {"op": "create", "kind": "service", "id": "b", "record": {"spec": {"name": "web"}}, "unique": "spec.name"}])
    assert not result["ok"] and "already exists" in result["error"] and m.list("service") == []
    # a record the same write renames or deletes frees its value
    assert write(m, [{"op": "create", "kind": "service", "id": "a", "record": {"spec": {"name": "web"}}}])["ok"]
    assert write(m, [{"op": "delete", "kind": "service", "id": "a"},
                     {"op": "create", "kind": "service", "id": "b", "record": {"spec": {"name": "web"}}, "unique": "spec.name"}])["ok"]
    assert write(m, [{"op": "put", "kind": "service", "id": "b", "record": {"spec": {"name": "api"}}},
                     {"op": "create", "kind": "service", "id": "c", "record": {"spec": {"name": "web"}}, "unique": "spec.name"}])["ok"]
    # a patch with `unique` is checked too
    assert not write(m, [{"op": "patch", "kind": "service", "id": "b", "set": [(["spec", "name"], "web")],
                          "unique": "spec.name"}])["ok"]


def test_stale_if_version_is_out_of_sequence_and_the_reply_is_kept():
    m = StateMachine()
    write(m, [{"op": "create", "kind": "node", "id": "n", "record": {"x": 1}}])
    result = write(m, [{"op": "patch", "kind": "node", "id": "n", "set": {"x": 2}, "if_version": 0}])
    assert result == {"ok": False, "error": OUT_OF_SEQUENCE, "index": 1, "code": "out_of_sequence"}
    result = write(m, [{"op": "patch", "kind": "node", "id": "n", "set": {"x": 2}, "if_version": 1},
                       {"op": "reply", "value": {"answer": 42}}], request_id="r")
    assert result == {"ok": True, "index": 2, "reply": {"answer": 42}} and m.applied["r"] == result


def test_derived_ids_are_stable_and_look_like_record_ids():
    a = derived_id("req-1", "service")
    assert a == derived_id("req-1", "service") != derived_id("req-2", "service") != derived_id("req-1", "node")
    assert len(a) == 25 and set(a) <= set("0123456789abcdefghijklmnopqrstuvwxyz")


# ---- services ------------------------------------------------------------------------------------
def test_stale_version_is_refused_and_concurrent_updates_of_one_version_never_both_succeed(store):
    async def scenario():
        created = await services.create(store, spec(), request_id="c1")
        version = created["version"]
        with pytest.raises(OutOfSequence) as info:
            await services.update(store, "web", {"task": {"env": {"A": "1"}}}, request_id="u0", version=version - 1)
        assert info.value.status == 409 and info.value.message == "update out of sequence"
        results = await asyncio.gather(
            services.update(store, "web", {"task": {"env": {"A": "1"}}}, request_id="u1", version=version),
            services.update(store, "web", {"task": {"env": {"B": "2"}}}, request_id="u2", version=version),
            return_exceptions=True)
        ok = [r for r in results if not isinstance(r, Exception)]
        refused = [r for r in results if isinstance(r, OutOfSequence)]
        assert len(ok) == 1 and len(refused) == 1, results
        service = store.get("service", created["id"])
        assert service["spec_version"] == 2 and service["spec"]["task"]["env"] in ({"A": "1"}, {"B": "2"})
        # without a version, both apply: the server's read-modify-write re-plans on the fresh record
        await asyncio.gather(
            services.update(store, "web", {"task": {"env": dict(service["spec"]["task"]["env"], C="3")}}, request_id="u3"),
            services.update(store, "web", {"replicas": 4}, request_id="u4"))
        service = store.get("service", created["id"])
        assert service["spec"]["replicas"] == 4 and service["spec"]["task"]["env"].get("C") == "3"
    run(scenario())


def test_retried_requests_apply_once_and_answer_as_the_first(store):
    async def scenario():
        first = await services.create(store, spec(), request_id="create-1")
        again = await services.create(store, spec(), request_id="create-1")
        assert again["id"] == first["id"] == derived_id("create-1", "service")
        assert len(store.list("service")) == 1
        with pytest.raises(Conflict, match="service web already exists"):
            await services.create(store, spec(), request_id="create-2")
        updated = await services.update(store, "web", {"task": {"env": {"K": "v"}}}, request_id="up-1",
                                        version=first["version"])
        index = store.index
        retried = await services.update(store, "web", {"task": {"env": {"K": "v"}}}, request_id="up-1",
                                        version=first["version"])  # its version is stale now: still the first answer
        assert retried["changes"] == updated["changes"] == ["task.env"] and store.index == index
        await services.remove(store, "web", request_id="rm-1")
        await services.remove(store, "web", request_id="rm-1")  # succeeds rather than 404
        with pytest.raises(NotFound):
            await services.remove(store, "web", request_id="rm-2")
        assert store.list("service") == []
    run(scenario())


def test_a_retry_whose_first_attempt_is_committed_but_not_yet_applied_applies_once(store):
    """The first attempt's write is in the log ahead of the retry's (as on a new leader that has not applied
    it yet): the retry plans on the old state, commits under the same key and gets the first one's answer."""
    async def scenario():
        created = await services.create(store, spec(), request_id="c")
        first = services.update(store, "web", {"replicas": 3}, request_id="same", version=created["version"])
        retry = services.update(store, "web", {"replicas": 3}, request_id="same", version=created["version"])
        a, b = await asyncio.gather(first, retry)
        assert a["changes"] == b["changes"] == ["replicas"]
        assert store.get("service", created["id"])["version"] == created["version"] + 1
    run(scenario())


def test_run_once_trusts_absence_only_after_a_barrier(store):
    async def scenario():
        barriers = []
        original = store.barrier

        async def counted(*args, **kwargs):
            barriers.append(1)
            return await original(*args, **kwargs)
        store.barrier = counted

        def plan():
            raise NotFound("nothing here")
        with pytest.raises(NotFound):
            await run_once(store, "test", "r1", plan, lambda reply: reply)
        assert barriers == [1]

        def bad():
            raise BadRequest("never caused by a retry")
        with pytest.raises(BadRequest):
            await run_once(store, "test", "r2", bad, lambda reply: reply)
        assert barriers == [1]
        assert await run_once(store, "test", "r3", lambda: ([], {"n": 1}), lambda reply: reply) == {"n": 1}
        assert await run_once(store, "test", "r3", plan, lambda reply: reply) == {"n": 1}  # from memory
    run(scenario())


# ---- nodes and bounds ----------------------------------------------------------------------------
def test_node_update_versions(store):
    async def scenario():
        record = new_node("n1", "worker", "host1", "127.0.0.1", manager_addr="127.0.0.1:2377", raft_addr="127.0.0.1:2378")
        await store.write([{"op": "create", "kind": "node", "id": "n1", "record": record}])
        version = store.get("node", "n1")["version"]
        view = await nodes.update_node(store, "host1", "drain", {"a": "1"}, [], version=version, request_id="n-1")
        assert view["spec"]["availability"] == "drain" and view["version"] > version
        with pytest.raises(OutOfSequence):
            await nodes.update_node(store, "host1", None, {"b": "1"}, [], version=version, request_id="n-2")
        again = await nodes.update_node(store, "host1", "drain", {"a": "1"}, [], version=version, request_id="n-1")
        assert again["version"] == view["version"]
        await nodes.update_node(store, "host1", None, {}, ["a"], request_id="n-3")
        assert store.get("node", "n1")["spec"]["labels"] == {}
    run(scenario())


def test_service_bounds():
    with pytest.raises(BadRequest, match="at most 100000 replicas"):
        services.build_spec(dict(spec(), replicas=100_000_001))
    for name in ("a.b", "-web", "web-", "we b", "ö"):
        with pytest.raises(BadRequest, match="name must be valid as a DNS name component"):
            services.build_spec(spec(name))
    with pytest.raises(BadRequest, match="63 characters or fewer"):
        services.build_spec(spec("a" * 64))
    assert services.build_spec(spec("a_b-9"))["name"] == "a_b-9"
    with pytest.raises(BadRequest, match="task spec is .* bytes"):
        services.build_spec(spec(env={f"K{i}": "x" * 1000 for i in range(100)}))


def _published(port, target=80):
    return {"ports": [{"protocol": "tcp", "target_port": target, "published_port": port, "publish_mode": "ingress"}]}


def test_concurrent_creates_and_updates_never_both_take_one_published_port(store):
    """Both plans run before either write commits (the store's claims check decides, not the plan's read):
    one request wins, the other is planned again and refused with Docker's text."""
    async def main():
        results = await asyncio.gather(
            services.create(store, dict(spec("a"), endpoint=_published(8080)), request_id="a"),
            services.create(store, dict(spec("b"), endpoint=_published(8080)), request_id="b"),
            return_exceptions=True)
        c = await services.create(store, dict(spec("c"), endpoint=_published(9090)), request_id="c")
        d = await services.create(store, spec("d"), request_id="d")
        updates = await asyncio.gather(
            services.update(store, "c", {"endpoint": _published(7070)}),
            services.update(store, "d", {"endpoint": _published(7070)}), return_exceptions=True)
        return results, c, updates
    results, c, updates = run(main())
    for outcome in (results, updates):
        errors = [r for r in outcome if isinstance(r, Exception)]
        assert len(errors) == 1, outcome
        assert isinstance(errors[0], BadRequest) and "is already in use by service" in str(errors[0])
    holders = [s["spec"]["name"] for s in store.list("service")
               if any(p["published_port"] == 8080 for p in s["spec"]["endpoint"]["ports"])]
    assert len(holders) == 1
    assert "claims" not in c  # the store's bookkeeping is not shown
    assert sorted(s["claims"] for s in store.list("service") if s["spec"]["name"] in ("a", "b")) == [["tcp/8080"]]

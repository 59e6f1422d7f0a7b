"""Scheduler filters and strategies, and orchestrator decisions, on plain records (no Raft, no Docker)."""

import collections

import pytest

from swarmctl.manager import orchestrator
from swarmctl.manager.scheduler import constraints, scheduler
from swarmctl.state.machine import StateMachine
from swarmctl.state.records import default_task_spec, new_node, new_task


def node(name, cpus=4.0, memory=4e9, role="worker", availability="active", state="ready", labels=None):
    n = new_node(f"id-{name}", role, name, "127.0.0.1", resources={"cpus": cpus, "memory": memory},
                 engine_labels={"disk": "ssd"} if name == "n1" else {})
    n["spec"]["availability"] = availability
    n["spec"]["labels"] = labels or {}
    n["status"]["state"] = state
    return n


def service(name="web", replicas=3, mode="replicated", **task):
    spec = default_task_spec()
    spec["image"] = "img"
    for key, value in task.items():
        if key in ("constraints", "max_replicas_per_node", "strategy"):
            spec["placement"][key] = value
        elif key == "reserve_memory":
            spec["resources"]["reservations"]["memory"] = value
        elif key == "restart":
            spec["restart_policy"].update(value)
    return {"id": f"svc-{name}", "spec": {"name": name, "mode": mode, "replicas": replicas, "labels": {},
                                          "task": spec}, "spec_version": 1}


def run(services, nodes, rounds=3, now=1000.0):
    """Orchestrate and schedule a few rounds through a real StateMachine."""
    m = StateMachine()
    m.apply_batch([(None, now, [{"op": "put", "kind": "node", "id": n["id"], "record": n} for n in nodes] +
                    [{"op": "put", "kind": "service", "id": s["id"], "record": s} for s in services])])
    for _ in range(rounds):
        ops = orchestrator.plan(m.list("service"), m.list("task"), m.list("node"), now=now)
        if ops:
            m.apply_batch([(None, now, ops)])
        ops = scheduler.plan(m.list("task"), m.list("node"), now=now)
        if ops:
            m.apply_batch([(None, now, ops)])
    return m


def placement(m):
    return collections.Counter(t["node_id"] for t in m.list("task") if t["desired_state"] == "running"
                               and t["status"]["state"] == "assigned")


def test_spread_puts_replicas_evenly():
    m = run([service(replicas=6)], [node("n1"), node("n2"), node("n3")])
    assert sorted(placement(m).values()) == [2, 2, 2]


def test_binpack_fills_one_node_first():
    m = run([service(replicas=4, strategy="binpack", reserve_memory=1e9)], [node("n1"), node("n2"), node("n3")])
    assert sorted(placement(m).values()) == [4]
    m = run([service(replicas=5, strategy="binpack", reserve_memory=1e9)], [node("n1"), node("n2"), node("n3")])
    assert sorted(placement(m).values()) == [1, 4]


def test_unschedulable_task_explains_why():
    nodes = [node("n1", memory=1e9), node("n2", availability="drain"), node("n3", memory=1e9, labels={"zone": "us"})]
    m = run([service(replicas=1, constraints=["node.labels.zone==eu"])], nodes)
    (task,) = m.list("task")
    assert task["status"]["state"] == "pending"
    assert task["status"]["message"] == "no suitable node (1 node not available for new tasks; " \
                                        "constraint not satisfied on 2 nodes)"
    m = run([service(replicas=1, reserve_memory=2e9)], nodes)
    assert m.list("task")[0]["status"]["message"] == \
        "no suitable node (1 node not available for new tasks; insufficient memory on 2 nodes)"


def test_max_replicas_per_node():
    m = run([service(replicas=4, max_replicas_per_node=1)], [node("n1"), node("n2"), node("n3")])
    assert sorted(placement(m).values()) == [1, 1, 1]
    pending = [t for t in m.list("task") if t["status"]["state"] == "pending"]
    assert "max replicas per node limit exceeded on 3 nodes" in pending[0]["status"]["message"]


def test_constraint_syntax():
    assert constraints.parse("node.labels.zone == eu").matches(node("n", labels={"zone": "eu"}))
    assert constraints.parse("engine.labels.disk!=ssd").matches(node("n2"))
    assert constraints.parse("node.role==worker").matches(node("n3"))
    for bad in ("zone==eu", "node.labels.zone=eu", "node.hostname==", "node.labels.==x"):
        with pytest.raises(constraints.ConstraintError):
            constraints.parse(bad)


def test_scale_down_takes_from_busiest_node():
    svc = service(replicas=4)
    m = run([svc], [node("n1"), node("n2"), node("n3")])
    # pretend n1 ran two of them
    counts = placement(m)
    busiest = max(counts, key=counts.get)
    svc = dict(svc, spec=dict(svc["spec"], replicas=3))
    m.apply_batch([(None, 1000.0, [{"op": "put", "kind": "service", "id": svc["id"], "record": svc}])])
    ops = orchestrator.plan(m.list("service"), m.list("task"), m.list("node"), now=1000.0)
    shut = [op for op in ops if op["op"] == "patch"]
    assert len(shut) == 1
    assert m.get("task", shut[0]["id"])["node_id"] == busiest


def test_down_node_tasks_are_replaced_and_restart_policy():
    m = run([service(replicas=2)], [node("n1"), node("n2")])
    victim = m.list("task")[0]
    m.apply_batch([(None, 1000.0, [{"op": "patch", "kind": "node", "id": victim["node_id"],
                                    "set": {"status.state": "down"}}])])
    ops = orchestrator.plan(m.list("service"), m.list("task"), m.list("node"), now=1000.0)
    assert {op["op"] for op in ops} == {"patch", "create"}
    created = [op["record"] for op in ops if op["op"] == "create"]
    assert created[0]["slot"] == victim["slot"]
    # restart policy: none leaves an ended task alone; on-failure restarts failures after the delay
    for condition, state, expect_restart in (("none", "failed", False), ("on-failure", "complete", False),
                                             ("on-failure", "failed", True), ("any", "complete", True)):
        svc = service(name="r", replicas=1, restart={"condition": condition, "delay": 5})
        task = new_task(svc, 1, "id-n1", 1000.0)
        task["status"]["state"] = state
        task["created_at"] = 1000.0
        early = orchestrator.plan([svc], [task], [node("n1")], now=1001.0)
        late = orchestrator.plan([svc], [task], [node("n1")], now=1006.0)
        assert not any(op["op"] == "create" for op in early)
        assert any(op["op"] == "create" for op in late) == expect_restart, (condition, state)


def test_global_service_one_task_per_eligible_node():
    m = run([service(name="g", mode="global", replicas=None)],
            [node("n1"), node("n2", availability="drain"), node("n3", state="down")])
    assert [t["node_id"] for t in m.list("task")] == ["id-n1"]

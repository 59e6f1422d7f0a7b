"""The orchestrator package on plain records: the task reaper and the history limit, restart counting that
does not depend on the kept history, and event-driven passes that replan only what changed."""

from __future__ import annotations

import asyncio
import collections

import pytest

from swarmctl.manager import orchestrator
from swarmctl.manager.component import Reconciler
from swarmctl.manager.orchestrator import Orchestrator, history_limit, plan, plan_pass, restart
from swarmctl.state.machine import StateMachine
from swarmctl.state.records import default_task_spec, new_cluster, new_node, new_task

NOW = 1000.0


def node(name, state="ready", availability="active", labels=None):
    n = new_node(f"id-{name}", "worker", name, "127.0.0.1", resources={"cpus": 4.0, "memory": 4e9})
    n["status"]["state"] = state
    n["spec"]["availability"] = availability
    n["spec"]["labels"] = labels or {}
    return n


def service(name="web", replicas=1, mode="replicated", version=1, **restart_policy):
    spec = default_task_spec()
    spec["image"] = "img"
    spec["restart_policy"].update({"delay": 0.0}, **restart_policy)
    return {"id": f"svc-{name}", "spec": {"name": name, "mode": mode, "replicas": replicas, "labels": {},
                                          "task": spec}, "spec_version": version}


def task(svc, slot=1, node_id="id-n1", state="running", desired="running", created=NOW, version=None, **extra):
    t = new_task(svc, slot, node_id, created)
    t.update(created_at=created, desired_state=desired, version=1, **extra)
    t["status"] = dict(t["status"], state=state, timestamp=created)
    if version is not None:
        t["spec_version"] = version
    return t


def deleted(ops):
    return {op["id"] for op in ops if op["op"] == "delete"}


def created(ops):
    return [op["record"] for op in ops if op["op"] == "create"]


# ---- reaper and history limit -------------------------------------------------------------------------
def history(svc, n, slot=1, node_id="id-n1"):
    """n ended tasks of a slot, oldest first, and the slot's running task after them."""
    old = [task(svc, slot, node_id, state="failed", desired="shutdown", created=NOW - 100 + i) for i in range(n)]
    return old, task(svc, slot, node_id, created=NOW - 1)


@pytest.mark.parametrize("limit", [0, 1, 2, 5, 7])
def test_history_limit_per_slot(limit):
    svc = service(replicas=2)
    old1, live1 = history(svc, 8, slot=1)
    old2, live2 = history(svc, 3, slot=2)
    ops = plan([svc], old1 + [live1] + old2 + [live2], [node("n1")], now=NOW, task_history_limit=limit)
    expect = {t["id"] for t in old1[:max(0, 8 - limit)]} | {t["id"] for t in old2[:max(0, 3 - limit)]}
    assert deleted(ops) == expect
    assert live1["id"] not in deleted(ops) and live2["id"] not in deleted(ops)
    assert all(op["op"] == "delete" for op in ops)  # nothing else to do


def test_default_history_limit_is_five():
    svc = service()
    old, live = history(svc, 9)
    assert deleted(plan([svc], old + [live], [node("n1")], now=NOW)) == {t["id"] for t in old[:4]}
    assert history_limit(None) == 5 and history_limit({"spec": {}}) == 5
    assert history_limit({"spec": {"task_history_limit": 0}}) == 0
    cluster = new_cluster("c", ca_cert="", ca_key="", ca_digest="", worker_secret="", manager_secret="",
                          raft_secret=None, heartbeat_period=5.0)
    assert cluster["spec"]["task_history_limit"] == 5 and history_limit(cluster) == 5


def test_ended_current_task_of_a_finished_slot_is_not_history():
    svc = service(condition="none")
    old, _live = history(svc, 3)
    done = task(svc, state="complete", created=NOW - 1)  # the slot is done: desired running, not restarted
    ops = plan([svc], old + [done], [node("n1")], now=NOW, task_history_limit=0)
    assert deleted(ops) == {t["id"] for t in old}


def test_history_limit_per_node_for_global_services():
    svc = service(mode="global")
    old, live = history(svc, 6, slot=None)
    ops = plan([svc], old + [live], [node("n1")], now=NOW, task_history_limit=2)
    assert deleted(ops) == {t["id"] for t in old[:4]}


def test_history_still_shutting_down_is_kept():
    svc = service()
    stopping = [task(svc, state="running", desired="shutdown", created=NOW - 50 + i) for i in range(4)]
    _old, live = history(svc, 0)
    assert deleted(plan([svc], stopping + [live], [node("n1")], now=NOW, task_history_limit=0)) == set()


def test_removed_service_tasks_stop_then_go():
    svc = service(replicas=3)
    running = task(svc, slot=1)
    ended = task(svc, slot=2, state="complete", desired="shutdown")
    stopping = task(svc, slot=3, state="running", desired="shutdown")
    down_node = task(svc, slot=4, node_id="id-n2", state="running", desired="shutdown")
    ops = plan([], [running, ended, stopping, down_node], [node("n1"), node("n2", state="down")], now=NOW)
    assert deleted(ops) == {ended["id"], down_node["id"]}
    shut = [op for op in ops if op["op"] == "patch"]
    assert [op["id"] for op in shut] == [running["id"]]
    assert (["status", "message"], "service removed") in shut[0]["set"]


def test_tasks_of_removed_nodes_are_reaped():
    svc = service(replicas=1)
    gone = [task(svc, node_id="id-gone", state="running", desired="shutdown", created=NOW - 10 + i) for i in range(2)]
    live = task(svc, node_id="id-n1", created=NOW - 1)
    ops = plan([svc], gone + [live], [node("n1")], now=NOW, task_history_limit=5)
    assert deleted(ops) == {t["id"] for t in gone}  # within the limit, but their node is gone


def test_live_task_of_removed_node_is_replaced_then_reaped():
    svc = service(replicas=1)
    lost = task(svc, node_id="id-gone")
    m = machine([svc], [node("n1")], [lost])
    step(m)
    assert m.get("task", lost["id"])["desired_state"] == "shutdown"
    assert sum(1 for t in m.list("task") if t["desired_state"] == "running") == 1
    step(m)
    assert m.get("task", lost["id"]) is None


def test_reaper_works_in_bounded_batches():
    svc = service()
    old, live = history(svc, 30)
    p = plan_pass([svc], old + [live], [node("n1")], now=NOW, task_history_limit=0, reap_budget=10)
    assert len(deleted(p.ops)) == 10 and p.waiting == {svc["id"]}
    orphans = [task(svc, state="complete", desired="shutdown", created=NOW - 50 + i) for i in range(30)]
    p = plan_pass([], orphans, [node("n1")], now=NOW, reap_budget=7)
    assert len(deleted(p.ops)) == 7 and p.waiting == {svc["id"]}


# ---- restart counting -------------------------------------------------------------------------------
def machine(services, nodes, tasks=(), cluster_limit=None):
    m = StateMachine()
    ops = [{"op": "put", "kind": "node", "id": n["id"], "record": n} for n in nodes]
    ops += [{"op": "put", "kind": "service", "id": s["id"], "record": s} for s in services]
    ops += [{"op": "load", "kind": "task", "id": t["id"], "record": t} for t in tasks]
    m.apply_batch([(None, NOW, ops)])
    return m


def step(m, now=NOW, limit=5):
    ops = plan(m.list("service"), m.list("task"), m.list("node"), now=now, task_history_limit=limit)
    if ops:
        m.apply_batch([(None, now, ops)])
    return ops


def place_and_fail(m, now):
    """The scheduler and agent of a node whose every container fails: each live task runs and exits 1."""
    ops = [{"op": "patch", "kind": "task", "id": t["id"],
            "set": [(["node_id"], "id-n1"), (["status", "state"], "failed"), (["status", "timestamp"], now)]}
           for t in m.list("task") if t["desired_state"] == "running" and t["status"]["state"] == "pending"]
    if ops:
        m.apply_batch([(None, now, ops)])
    return len(ops)


def failures(m, svc, rounds, start=NOW, limit=5, every=1.0):
    """Run `rounds` of fail-and-replan; return how many tasks were ever started."""
    started = 0
    now = start
    for _ in range(rounds):
        step(m, now, limit)
        started += place_and_fail(m, now)
        now += every
    step(m, now, limit)
    return started


@pytest.mark.parametrize("max_attempts,limit", [(10, 5), (6, 5), (3, 5), (10, 0), (10, 2), (1, 5)])
def test_max_attempts_counts_restarts_not_history(max_attempts, limit):
    svc = service(max_attempts=max_attempts)
    m = machine([svc], [node("n1")])
    started = failures(m, svc, rounds=3 * max_attempts + 10, limit=limit)
    assert started == 1 + max_attempts  # the first task and max_attempts restarts, then the slot is done
    tasks = m.list("task")
    assert len(tasks) <= limit + 1  # history stayed bounded meanwhile
    last = max(tasks, key=lambda t: t["created_at"])
    assert last["attempt"] == max_attempts and last["desired_state"] == "running"
    assert last["status"]["state"] == "failed"


def test_unlimited_attempts_keep_restarting_with_bounded_history():
    svc = service(max_attempts=0)
    m = machine([svc], [node("n1")])
    assert failures(m, svc, rounds=30) == 30
    # the history, the slot's current task and, just after a restart, the one it replaced
    assert len(m.list("task")) <= 5 + 2


def test_attempts_window_starts_the_count_again():
    svc = service(max_attempts=2, window=60.0)
    m = machine([svc], [node("n1")])
    assert failures(m, svc, rounds=10, every=1.0) == 3  # 2 restarts, then the slot is done ...
    assert failures(m, svc, rounds=10, start=NOW + 30) == 0  # ... while the window lasts
    # once it has passed, the slot is restarted again and counted afresh
    assert failures(m, svc, rounds=10, start=NOW + 100) == 2
    current = max(m.list("task"), key=lambda t: t["created_at"])
    assert current["attempt"] == 2 and current["attempt_window_start"] == NOW + 100


def test_window_passed_allows_restart():
    svc = service(max_attempts=2, window=60.0)
    ended = task(svc, state="failed", attempt=2, attempt_window_start=NOW - 30)
    assert restart.decide(svc, ended, NOW) == (False, False)
    assert restart.decide(svc, ended, NOW + 31) == (True, True)
    again = restart.restarted(svc, ended, 1, None, NOW + 31)
    assert again["attempt"] == 1 and again["attempt_window_start"] == NOW + 31


def test_spec_update_starts_the_count_again():
    svc = service(max_attempts=1)
    ended = task(svc, state="failed", attempt=1, attempt_window_start=NOW - 5)
    assert restart.decide(svc, ended, NOW) == (False, False)
    newer = dict(svc, spec_version=2)
    assert restart.decide(newer, ended, NOW) == (True, True)
    ops = plan([newer], [ended], [node("n1")], now=NOW)
    fresh = created(ops)
    assert len(fresh) == 1 and fresh[0]["attempt"] == 1 and fresh[0]["spec_version"] == 2


def test_old_tasks_without_a_counter_count_from_zero():
    svc = service(max_attempts=1)
    ended = task(svc, state="failed")  # written before attempts were counted
    assert restart.decide(svc, ended, NOW) == (True, True)


def test_restart_delay_and_conditions():
    svc = service(max_attempts=0, delay=5.0)
    ended = task(svc, state="failed", created=NOW)
    assert restart.decide(svc, ended, NOW + 1) == (True, False)
    assert restart.decide(svc, ended, NOW + 5) == (True, True)
    p = plan_pass([svc], [ended], [node("n1")], now=NOW + 1)
    assert p.ops == [] and p.waiting == {svc["id"]}
    on_failure = service(condition="on-failure")
    assert restart.decide(on_failure, task(on_failure, state="complete"), NOW) == (False, False)
    assert restart.decide(on_failure, task(on_failure, state="failed"), NOW) == (True, True)


def test_moving_off_a_lost_node_keeps_the_count():
    svc = service(max_attempts=5)
    live = task(svc, node_id="id-n2", attempt=3, attempt_window_start=NOW - 10)
    ops = plan([svc], [live], [node("n1"), node("n2", state="down")], now=NOW)
    (fresh,) = created(ops)
    assert fresh["attempt"] == 3 and fresh["attempt_window_start"] == NOW - 10


def test_global_restarts_count_per_node():
    svc = service(mode="global", max_attempts=4)
    m = machine([svc], [node("n1")])
    started = 0
    now = NOW
    for _ in range(20):
        step(m, now)
        ops = [{"op": "patch", "kind": "task", "id": t["id"],
                "set": [(["status", "state"], "failed"), (["status", "timestamp"], now)]}
               for t in m.list("task") if t["desired_state"] == "running" and t["status"]["state"] == "pending"]
        if ops:
            m.apply_batch([(None, now, ops)])
        started += len(ops)
        now += 1
    assert started == 5 and len(m.list("task")) <= 6


# ---- event-driven passes ---------------------------------------------------------------------------
class LocalStore:
    """The store interface the reconcilers use (read, watch, write), over a StateMachine without Raft: a
    test stand-in for RaftStore."""

    def __init__(self, m: StateMachine):
        self.machine = m
        self.writes = 0

    def get(self, kind, record_id):
        return self.machine.get(kind, record_id)

    def list(self, kind):
        return self.machine.list(kind)

    def find(self, kind, path, value):
        return self.machine.find(kind, path, value)

    def watch(self, callback):
        return self.machine.watch(callback)

    async def write(self, ops, request_id=None, timeout=3.0):
        self.writes += 1
        return self.machine.apply_batch([(request_id, NOW, ops)])[0]

    def apply(self, ops):
        return self.machine.apply_batch([(None, NOW, ops)])[0]


def patch(kind, record_id, *sets):
    return {"op": "patch", "kind": kind, "id": record_id, "set": list(sets)}


async def until_quiet(orch, store, passes_before):
    """Wait for the pass the last change triggered (and the passes its own writes triggered) to end."""
    last = -1
    for _ in range(100):
        await asyncio.sleep(0.1)
        if orch.passes > passes_before and orch.passes == last and not orch._dirty.is_set() and not orch._pending:
            return
        last = orch.passes
    raise AssertionError("the orchestrator did not settle")


class CountingOrchestrator(Orchestrator):
    """Records which services every pass planned."""
    interval = 30.0
    full_interval = 3600.0

    def __init__(self, store):
        super().__init__(store)
        self.passes = 0
        self.planned: list[tuple[bool, set]] = []

    def plan_changes(self, changed, full, waiting, pause=None):
        p = super().plan_changes(changed, full, waiting, pause)
        self.passes += 1
        self.planned.append((self.last_pass["full"], self.last_pass["service_ids"]))
        return p


def assign_all(store, node_id):
    store.apply([patch("task", t["id"], (["node_id"], node_id), (["status", "state"], "running"))
                 for t in store.list("task") if t["desired_state"] == "running" and not t.get("node_id")])


def test_passes_replan_only_what_changed():
    async def scenario():
        a, b, g = service("a", replicas=2), service("b", replicas=2), service("g", mode="global")
        store = LocalStore(machine([a, b], [node("n1"), node("n2")]))
        orch = CountingOrchestrator(store)
        orch.start()
        try:
            await until_quiet(orch, store, 0)
            assert orch.planned[0][0] is True  # the first pass is a full one
            assert len(store.list("task")) == 4
            # the tasks of a run on n1, those of b on n2 (a stand-in for the scheduler and the agents)
            n = orch.passes
            store.apply([patch("task", t["id"], (["node_id"], "id-n1" if t["service_id"] == "svc-a" else "id-n2"),
                               (["status", "state"], "running")) for t in store.list("task")])
            await asyncio.sleep(0.1)
            assert orch.passes == n  # progress of tasks on their way to running wakes nothing

            # a service update replans that service only
            n = orch.passes
            store.apply([patch("service", "svc-a", (["spec", "replicas"], 3))])
            await until_quiet(orch, store, n)
            assert all(ids == {"svc-a"} and not full for full, ids in orch.planned[n:])
            assert sum(1 for t in store.list("task") if t["service_id"] == "svc-a") == 3

            # a task that ends replans its service only
            n = orch.passes
            victim = next(t for t in store.list("task") if t["service_id"] == "svc-b")
            store.apply([patch("task", victim["id"], (["status", "state"], "failed"))])
            await until_quiet(orch, store, n)
            assert orch.planned[n] == (False, {"svc-b"})
            assert sum(1 for t in store.list("task") if t["service_id"] == "svc-b"
                       and t["desired_state"] == "running" and t["status"]["state"] == "pending") == 1

            # a heartbeat that changes nothing the orchestrator looks at replans nothing
            n = orch.passes
            store.apply([patch("node", "id-n2", (["status", "message"], "heartbeat"),
                               (["description", "resources", "cpus"], 8.0))])
            await asyncio.sleep(0.1)
            assert all(ids == set() for _full, ids in orch.planned[n:])

            # a drained node replans the services with tasks on it (and global ones)
            store.apply([{"op": "put", "kind": "service", "id": g["id"], "record": g}])
            await asyncio.sleep(0.1)
            n = orch.passes
            store.apply([patch("node", "id-n2", (["spec", "availability"], "drain"))])
            await until_quiet(orch, store, n)
            assert orch.planned[n] == (False, {"svc-b", "svc-g"})
            assert not any(t["node_id"] == "id-n2" and t["desired_state"] == "running" and t["service_id"] == "svc-b"
                           for t in store.list("task"))

            # a removed service: its tasks are shut down, and reaped once ended
            n = orch.passes
            store.apply([{"op": "delete", "kind": "service", "id": "svc-a"}])
            await until_quiet(orch, store, n)
            assert orch.planned[n] == (False, {"svc-a"})
            assert all(t["desired_state"] == "shutdown" for t in store.find("task", "service_id", "svc-a"))
            store.apply([patch("task", t["id"], (["status", "state"], "shutdown"))
                         for t in store.find("task", "service_id", "svc-a")])
            await until_quiet(orch, store, orch.passes)
            assert store.find("task", "service_id", "svc-a") == []

            # a snapshot restore ("reset") and a change of the cluster record make a full pass
            n = orch.passes
            store.machine.restore(store.machine.snapshot())
            await until_quiet(orch, store, n)
            assert orch.planned[n][0] is True
        finally:
            await orch.stop()
    asyncio.run(scenario())


def test_restart_delay_is_waited_out_without_events():
    async def scenario():
        svc = service("d", replicas=1, delay=0.3)
        store = LocalStore(machine([svc], [node("n1")]))
        orch = CountingOrchestrator(store)
        orch.interval = 0.05
        orch.start()
        try:
            await until_quiet(orch, store, 0)
            assign_all(store, "id-n1")
            (t,) = store.list("task")
            import time as _time
            store.apply([patch("task", t["id"], (["status", "state"], "failed"),
                               (["status", "timestamp"], _time.time()))])
            for _ in range(100):
                await asyncio.sleep(0.05)
                if len(store.list("task")) == 2:
                    break
            assert len(store.list("task")) == 2  # restarted after its delay, woken by the timer only
            assert all(not full for full, _ids in orch.planned[1:])
        finally:
            await orch.stop()
    asyncio.run(scenario())


def test_reconciler_collects_changes_and_full_flag():
    async def scenario():
        store = LocalStore(StateMachine())
        seen = []

        class Probe(Reconciler):
            kinds = ("node",)
            full_interval = 3600.0

            async def reconcile(self):
                seen.append((self.full, {k: set(v) for k, v in self.changed.items()}))

        probe = Probe(store)
        probe.start()
        try:
            await asyncio.sleep(0.05)
            store.apply([{"op": "put", "kind": "node", "id": "x", "record": node("x")},
                         {"op": "put", "kind": "service", "id": "s", "record": service("s")}])
            await asyncio.sleep(0.05)
            store.machine.restore(store.machine.snapshot())
            await asyncio.sleep(0.05)
        finally:
            await probe.stop()
        assert seen[0] == (True, {})
        assert seen[1] == (False, {"node": {"x"}})  # kinds it does not watch are not collected
        assert seen[2] == (True, {})

        class Every(Reconciler):  # a reconciler that never set full_interval sees every pass as full
            async def reconcile(self):
                seen.append(self.full)
        every = Every(store)
        assert every.full_interval is None
    asyncio.run(scenario())


def test_orchestrator_ignores_progress_of_live_tasks():
    orch = Orchestrator.__new__(Orchestrator)
    svc = service()
    live = task(svc, state="starting")
    assert not orch.relevant(("update", "task", live["id"], live))
    assert orch.relevant(("create", "task", live["id"], live))
    assert orch.relevant(("delete", "task", live["id"], live))
    assert orch.relevant(("update", "task", live["id"], dict(live, desired_state="shutdown")))
    assert orch.relevant(("update", "task", live["id"], dict(live, status=dict(live["status"], state="failed"))))
    assert orch.relevant(("update", "cluster", "c", {})) and orch.relevant(("update", "node", "n", {}))


def test_package_keeps_the_old_names():
    assert orchestrator.HISTORY_PER_SLOT == 5
    assert callable(orchestrator.plan) and callable(orchestrator.plan_replicated)
    assert collections.Counter(op["op"] for op in plan([service(replicas=3)], [], [node("n1")], now=NOW)) == \
        {"create": 3}

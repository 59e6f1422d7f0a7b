"""The scheduler component: assigns pending tasks to nodes on the leader.

The planner works the way swarmkit's does. Pending tasks are sorted by (service, slot, id) and cut into
groups of consecutive tasks of one service and spec version; tasks bound to a node (global services) are
placed one by one. For a group the filters run once per node: the static ones (ready and active,
constraints) once per pass and constraint set, the ones that depend on what is placed (memory, cpu, max
replicas per node) once per node and again only on the node that just took a task. The candidates sit in
a heap ordered by the strategy's key (spread: reserved share, this service's tasks, all tasks, id; binpack:
most reserved share, most tasks, id), so each placement costs O(log nodes) instead of a pass over every
node. When a group runs out of nodes its explanation ("no suitable node (...)") is computed once for the
rest of the group. Placements are the same as the one-task-at-a-time pipeline's (property-tested against
tests/unit/scheduler_reference.py).

The Scheduler reconciler keeps an index of pending tasks and of what each node reserves, fed by store
events (index.py), plans in a worker thread on immutable records, and commits in batches of 200 ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import logging
import random
import time

from swarmctl.manager.component import Reconciler
from swarmctl.manager.scheduler import constraints, nodeinfo, preferences
from swarmctl.manager.scheduler.filters import Pipeline
from swarmctl.manager.scheduler.index import SchedulerIndex
from swarmctl.manager.scheduler.nodeinfo import NodeInfo, host_keys
from swarmctl.manager.scheduler.strategies import KEYS
from swarmctl.manager.writes import commit_chunks

log = logging.getLogger(__name__)

ASSIGNED_MESSAGE = "scheduler assigned task to node"


def default_strategy(store) -> str:
    clusters = store.list("cluster")
    return clusters[0]["spec"].get("default_strategy", "spread") if clusters else "spread"


def plan(tasks: list[dict], nodes: list[dict], default: str = "spread", now: float | None = None) -> list[dict]:
    """The scheduling decisions for one pass, as store ops (pure: used by tests and bench too)."""
    now = now or time.time()
    pending = [t for t in tasks if t["status"]["state"] == "pending" and t["desired_state"] == "running"]
    if not pending:
        return []
    return plan_pending(pending, nodeinfo.build(nodes, tasks), default, now)


def _order(task: dict):
    return task["service_id"], task["slot"] or 0, task["id"]


def plan_pending(pending: list[dict], infos: dict[str, NodeInfo], default: str = "spread",
                 now: float | None = None) -> list[dict]:
    """Decisions for these pending tasks on these nodes; counts the placements on `infos` (pass copies)."""
    now = now or time.time()
    with _gc_paused():
        return _plan_sorted(sorted(pending, key=_order), infos, default, now)


def _plan_sorted(pending: list[dict], infos: dict[str, NodeInfo], default: str, now: float) -> list[dict]:
    planner = _Pass(infos, default, now)
    i, count = 0, len(pending)
    while i < count:
        first = pending[i]
        if first.get("node_id"):
            planner.fixed(first)
            i += 1
            continue
        sid, version, spec = first["service_id"], first.get("spec_version"), first["spec"]
        reservations, placement = spec["resources"]["reservations"], spec["placement"]
        j = i + 1
        while j < count:
            task = pending[j]
            if task.get("node_id") or task["service_id"] != sid or task.get("spec_version") != version:
                break
            other = task["spec"]
            if other is not spec and (other["resources"]["reservations"] != reservations
                                      or other["placement"] != placement):
                break  # same version, different placement spec: never made by the orchestrator, but exact
            j += 1
        planner.group(pending, i, j)
        i = j
    return planner.ops


_NODE_ID = ["node_id"]
_STATE_ASSIGNED = (["status", "state"], "assigned")
_MESSAGE_ASSIGNED = (["status", "message"], ASSIGNED_MESSAGE)


def _assign(task: dict, node_id: str, stamp: tuple, assigned_at: tuple | None = None) -> dict:
    """The op that assigns a task; `stamp` is the pass's (["status", "timestamp"], now). The constant parts
    are shared between ops (nothing mutates them), which saves a third of a 100k-task pass."""
    return {"op": "patch", "kind": "task", "id": task["id"], "soft": True, "if_version": task.get("version"),
            "set": [(_NODE_ID, node_id), _STATE_ASSIGNED, _MESSAGE_ASSIGNED, stamp,
                    assigned_at or (["assigned_at"], stamp[1])]}


@contextlib.contextmanager
def _gc_paused():
    """No cyclic garbage collection while a pass allocates its ops: the collector's generation scans over a
    100k-task heap cost as much as the planning itself. A pass makes no cycles; collection resumes after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _unschedulable(task: dict, reason: str, now: float) -> dict:
    return {"op": "patch", "kind": "task", "id": task["id"], "soft": True, "if_version": task.get("version"),
            "set": [(["status", "message"], reason), (["status", "timestamp"], now)]}


class _Pass:
    """One planning pass over NodeInfos; collects the ops."""

    def __init__(self, infos: dict[str, NodeInfo], default: str, now: float):
        self.infos = infos
        self.default = default
        self.now = now
        self.stamp = (["status", "timestamp"], now)
        self.assigned_at = (["assigned_at"], now)  # kept after the agent's reports: the scheduling delay
        self.ops: list[dict] = []
        self.pipeline = Pipeline()
        self._ready = [n for n in infos.values() if n.ready and n.availability == "active"]
        self._static: dict[tuple, list[NodeInfo]] = {}

    def candidates(self, exprs: tuple) -> list[NodeInfo]:
        """Nodes that pass the filters that do not depend on placements: ready and active, constraints."""
        found = self._static.get(exprs)
        if found is None:
            parsed = constraints.parse_all(list(exprs))
            found = [n for n in self._ready if all(c.matches(n.record) for c in parsed)] if parsed else self._ready
            self._static[exprs] = found
        return found

    def fixed(self, task: dict) -> None:
        """A task bound to its node (global services): the pipeline on that one node."""
        info = self.infos.get(task["node_id"])
        eligible, reason = self.pipeline.eligible(task, [info] if info is not None else [])
        if not eligible:
            if task["status"]["message"] != reason:
                self.ops.append(_unschedulable(task, reason, self.now))
            return
        node = eligible[0]
        node.add(task)
        self.ops.append(_assign(task, node.id, self.stamp, self.assigned_at))

    def group(self, tasks: list[dict], start: int, end: int) -> None:
        """Place tasks[start:end], one service and spec, on the best node each, in order."""
        first = tasks[start]
        sid, spec = first["service_id"], first["spec"]
        reservations, placement = spec["resources"]["reservations"], spec["placement"]
        cpus = reservations.get("cpus") or 0
        memory = reservations.get("memory") or 0
        max_replicas = placement.get("max_replicas_per_node") or 0
        strategy = placement.get("strategy") or self.default
        keys = host_keys(first)

        def fits(n: NodeInfo) -> bool:  # the filters that change as tasks are placed
            if memory and n.total_memory - n.reserved["memory"] + 1e-9 < memory:
                return False
            if cpus and n.total_cpus - n.reserved["cpus"] + 1e-9 < cpus:
                return False
            if keys and not n.host_port_free(keys):
                return False
            return not max_replicas or n.service_tasks.get(sid, 0) < max_replicas

        eligible = [n for n in self.candidates(tuple(placement.get("constraints") or ())) if fits(n)]
        ops, now, stamp, assigned_at = self.ops, self.now, self.stamp, self.assigned_at
        if placement.get("preferences"):
            placed = self._preferred(tasks, start, end, eligible, fits, sid, cpus, memory, keys, strategy,
                                     placement["preferences"])
        elif strategy == "random":
            placed = self._random(tasks, start, end, eligible, fits, sid, cpus, memory, keys)
        else:
            if strategy not in KEYS:
                raise ValueError(f"unknown strategy {strategy!r}")
            order = KEYS[strategy](sid)

            def key(n: NodeInfo):  # ids are unique: the node itself is never compared
                return order(n), n
            heap = [key(n) for n in eligible]
            heapq.heapify(heap)
            placed = start
            while placed < end and heap:
                node = heapq.heappop(heap)[1]
                node.place(sid, cpus, memory, keys)
                ops.append(_assign(tasks[placed], node.record["id"], stamp, assigned_at))
                placed += 1
                if fits(node):
                    heapq.heappush(heap, key(node))
        if placed < end:  # out of nodes: the same explanation holds for the rest of the group
            reason = self.pipeline.eligible(tasks[placed], list(self.infos.values()))[1]
            for task in tasks[placed:end]:
                if task["status"]["message"] != reason:
                    ops.append(_unschedulable(task, reason, now))

    def _preferred(self, tasks, start, end, eligible, fits, sid, cpus, memory, keys, strategy, prefs) -> int:
        """Placement preferences: each task down swarmkit's tree of groups (preferences.py), the strategy in
        the leaf. Only services with preferences come here: the others keep the one heap above."""
        if strategy != "random" and strategy not in KEYS:
            raise ValueError(f"unknown strategy {strategy!r}")
        order = KEYS[strategy](sid) if strategy in KEYS else None

        def place(node: NodeInfo) -> None:
            node.place(sid, cpus, memory, keys)

        tree = preferences.tree(self.infos.values(), prefs, sid, eligible, strategy, order, fits, place)
        placed = start
        while placed < end:
            node = tree.take()
            if node is None:
                break
            self.ops.append(_assign(tasks[placed], node.record["id"], self.stamp, self.assigned_at))
            placed += 1
        return placed

    def _random(self, tasks, start, end, eligible, fits, sid, cpus, memory, keys=()) -> int:
        """Random strategy: any eligible node, uniformly; a node that no longer fits leaves the pool."""
        pool = list(eligible)
        placed = start
        while placed < end and pool:
            k = random.randrange(len(pool))
            node = pool[k]
            node.place(sid, cpus, memory, keys)
            self.ops.append(_assign(tasks[placed], node.record["id"], self.stamp, self.assigned_at))
            placed += 1
            if not fits(node):
                pool[k] = pool[-1]
                pool.pop()
        return placed


class Scheduler(Reconciler):
    """Plans from an event-fed index in a worker thread; the event loop only commits."""

    kinds = ("task", "node", "cluster")
    resync_interval = 60.0  # the safety net: rebuild the index from a listing this often

    def __init__(self, store):
        super().__init__(store)
        self.index = SchedulerIndex(store)
        self.last_pass: dict = {}
        self._resynced = time.monotonic()

    def start(self) -> None:
        self.index.attach()
        super().start()

    async def stop(self) -> None:
        await super().stop()
        self.index.detach()

    async def reconcile(self) -> None:
        if time.monotonic() - self._resynced > self.resync_interval:
            self._resynced = time.monotonic()
            self.index.resync()
        ops, self.last_pass = await asyncio.to_thread(self.index.plan)
        if not ops:
            return
        try:
            await commit_chunks(self.store, ops)  # 200-op writes, a window at once (RaftStore caps entries)
        except BaseException:
            self.index.invalidate()  # what was not committed must be planned again
            raise

"""The scheduler's index, fed by store events: pending tasks, node records and what each node reserves.

A pass used to rebuild all of this from every task in the store (100k records) and then walk them all; the
index keeps it up to date from the store's watch events instead, so a pass costs the pending tasks and the
nodes. The watch callback runs on Raft's apply thread and only appends the events to a queue; the planner
thread (`plan`, run through asyncio.to_thread) owns every other field, applies the queued events, copies
what it plans on and runs the grouped planner. Every event sets a record's whole state ("task X is now R"),
so replaying the queue in order over a fresh listing converges on the store's state: that is how a store
"reset" (a snapshot installed) and the first pass rebuild the index.
"""

from __future__ import annotations

import collections
import threading
import time

from swarmctl.manager.scheduler.nodeinfo import NodeInfo, holds_resources, host_keys


class Usage:
    """What the tasks placed on one node reserve, maintained as tasks come and go."""

    __slots__ = ("cpus", "memory", "tasks", "service_tasks")

    def __init__(self):
        self.cpus = 0.0
        self.memory = 0.0
        self.tasks = 0
        self.service_tasks: dict[str, int] = {}

    def place(self, service_id: str, cpus: float, memory: float, host_keys: tuple = ()) -> None:
        self.cpus += cpus
        self.memory += memory
        self.tasks += 1
        for key in (service_id, *host_keys):
            self.service_tasks[key] = self.service_tasks.get(key, 0) + 1

    def unplace(self, service_id: str, cpus: float, memory: float, host_keys: tuple = ()) -> None:
        self.tasks -= 1
        for key in (service_id, *host_keys):
            left = self.service_tasks.get(key, 0) - 1
            if left > 0:
                self.service_tasks[key] = left
            else:
                self.service_tasks.pop(key, None)
        if self.tasks <= 0:  # an emptied node reserves exactly nothing, whatever the float sums left
            self.tasks, self.cpus, self.memory = 0, 0.0, 0.0
        else:
            self.cpus -= cpus
            self.memory -= memory

    def info(self, record: dict) -> NodeInfo:
        """A NodeInfo the planner may count placements on (a copy: the index stays as it is)."""
        return NodeInfo(record, {"cpus": self.cpus, "memory": self.memory}, self.tasks, dict(self.service_tasks))


def _contribution(task: dict):
    """(node_id, service_id, cpus, memory, host-port keys) for a task that holds resources on its node, else None."""
    if not holds_resources(task):
        return None
    reservations = task["spec"]["resources"]["reservations"]
    return (task["node_id"], task["service_id"], reservations.get("cpus") or 0, reservations.get("memory") or 0,
            host_keys(task))


def _node_view(node: dict) -> tuple:
    """What placement reads from a node record (state, role, availability, labels, hostname, resources):
    a node update that leaves it alone (an address, a status message) needs no new pass."""
    return node["status"]["state"], node["spec"], node["description"]


def is_pending(task: dict) -> bool:
    return task["status"]["state"] == "pending" and task["desired_state"] == "running"


class SchedulerIndex:
    def __init__(self, store):
        self.store = store
        self._queue: collections.deque = collections.deque()
        self._cancel = None
        self._lock = threading.Lock()
        self._rebuild = True
        self.changed = True  # something that placement depends on changed since the last plan
        self.pending: dict[str, dict] = {}
        self.nodes: dict[str, dict] = {}
        self.usage: dict[str, Usage] = collections.defaultdict(Usage)
        self.holding: dict[str, tuple] = {}
        self.cluster: dict | None = None

    # ---- feeding ---------------------------------------------------------------------------
    def attach(self) -> None:
        """Start queueing the store's events; the next plan() rebuilds from a listing and replays them."""
        self.detach()
        self._queue.clear()
        self._rebuild = True
        self._cancel = self.store.watch(self._on_events)

    def detach(self) -> None:
        if self._cancel is not None:
            self._cancel()
            self._cancel = None

    def _on_events(self, _index, events) -> None:  # Raft's apply thread: O(1)
        self._queue.append(events)

    def resync(self) -> None:
        """Rebuild from a fresh listing at the next plan(): the periodic safety net."""
        self._rebuild = True

    def invalidate(self) -> None:
        """Plan again on the next pass even if no event came (a commit failed)."""
        self.changed = True

    def refresh(self) -> None:
        """Bring the index up to date with the store (planner thread)."""
        from swarmctl.manager.scheduler.scheduler import _gc_paused
        with self._lock, _gc_paused():
            self._refresh()

    def _refresh(self) -> None:
        while True:
            if self._rebuild:
                self._rebuild = False
                self._load()
            drained = []
            while self._queue:
                drained.append(self._queue.popleft())
            for events in drained:
                for event in events:
                    if event[0] == "reset":
                        self._rebuild = True
                        break
                    self._apply(event)
                if self._rebuild:
                    break
            if not self._rebuild:
                return

    def _load(self) -> None:
        """Everything from a fresh listing; events queued meanwhile are replayed after it."""
        self.pending.clear()
        self.nodes.clear()
        self.usage.clear()
        self.holding.clear()
        self.nodes.update((n["id"], n) for n in self.store.list("node"))
        clusters = self.store.list("cluster")
        self.cluster = clusters[0] if clusters else None
        for task in self.store.list("task"):
            self._set_task(task["id"], task)
        self.changed = True

    def _apply(self, event) -> None:
        action, kind, record_id, record = event
        if kind == "task":
            self._set_task(record_id, None if action == "delete" else record)
        elif kind == "node":
            old = self.nodes.get(record_id)
            if action == "delete":
                self.nodes.pop(record_id, None)
                self.changed = True
            else:
                self.nodes[record_id] = record
                if old is None or _node_view(old) != _node_view(record):
                    self.changed = True
        elif kind == "cluster":
            self.cluster = None if action == "delete" else record
            self.changed = True

    def _set_task(self, task_id: str, task: dict | None) -> None:
        new = _contribution(task) if task is not None else None
        old = self.holding.get(task_id)
        if old != new:
            if old is not None:
                del self.holding[task_id]
                self.usage[old[0]].unplace(*old[1:])
            if new is not None:
                self.holding[task_id] = new
                self.usage[new[0]].place(*new[1:])
            self.changed = True
        if task is not None and is_pending(task):
            self.pending[task_id] = task
            self.changed = True
        elif self.pending.pop(task_id, None) is not None:
            self.changed = True

    # ---- planning --------------------------------------------------------------------------
    def default_strategy(self) -> str:
        return (self.cluster or {}).get("spec", {}).get("default_strategy", "spread") if self.cluster else "spread"

    def infos(self) -> dict[str, NodeInfo]:
        """NodeInfo copies for every node, loaded with what the index says it reserves."""
        usage = self.usage
        empty = Usage()
        return {nid: (usage[nid] if nid in usage else empty).info(record) for nid, record in self.nodes.items()}

    def plan(self, now: float | None = None) -> tuple[list[dict], dict]:
        """Bring the index up to date and plan the pending tasks (planner thread). Returns (ops, figures)."""
        from swarmctl.manager.scheduler.scheduler import _gc_paused, plan_pending
        with self._lock, _gc_paused():
            started = time.perf_counter()
            self._refresh()
            refreshed = time.perf_counter()
            stats = {"pending": len(self.pending), "nodes": len(self.nodes), "ops": 0,
                     "refresh_s": refreshed - started, "plan_s": 0.0, "skipped": not self.changed}
            if not self.changed or not self.pending:
                self.changed = False
                return [], stats
            self.changed = False
            try:
                ops = plan_pending(list(self.pending.values()), self.infos(), self.default_strategy(), now)
            except BaseException:
                self.changed = True
                raise
            stats["ops"] = len(ops)
            stats["plan_s"] = time.perf_counter() - refreshed
            return ops, stats

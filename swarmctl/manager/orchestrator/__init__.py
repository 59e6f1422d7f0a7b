"""The orchestrator: turns each service's desired state into tasks, on the leader.

Split by concern the way swarmkit splits its orchestrators:
* replicated.py: one live task per slot, scale up and down, replacement of tasks on lost nodes or old specs;
* global_.py: one task per eligible node;
* restart.py: the restart policy, with restart attempts counted on the tasks (not from the kept history);
* reaper.py: the task reaper, which keeps `task_history_limit` ended tasks per slot and forgets the tasks
  of removed services and nodes, in bounded batches.

`plan()` is the pure decision function for a set of services and their tasks. `Orchestrator` runs it
event-driven: a pass replans only the services that the store's events touched (a service changed, one of
its tasks ended or was created or deleted or is shutting down, a node it has tasks on changed what the
orchestrator looks at; every global service when any node did), plus those waiting out a restart delay;
a full pass runs on start, after a snapshot restore and every `full_interval` seconds. A service's tasks
come from the store's task index by service, so a pass costs the size of what changed. Planning runs in a
worker thread, so a large pass (100k tasks) never holds the event loop; its ops are committed in batches
of at most 200.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, defaultdict

from swarmctl.manager.component import Reconciler
from swarmctl.manager.orchestrator.common import HISTORY_PER_SLOT, REAP_PER_PASS, Plan, shutdown
from swarmctl.manager.orchestrator.global_ import plan_global
from swarmctl.manager.orchestrator.reaper import reap_orphans
from swarmctl.manager.orchestrator.replicated import plan_replicated
from swarmctl.manager.orchestrator.taskports import TaskPortAllocator
from swarmctl.manager.writes import commit_chunks
from swarmctl.state.records import is_terminal

__all__ = ["HISTORY_PER_SLOT", "Orchestrator", "history_limit", "plan", "plan_pass", "plan_replicated",
           "plan_global"]
log = logging.getLogger(__name__)


def history_limit(cluster: dict | None) -> int:
    """The cluster's `task_history_limit` (Docker's TaskHistoryRetentionLimit), 5 when unset."""
    value = ((cluster or {}).get("spec") or {}).get("task_history_limit")
    return HISTORY_PER_SLOT if value is None else int(value)


def plan_pass(services: list[dict], tasks: list[dict], nodes: list[dict], now: float | None = None,
              task_history_limit: int = HISTORY_PER_SLOT, reap_budget: int = REAP_PER_PASS, pause=None,
              default_rebalance: str = "never") -> Plan:
    """The decisions of one pass over these services and tasks; tasks whose service is not among
    `services` are taken as those of a removed service. `pause`: see Plan."""
    p = Plan({n["id"]: n for n in nodes}, now or time.time(), task_history_limit, reap_budget, pause)
    p.default_rebalance = default_rebalance
    by_service: dict[str, list[dict]] = defaultdict(list)
    for t in tasks:
        p.tick()
        by_service[t["service_id"]].append(t)
    known = set()
    for service in services:
        known.add(service["id"])
        service_tasks = by_service.get(service["id"], [])
        if service["spec"]["mode"] == "global":
            plan_global(service, service_tasks, p)
        else:
            plan_replicated(service, service_tasks, p)
    for service_id, orphans in by_service.items():
        if service_id in known:
            continue
        for t in orphans:  # the service was removed: stop everything, forget what has ended
            if t["desired_state"] == "running":
                p.ops.append(shutdown(t, "service removed"))
        reap_orphans(service_id, orphans, p)
    return p


def plan(services: list[dict], tasks: list[dict], nodes: list[dict], now: float | None = None,
         task_history_limit: int = HISTORY_PER_SLOT) -> list[dict]:
    """All orchestration decisions for one pass, as store ops (pure)."""
    return plan_pass(services, tasks, nodes, now, task_history_limit).ops


# The longest a planning slice waits for the loop's turn. It was 1 s: with the loop busy (1,000 nodes reporting
# 100k task states) every 4 ms slice of a 100k-task pass waited that long, and one pass took a minute.
HANDOFF_WAIT = 0.01


def handoff(loop: asyncio.AbstractEventLoop):
    """A Plan.pause for a pass planned in a worker thread: wait until the event loop has run what was ready.

    A thread that only sleeps a moment does not do: CPython hands the GIL to whichever waiting thread wakes
    first, and a loop that mostly waits in select() loses to busy threads (Raft's tick thread applying
    writes) for seconds. Here the planner blocks until the loop itself has run a callback queued behind
    everything that was ready, so the loop gets a turn at least every Plan slice (4 ms of planning)."""
    ready = threading.Event()

    def pause() -> None:
        ready.clear()
        try:
            loop.call_soon_threadsafe(ready.set)
        except RuntimeError:  # the loop has closed: plan on
            return
        ready.wait(HANDOFF_WAIT)
    return pause


def _reason(op: dict) -> str:
    """What an op does, for the log: the status message it sets, else its kind."""
    for path, value in op.get("set") or ():
        if list(path) == ["status", "message"] and value:
            return value
    return op["op"]


def node_signature(node: dict | None):
    """What the orchestrator looks at in a node; a change of anything else (resources, heartbeat
    bookkeeping, status messages) replans nothing."""
    if node is None:
        return None
    desc = node.get("description") or {}
    return repr((node["status"]["state"], node["spec"], desc.get("hostname"), desc.get("engine_labels"),
                 desc.get("platform")))


class Orchestrator(Reconciler):
    kinds = ("service", "task", "node", "cluster")
    interval = 0.5        # wake this often for services waiting out a restart delay
    full_interval = 15.0  # the safety net: a full pass this often

    def __init__(self, store):
        super().__init__(store)
        self._nodes_seen: dict[str, str] = {}
        self._waiting: set[str] = set()
        self.last_pass: dict = {}  # what the last pass did, for tests and benches
        self.ports = TaskPortAllocator()
        self._default_rebalance = "never"

    def relevant(self, event) -> bool:
        """Task updates the scheduler and agents make while a task is on its way to running change no
        decision of the orchestrator: those do not wake it."""
        action, kind, _record_id, record = event
        if kind != "task":
            return kind in self.kinds
        if action != "update" or record is None:
            return True
        return record.get("desired_state") != "running" or is_terminal(record["status"]["state"])

    def affected(self, changed: dict, nodes: dict[str, dict]) -> set[str] | None:
        """The ids of the services a set of changes concerns; None when everything must be replanned."""
        if "cluster" in changed:  # the history limit may have changed
            return None
        affected = set(changed.get("service", ()))
        affected.update(r["service_id"] for r in changed.get("task", {}).values() if r and r.get("service_id"))
        moved = []
        for node_id in changed.get("node", ()):
            signature = node_signature(nodes.get(node_id))
            if signature != self._nodes_seen.get(node_id):
                moved.append(node_id)
                if signature is None:
                    self._nodes_seen.pop(node_id, None)
                else:
                    self._nodes_seen[node_id] = signature
        if moved:
            for node_id in moved:
                affected.update(t["service_id"] for t in self.store.find("task", "node_id", node_id))
            # global services, and those that rebalance: a node that joined or came back concerns them
            default = self._default_rebalance
            affected.update(s["id"] for s in self.store.list("service") if s["spec"]["mode"] == "global"
                            or (s["spec"].get("rebalance") or default) == "auto")
        return affected

    def plan_changes(self, changed: dict, full: bool, waiting: set[str], pause=None) -> Plan:
        """Read what a pass needs and plan it (in a worker thread: store reads are thread-safe)."""
        node_list = self.store.list("node")
        nodes = {n["id"]: n for n in node_list}
        clusters = self.store.list("cluster")
        limit = history_limit(clusters[0] if clusters else None)
        self._default_rebalance = ((clusters[0] if clusters else {}).get("spec") or {}).get("default_rebalance") \
            or "never"
        affected = None if full else self.affected(changed, nodes)
        if affected is None:
            self._nodes_seen = {nid: node_signature(n) for nid, n in nodes.items()}
            services, tasks = self.store.list("service"), self.store.list("task")
        else:
            affected |= waiting
            services = [s for s in (self.store.get("service", sid) for sid in affected) if s is not None]
            tasks = [t for sid in affected for t in self.store.find("task", "service_id", sid)]
        started = time.perf_counter()
        p = plan_pass(services, tasks, node_list, task_history_limit=limit, pause=pause,
                      default_rebalance=self._default_rebalance)
        self.ports.assign(p.ops, {s["id"]: s for s in services}, lambda: self.store.list("task"),
                          clusters[0] if clusters else None)
        if p.ops:  # summarised here, off the event loop: a pass may hold 100k ops
            p.summary = ", ".join(f"{n} x {r}" for r, n in Counter(map(_reason, p.ops)).items())
        self.last_pass = {"full": affected is None, "services": len(services), "tasks": len(tasks),
                          "ops": len(p.ops), "seconds": time.perf_counter() - started,
                          "service_ids": {s["id"] for s in services} if affected is None else set(affected)}
        return p

    async def reconcile(self) -> None:
        changed, full = self.changed, self.full
        waiting, self._waiting = self._waiting, set()
        if not full and not changed and not waiting:
            return
        try:
            p = await asyncio.to_thread(self.plan_changes, changed, full, waiting,
                                        handoff(asyncio.get_running_loop()))
        except BaseException:
            self._waiting |= waiting
            raise
        self._waiting |= p.waiting
        ops = p.ops
        if ops:
            log.info("orchestrator: %s", p.summary)
        await commit_chunks(self.store, ops)

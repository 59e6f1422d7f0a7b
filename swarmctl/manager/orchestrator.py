"""The orchestrator: turns each service's desired state into tasks, on the leader.

Replicated services keep one live task per slot (1..replicas). A slot whose task ended is
restarted per the restart policy (condition, delay, max attempts in a window); a task on a node
that is down or drained, or built from an older spec, is shut down and replaced. Scale-down
takes tasks from the nodes running the most tasks of the service first. Global services keep
one task on every ready, active node whose labels satisfy the constraints. Tasks of removed
services, and old history, are deleted once they have ended.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict

from swarmctl.manager.component import Reconciler, chunks
from swarmctl.manager.scheduler import constraints
from swarmctl.manager.writes import commit
from swarmctl.state.records import is_terminal, new_task

HISTORY_PER_SLOT = 5
log = logging.getLogger(__name__)


def _shutdown(task: dict, message: str, now: float) -> dict:
    return {"op": "patch", "kind": "task", "id": task["id"], "soft": True, "if_version": task.get("version"),
            "set": [(["desired_state"], "shutdown"), (["status", "message"], message)]
            if not is_terminal(task["status"]["state"]) else [(["desired_state"], "shutdown")]}


def _create(task: dict) -> dict:
    return {"op": "create", "kind": "task", "id": task["id"], "record": task}


def _delete(task: dict) -> dict:
    return {"op": "delete", "kind": "task", "id": task["id"], "missing_ok": True}


class _Plan:
    def __init__(self, nodes: dict[str, dict], now: float):
        self.nodes = nodes
        self.now = now
        self.ops: list[dict] = []

    def node_usable(self, node_id: str | None) -> bool:
        """May a running task stay on this node? (Unknown nodes are treated as gone.)"""
        node = self.nodes.get(node_id or "")
        if node_id is None:
            return True  # not yet scheduled
        return node is not None and node["status"]["state"] != "down" and node["spec"]["availability"] != "drain"


def _restart_allowed(service: dict, slot_tasks: list[dict], ended: dict, now: float) -> tuple[bool, bool]:
    """(restart at all, restart now) for a slot whose live task ended."""
    policy = service["spec"]["task"]["restart_policy"]
    state = ended["status"]["state"]
    condition = policy.get("condition", "any")
    if condition == "none":
        return False, False
    if condition == "on-failure" and state not in ("failed", "rejected"):
        return False, False
    if policy.get("max_attempts"):
        window = policy.get("window") or 0
        restarts = [t for t in slot_tasks if is_terminal(t["status"]["state"]) and t["spec_version"] ==
                    service["spec_version"] and (not window or now - t["status"]["timestamp"] <= window)]
        if len(restarts) > policy["max_attempts"]:
            return False, False
    return True, now - ended["status"]["timestamp"] >= (policy.get("delay") or 0)


def plan_replicated(service: dict, tasks: list[dict], p: _Plan) -> None:
    by_slot: dict[int, list[dict]] = defaultdict(list)
    for t in tasks:
        by_slot[t["slot"]].append(t)
    live_slots: dict[int, dict] = {}  # slot -> its current task (desired running, maybe ended)
    for slot, slot_tasks in by_slot.items():
        slot_tasks.sort(key=lambda t: t.get("created_at") or 0)
        live = [t for t in slot_tasks if t["desired_state"] == "running"]
        for extra in live[:-1]:  # never two live tasks for one slot
            p.ops.append(_shutdown(extra, "duplicate task for slot", p.now))
        current = live[-1] if live else None
        if current is None:
            continue
        if is_terminal(current["status"]["state"]):
            restart, now_ok = _restart_allowed(service, slot_tasks, current, p.now)
            if not restart:  # the slot is done: its ended task stays current, nothing replaces it
                live_slots[slot] = current
                continue
            if not now_ok:  # waiting out the restart delay
                live_slots[slot] = current
                continue
            p.ops.append(_shutdown(current, "", p.now))
            p.ops.append(_create(new_task(service, slot, None, p.now)))
        elif not p.node_usable(current.get("node_id")):
            p.ops.append(_shutdown(current, "task moved: its node is down or drained", p.now))
            p.ops.append(_create(new_task(service, slot, None, p.now)))
        elif current["spec_version"] != service["spec_version"]:
            p.ops.append(_shutdown(current, "replaced by an updated task", p.now))
            p.ops.append(_create(new_task(service, slot, None, p.now)))
        live_slots[slot] = current
    want = service["spec"]["replicas"]
    if len(live_slots) > want:
        # scale down from the busiest nodes of this service first; dead and unplaced slots before all
        per_node: dict[str, int] = defaultdict(int)
        for t in live_slots.values():
            if t.get("node_id"):
                per_node[t["node_id"]] += 1

        def removal_priority(item):
            slot, task = item
            if is_terminal(task["status"]["state"]):
                return (3, 0, slot)
            if not task.get("node_id"):
                return (2, 0, slot)
            return (1, per_node[task["node_id"]], slot)
        while len(live_slots) > want:
            slot, task = max(live_slots.items(), key=removal_priority)
            if task.get("node_id"):
                per_node[task["node_id"]] -= 1
            p.ops.append(_shutdown(task, "scaled down", p.now))
            del live_slots[slot]
    elif len(live_slots) < want:
        free = (s for s in range(1, want + len(by_slot) + 2) if s not in live_slots)
        for _ in range(want - len(live_slots)):
            p.ops.append(_create(new_task(service, next(free), None, p.now)))
    _trim_history(by_slot.values(), p)


def plan_global(service: dict, tasks: list[dict], p: _Plan) -> None:
    parsed = constraints.parse_all(service["spec"]["task"]["placement"].get("constraints") or [])
    eligible = {nid for nid, n in p.nodes.items()
                if n["status"]["state"] == "ready" and n["spec"]["availability"] == "active"
                and all(c.matches(n) for c in parsed)}
    by_node: dict[str, list[dict]] = defaultdict(list)
    for t in tasks:
        by_node[t["node_id"]].append(t)
    for node_id, node_tasks in by_node.items():
        node_tasks.sort(key=lambda t: t.get("created_at") or 0)
        live = [t for t in node_tasks if t["desired_state"] == "running"]
        node = p.nodes.get(node_id)
        keep = node is not None and node["spec"]["availability"] != "drain" and all(c.matches(node) for c in parsed)
        for t in live[:-1]:
            p.ops.append(_shutdown(t, "duplicate task for node", p.now))
        current = live[-1] if live else None
        if current is not None and not keep:
            p.ops.append(_shutdown(current, "node no longer eligible", p.now))
            current = None
        elif current is not None and current["spec_version"] != service["spec_version"]:
            p.ops.append(_shutdown(current, "replaced by an updated task", p.now))
            current = None
        elif current is not None and is_terminal(current["status"]["state"]):
            restart, now_ok = _restart_allowed(service, node_tasks, current, p.now)
            if not restart or not now_ok:
                continue
            p.ops.append(_shutdown(current, "", p.now))
            current = None
        if current is None and node_id in eligible:
            p.ops.append(_create(new_task(service, None, node_id, p.now)))
    for node_id in eligible - set(by_node):
        p.ops.append(_create(new_task(service, None, node_id, p.now)))
    _trim_history(by_node.values(), p)


def _trim_history(groups, p: _Plan) -> None:
    """Delete old ended tasks beyond the history limit of each slot (or node)."""
    for group in groups:
        done = [t for t in group if t["desired_state"] != "running" and _finished(t, p)]
        done.sort(key=lambda t: t.get("created_at") or 0)
        for t in done[:-HISTORY_PER_SLOT] if len(done) > HISTORY_PER_SLOT else []:
            p.ops.append(_delete(t))


def _finished(task: dict, p: _Plan) -> bool:
    """A task whose container is gone, or can no longer be told to go (never placed, node lost)."""
    return is_terminal(task["status"]["state"]) or not task.get("node_id") or task["node_id"] not in p.nodes \
        or task["status"]["state"] in ("pending", "assigned")


def plan(services: list[dict], tasks: list[dict], nodes: list[dict], now: float | None = None) -> list[dict]:
    """All orchestration decisions for one pass, as store ops (pure)."""
    p = _Plan({n["id"]: n for n in nodes}, now or time.time())
    by_service: dict[str, list[dict]] = defaultdict(list)
    for t in tasks:
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
                p.ops.append(_shutdown(t, "service removed", p.now))
            elif _finished(t, p) or p.nodes.get(t["node_id"], {}).get("status", {}).get("state") == "down":
                p.ops.append(_delete(t))
    return p.ops


def _reason(op: dict) -> str:
    """What an op does, for the log: the status message it sets, else its kind."""
    for path, value in op.get("set") or ():
        if list(path) == ["status", "message"] and value:
            return value
    return op["op"]


class Orchestrator(Reconciler):
    kinds = ("service", "task", "node")
    interval = 0.5

    async def reconcile(self) -> None:
        ops = plan(self.store.list("service"), self.store.list("task"), self.store.list("node"))
        if ops:
            log.info("orchestrator: %s", ", ".join(f"{n} x {r}" for r, n in Counter(map(_reason, ops)).items()))
        for batch in chunks(ops):
            await commit(self.store, batch)

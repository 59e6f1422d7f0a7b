"""The scheduler's planner as it was before the grouped rewrite (issue 8), kept verbatim as the reference
the property tests compare the new planner with. It is test code only: every filter runs for every pending
task against every node, which costs O(tasks x nodes). Self-contained apart from the constraint parser."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from itertools import groupby

from swarmctl.manager.scheduler import constraints
from swarmctl.state.records import is_terminal


# ---- nodeinfo.py ----------------------------------------------------------------------------
@dataclass
class NodeInfo:
    record: dict
    reserved: dict = field(default_factory=lambda: {"cpus": 0.0, "memory": 0.0})
    tasks: int = 0
    service_tasks: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def ready(self) -> bool:
        return self.record["status"]["state"] == "ready"

    @property
    def availability(self) -> str:
        return self.record["spec"]["availability"]

    def total(self, kind: str) -> float:
        return float(self.record["description"].get("resources", {}).get(kind) or 0)

    def available(self, kind: str) -> float:
        return self.total(kind) - self.reserved[kind]

    def share(self) -> float:
        parts = [self.reserved[k] / self.total(k) for k in ("cpus", "memory") if self.total(k) > 0]
        return sum(parts) / len(parts) if parts else 0.0

    def add(self, task: dict) -> None:
        reservations = task["spec"]["resources"]["reservations"]
        self.reserved["cpus"] += reservations.get("cpus") or 0
        self.reserved["memory"] += reservations.get("memory") or 0
        self.tasks += 1
        self.service_tasks[task["service_id"]] = self.service_tasks.get(task["service_id"], 0) + 1


def build(nodes: list[dict], tasks: list[dict]) -> dict[str, NodeInfo]:
    infos = {n["id"]: NodeInfo(n) for n in nodes}
    for task in tasks:
        info = infos.get(task.get("node_id") or "")
        if info is not None and task["desired_state"] == "running" and not is_terminal(task["status"]["state"]) \
                and task["status"]["state"] != "pending":
            info.add(task)
    return infos


# ---- filters.py -----------------------------------------------------------------------------
def _nodes(n: int) -> str:
    return f"{n} node" if n == 1 else f"{n} nodes"


class ReadyFilter:
    def enabled(self, task: dict) -> bool:
        return True

    def check(self, task: dict, node: NodeInfo) -> bool:
        return node.ready and node.availability == "active"

    def explain(self, n: int) -> str:
        return f"{_nodes(n)} not available for new tasks"


class ResourceFilter:
    def __init__(self, kind: str):
        self.kind = kind

    def enabled(self, task: dict) -> bool:
        return bool(task["spec"]["resources"]["reservations"].get(self.kind))

    def check(self, task: dict, node: NodeInfo) -> bool:
        want = task["spec"]["resources"]["reservations"].get(self.kind) or 0
        return node.available(self.kind) + 1e-9 >= want

    def explain(self, n: int) -> str:
        return f"insufficient {'memory' if self.kind == 'memory' else 'cpu'} on {_nodes(n)}"


class ConstraintFilter:
    def __init__(self):
        self._cache: dict[tuple, list] = {}

    def _parsed(self, task: dict):
        exprs = tuple(task["spec"]["placement"].get("constraints") or ())
        if exprs not in self._cache:
            self._cache[exprs] = constraints.parse_all(list(exprs))
        return self._cache[exprs]

    def enabled(self, task: dict) -> bool:
        return bool(task["spec"]["placement"].get("constraints"))

    def check(self, task: dict, node: NodeInfo) -> bool:
        return all(c.matches(node.record) for c in self._parsed(task))

    def explain(self, n: int) -> str:
        return f"constraint not satisfied on {_nodes(n)}"


class MaxReplicasFilter:
    def enabled(self, task: dict) -> bool:
        return bool(task["spec"]["placement"].get("max_replicas_per_node"))

    def check(self, task: dict, node: NodeInfo) -> bool:
        return node.service_tasks.get(task["service_id"], 0) < task["spec"]["placement"]["max_replicas_per_node"]

    def explain(self, n: int) -> str:
        return f"max replicas per node limit exceeded on {_nodes(n)}"


class Pipeline:
    def __init__(self):
        self.filters = [ReadyFilter(), ResourceFilter("memory"), ResourceFilter("cpus"), ConstraintFilter(),
                        MaxReplicasFilter()]

    def eligible(self, task: dict, nodes: list[NodeInfo]) -> tuple[list[NodeInfo], str]:
        failures: dict[int, int] = {}
        active = [f for f in self.filters if f.enabled(task)]
        result = []
        for node in nodes:
            for i, f in enumerate(active):
                if not f.check(task, node):
                    failures[i] = failures.get(i, 0) + 1
                    break
            else:
                result.append(node)
        if result:
            return result, ""
        if not nodes:
            return [], "no suitable node (no nodes in the swarm can run tasks)"
        reasons = "; ".join(active[i].explain(n) for i, n in sorted(failures.items()))
        return [], f"no suitable node ({reasons})"


# ---- strategies.py --------------------------------------------------------------------------
def spread(task: dict, nodes: list[NodeInfo]) -> NodeInfo:
    sid = task["service_id"]
    return min(nodes, key=lambda n: (round(n.share(), 6), n.service_tasks.get(sid, 0), n.tasks, n.id))


def binpack(task: dict, nodes: list[NodeInfo]) -> NodeInfo:
    return min(nodes, key=lambda n: (-round(n.share(), 6), -n.tasks, n.id))


def random_choice(task: dict, nodes: list[NodeInfo]) -> NodeInfo:
    return random.choice(nodes)


STRATEGIES = {"spread": spread, "binpack": binpack, "random": random_choice}


# ---- scheduler.plan -------------------------------------------------------------------------
def plan(tasks: list[dict], nodes: list[dict], default: str = "spread", now: float | None = None) -> list[dict]:
    now = now or time.time()
    pending = [t for t in tasks if t["status"]["state"] == "pending" and t["desired_state"] == "running"]
    if not pending:
        return []
    infos = build(nodes, tasks)
    pipeline = Pipeline()
    ops = []
    pending.sort(key=lambda t: (t["service_id"], t["slot"] or 0, t["id"]))
    for _service_id, group in groupby(pending, key=lambda t: t["service_id"]):
        for task in group:
            if task.get("node_id"):
                pool = [infos[task["node_id"]]] if task["node_id"] in infos else []
            else:
                pool = list(infos.values())
            eligible, reason = pipeline.eligible(task, pool)
            if not eligible:
                if task["status"]["message"] != reason:
                    ops.append({"op": "patch", "kind": "task", "id": task["id"], "soft": True,
                                "if_version": task.get("version"),
                                "set": [(["status", "message"], reason), (["status", "timestamp"], now)]})
                continue
            strategy = STRATEGIES[task["spec"]["placement"].get("strategy") or default]
            node = strategy(task, eligible)
            node.add(task)
            ops.append({"op": "patch", "kind": "task", "id": task["id"], "soft": True,
                        "if_version": task.get("version"),
                        "set": [(["node_id"], node.id), (["status", "state"], "assigned"),
                                (["status", "message"], "scheduler assigned task to node"),
                                (["status", "timestamp"], now),
                                (["assigned_at"], now)]})  # the one addition since: when it was assigned
    return ops

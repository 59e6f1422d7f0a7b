"""The scheduler component: assigns pending tasks to nodes on the leader.

Each pass takes the pending tasks, groups them by service, runs the filter pipeline over the
nodes, picks one with the service's strategy (or the cluster default), and commits the decisions
in batches. A task no node can take stays pending with the reason in its status message, and is
retried whenever nodes or tasks change.
"""

from __future__ import annotations

import time
from itertools import groupby

from swarmctl.manager.component import Reconciler, chunks
from swarmctl.manager.scheduler import nodeinfo
from swarmctl.manager.scheduler.filters import Pipeline
from swarmctl.manager.scheduler.strategies import STRATEGIES
from swarmctl.manager.writes import commit


def default_strategy(store) -> str:
    clusters = store.list("cluster")
    return clusters[0]["spec"].get("default_strategy", "spread") if clusters else "spread"


def plan(tasks: list[dict], nodes: list[dict], default: str = "spread", now: float | None = None) -> list[dict]:
    """The scheduling decisions for one pass, as store ops (pure: used by tests and bench too)."""
    now = now or time.time()
    pending = [t for t in tasks if t["status"]["state"] == "pending" and t["desired_state"] == "running"]
    if not pending:
        return []
    infos = nodeinfo.build(nodes, tasks)
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
                                (["status", "timestamp"], now)]})
    return ops


class Scheduler(Reconciler):
    kinds = ("task", "node", "cluster")

    async def reconcile(self) -> None:
        ops = plan(self.store.list("task"), self.store.list("node"), default_strategy(self.store))
        for batch in chunks(ops):
            await commit(self.store, batch)

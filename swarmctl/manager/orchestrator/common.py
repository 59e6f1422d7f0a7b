"""What the orchestrator's planners share: the ops they emit, and the pass they add them to."""

from __future__ import annotations

from swarmctl.state.records import TASK_HISTORY_LIMIT, is_terminal

# Docker's default `swarm update --task-history-limit`: ended tasks kept per slot (or per node, global).
HISTORY_PER_SLOT = TASK_HISTORY_LIMIT
# Ended tasks the reaper deletes in one pass at most; the rest go in the next pass.
REAP_PER_PASS = 5000


def shutdown(task: dict, message: str) -> dict:
    return {"op": "patch", "kind": "task", "id": task["id"], "soft": True, "if_version": task.get("version"),
            "set": [(["desired_state"], "shutdown"), (["status", "message"], message)]
            if not is_terminal(task["status"]["state"]) else [(["desired_state"], "shutdown")]}


def create(task: dict) -> dict:
    return {"op": "create", "kind": "task", "id": task["id"], "record": task}


def delete(task: dict) -> dict:
    return {"op": "delete", "kind": "task", "id": task["id"], "missing_ok": True}


def by_created(task: dict):
    return task.get("created_at") or 0


class Plan:
    """One pass: the nodes it sees, its clock, the ops decided so far, the services to look at again soon
    (a restart delay to wait out, a reaper budget used up)."""

    def __init__(self, nodes: dict[str, dict], now: float, history_limit: int = HISTORY_PER_SLOT,
                 reap_budget: int = REAP_PER_PASS):
        self.nodes = nodes
        self.now = now
        self.history_limit = history_limit
        self.reap_budget = reap_budget
        self.ops: list[dict] = []
        self.waiting: set[str] = set()
        self.summary = ""

    def node_usable(self, node_id: str | None) -> bool:
        """May a running task stay on this node? (Unknown nodes are treated as gone.)"""
        node = self.nodes.get(node_id or "")
        if node_id is None:
            return True  # not yet scheduled
        return node is not None and node["status"]["state"] != "down" and node["spec"]["availability"] != "drain"

    def finished(self, task: dict) -> bool:
        """A task whose container is gone, or can no longer be told to go (never placed, node lost)."""
        return is_terminal(task["status"]["state"]) or not task.get("node_id") \
            or task["node_id"] not in self.nodes or task["status"]["state"] in ("pending", "assigned")

"""What the orchestrator's planners share: the ops they emit, and the pass they add them to."""

from __future__ import annotations

import time

from swarmctl.state.records import TASK_HISTORY_LIMIT, is_terminal

# Docker's default `swarm update --task-history-limit`: ended tasks kept per slot (or per node, global).
HISTORY_PER_SLOT = TASK_HISTORY_LIMIT
# Ended tasks the reaper deletes in one pass at most; the rest go in the next pass.
REAP_PER_PASS = 5000
# A pass planned in a worker thread lets the event loop have the GIL at least this often (seconds).
SLICE = 0.004


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
                 reap_budget: int = REAP_PER_PASS, pause=None):
        self.nodes = nodes
        # pause(): called at least every few ms of planning; a pass planned in a worker thread sleeps
        # there for a moment, so that the GIL goes to the event loop (a busy thread can keep it for long).
        self.pause = pause
        self._ticks = 0
        self._slice_start = time.perf_counter()
        self.now = now
        self.history_limit = history_limit
        self.reap_budget = reap_budget
        self.ops: list[dict] = []
        self.waiting: set[str] = set()
        self.summary = ""
        self.default_rebalance = "never"  # the swarm's default for services without --rebalance

    def tick(self) -> None:
        """A checkpoint in the planners' loops."""
        self._ticks += 1
        if self.pause is None or self._ticks & 127:
            return
        now = time.perf_counter()
        if now - self._slice_start >= SLICE:
            self.pause()
            self._slice_start = time.perf_counter()

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

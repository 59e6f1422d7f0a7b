"""Pure pieces of the dispatcher, kept apart so they can be tested without a store or a loop:

- Deadlines: when each node's heartbeat grace runs out, in a heap, so a heartbeat costs O(log N) and
  finding the expired nodes costs the number of expired ones, never a scan of every node.
- AssignmentLog: per node, the tasks last shown to it and a log of changes with a sequence number, so an
  agent that says "I applied sequence s" gets only what changed since s (added/updated, removed).
- assignment_key: the part of a task that an agent acts on. Status is left out: the agent's own status
  report must not count as a change for it (it would send its whole list back and wake it for nothing).
"""

from __future__ import annotations

import heapq
import json
from collections import deque

from swarmctl.state.records import is_terminal


class Deadlines:
    """Node id -> deadline, with the expired ones found by popping a heap. Stale heap entries (a later
    heartbeat moved the deadline) are dropped lazily when they surface."""

    def __init__(self):
        self._deadline: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._deadline)

    def set(self, key: str, deadline: float) -> None:
        self._deadline[key] = deadline
        heapq.heappush(self._heap, (deadline, key))
        if len(self._heap) > 4 * len(self._deadline) + 64:  # many stale entries: rebuild, O(N) rarely
            self._heap = [(d, k) for k, d in self._deadline.items()]
            heapq.heapify(self._heap)

    def get(self, key: str) -> float | None:
        return self._deadline.get(key)

    def discard(self, key: str) -> None:
        self._deadline.pop(key, None)

    def clear(self) -> None:
        self._deadline.clear()
        self._heap.clear()

    def pop_expired(self, now: float) -> list[str]:
        """Keys whose deadline is <= now; they are removed (a new heartbeat sets them again)."""
        expired = []
        while self._heap and self._heap[0][0] <= now:
            deadline, key = heapq.heappop(self._heap)
            if self._deadline.get(key) == deadline:
                del self._deadline[key]
                expired.append(key)
        return expired


def visible(task: dict) -> bool:
    """Whether a task is in its node's assignment list (the same rule as the full list)."""
    return (task.get("status", {}).get("state") != "pending"
            and (task.get("desired_state") == "running" or not is_terminal(task["status"]["state"])))


_NOT_ACTED_ON = ("status", "version", "updated_at")  # what a status report changes


def assignment_key(task: dict) -> str:
    """What of a task an agent acts on: everything but its status and record bookkeeping."""
    return json.dumps({k: v for k, v in task.items() if k not in _NOT_ACTED_ON},
                      sort_keys=True, default=str)


class AssignmentLog:
    """One node's view: the tasks it was shown (id -> key) and the changes since, by sequence number."""

    def __init__(self, keep: int = 4096):
        self.seq = 0
        self.shown: dict[str, str] = {}
        self._log: deque[tuple[int, str]] = deque()
        self._keep = keep
        self.floor = 0  # the oldest sequence a delta can start from

    def reset(self, tasks: list[dict]) -> None:
        """A full list was sent: it is the new base."""
        self.shown = {t["id"]: assignment_key(t) for t in tasks}
        self._log.clear()
        self.seq += 1
        self.floor = self.seq

    def observe(self, task_id: str, task: dict | None) -> bool:
        """Record a task's new state (None: deleted); True when the node's view changed."""
        key = assignment_key(task) if task is not None and visible(task) else None
        if self.shown.get(task_id) == key:
            return False
        if key is None:
            self.shown.pop(task_id, None)
        else:
            self.shown[task_id] = key
        self.seq += 1
        self._log.append((self.seq, task_id))
        while len(self._log) > self._keep:
            self._log.popleft()
            self.floor = self._log[0][0] - 1 if self._log else self.seq
        return True

    def changed_since(self, seq: int) -> set[str] | None:
        """Task ids changed after `seq`, or None when `seq` is too old or unknown (send a full list)."""
        if seq < self.floor or seq > self.seq:
            return None
        return {task_id for s, task_id in self._log if s > seq}


def apply_delta(current: dict[str, dict], answer: dict) -> dict[str, dict]:
    """The agent's side: the assignment set after an answer (a full list or a delta)."""
    if answer.get("full", True):
        return {t["id"]: t for t in answer["tasks"]}
    result = dict(current)
    for task_id in answer.get("removed", []):
        result.pop(task_id, None)
    for task in answer.get("changed", []):
        result[task["id"]] = task
    return result

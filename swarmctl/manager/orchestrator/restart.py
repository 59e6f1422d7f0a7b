"""The restart policy: whether, and when, a slot whose task ended gets a new task.

Restarts are counted on the tasks themselves, not from the history that is kept: a task made by a
restart carries `attempt` (the restarts of its slot so far, under this spec and within the window) and
`attempt_window_start` (when that window began). So `--restart-max-attempts 10` stops after 10 restarts
even though only `task_history_limit` (5) ended tasks are kept. A new spec starts the count again,
as does a window that has passed; moving a task off a lost node is not a restart and keeps the count.
"""

from __future__ import annotations

from swarmctl.state.records import new_task


def attempts(service: dict, ended: dict, now: float) -> tuple[int, float]:
    """(restarts counted so far, start of their window) for the slot whose current task is `ended`."""
    if ended.get("spec_version") != service["spec_version"]:
        return 0, now
    window = service["spec"]["task"]["restart_policy"].get("window") or 0
    count = ended.get("attempt") or 0
    start = ended.get("attempt_window_start")
    if start is None:
        start = ended.get("created_at") or ended["status"].get("timestamp") or now
    if window and now - start > window:
        return 0, now
    return count, start


def decide(service: dict, ended: dict, now: float) -> tuple[bool, bool]:
    """(restart at all, restart now) for a slot whose live task ended."""
    policy = service["spec"]["task"]["restart_policy"]
    state = ended["status"]["state"]
    condition = policy.get("condition", "any")
    if condition == "none":
        return False, False
    if condition == "on-failure" and state not in ("failed", "rejected"):
        return False, False
    if policy.get("max_attempts"):
        count, _start = attempts(service, ended, now)
        if count >= policy["max_attempts"]:
            return False, False
    return True, now - (ended["status"].get("timestamp") or 0) >= (policy.get("delay") or 0)


def restarted(service: dict, ended: dict, slot: int | None, node_id: str | None, now: float) -> dict:
    """The task that restarts `ended`: one more attempt in the window."""
    count, start = attempts(service, ended, now)
    task = new_task(service, slot, node_id, now)
    task["attempt"] = count + 1
    task["attempt_window_start"] = start
    return task


def moved(service: dict, previous: dict, slot: int | None, node_id: str | None, now: float) -> dict:
    """A task that replaces `previous` for another reason than its end (node lost): the count carries over."""
    task = new_task(service, slot, node_id, now)
    if previous.get("spec_version") == service["spec_version"] and previous.get("attempt"):
        task["attempt"] = previous["attempt"]
        task["attempt_window_start"] = previous.get("attempt_window_start")
    return task

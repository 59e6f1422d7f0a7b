"""The updater: rolls a replicated service's tasks onto a new spec version a few slots at a time, with
swarmkit's semantics (manager/orchestrator/update/updater.go).

It runs inside the orchestrator's pass, after the replicated planner has sorted the service's slots (see
replicated.py): one pass decides a slot's fate, so the planner and the updater never both write the same
slot, and the pass's soft if_version ops drop a decision made on stale data. What it keeps between passes is
on the records themselves: the service's `update_status` (Docker's UpdateStatus plus the spec version it is
about), the tasks' spec versions and times (`created_at`, `status.running_at`, `status.timestamp`), and
`update_pending` on an old task that was stopped to be replaced (stop-first).

- At most `parallelism` slots are in transition at once (0: all); after a slot's new task runs, the next one
  starts only `delay` seconds after the last one that came up.
- stop-first: the old task is told to stop, and the new one is created in its slot once the old one has
  finished; start-first: the new task is created beside the old one, which stops once the new one runs.
  A task runs only once it is healthy (the agent reports `running` after the healthcheck passes).
- A failure is a new task that failed before running, or within `monitor` seconds after, or that was not
  running within `healthy_deadline`. When failures / updated slots > `max_failure_ratio`, the failure action
  runs: pause (the update stays paused until the next update or rollback), continue, or rollback (back to
  the previous spec, rolled out with the rollback config). The progress deadline does the same for an update
  that has not completed in time. Every stop says why in `update_status.message`.
- Completed once no slot is on an old version, none is in transition, and `monitor` seconds have passed
  since the last new task came up.
"""

from __future__ import annotations

from swarmctl.manager.orchestrator.common import Plan, create, shutdown
from swarmctl.state.records import PREVIOUS_SPECS, default_update_config, is_terminal, new_task

ROLLING = ("updating", "rollback_started")
PAUSED = ("paused", "rollback_paused")
FAILED_STATES = ("failed", "rejected")


def fmt_duration(seconds: float) -> str:
    """Go's time.Duration text, as Docker prints durations: 5m0s, 1m30s, 10s, 500ms."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{secs:g}s"
    if minutes or hours:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return text


def config_for(service: dict, status: dict | None) -> dict:
    rollback = bool(status) and status["state"].startswith("rollback")
    key = "rollback_config" if rollback else "update_config"
    config = default_update_config(rollback)
    config.update(service["spec"].get(key) or {})
    return config


def current_status(service: dict) -> dict | None:
    """The service's update status, if it is about the service's current spec version."""
    status = service.get("update_status")
    if status and status.get("spec_version") == service["spec_version"]:
        return status
    return None


def _status_op(service: dict, status: dict) -> dict:
    return {"op": "patch", "kind": "service", "id": service["id"], "soft": True,
            "if_version": service.get("version"), "set": [(["update_status"], status)]}


def _rollback_op(service: dict, status: dict, message: str, now: float) -> dict | None:
    """Back to the previous spec, as `service rollback` does (services.rollback); None without one."""
    from swarmctl.manager.secrets import ref_claims
    from swarmctl.manager.services import new_update_status, port_claims, previous_specs
    kept = previous_specs(service)
    if not kept:
        return None
    version = service["spec_version"] + 1
    new_status = dict(new_update_status("rollback_started", message, version, now), cause=message)
    return {"op": "patch", "kind": "service", "id": service["id"], "soft": True,
            "if_version": service.get("version"),
            "set": [(["spec"], kept[-1]), (["previous_spec"], kept[-2] if len(kept) > 1 else None),
                    (["previous_specs"], kept[:-1][-PREVIOUS_SPECS:]), (["spec_version"], version),
                    (["claims"], port_claims(kept[-1].get("endpoint"))), (["update_status"], new_status),
                    # what it claims of secrets and configs follows the spec (no precondition here: a secret
                    # removed since makes the rolled-back tasks fail with "secret ... not found")
                    (["refs"], ref_claims(kept[-1].get("task") or {}))]}


def _key(task: dict):
    """A task's place: its slot (replicated) or its node (global)."""
    return task["slot"] if task.get("slot") is not None else task.get("node_id")


def _new(service: dict, key, now: float) -> dict:
    if service["spec"]["mode"] == "global":
        return new_task(service, None, key, now)
    return new_task(service, key, None, now)


class SlotUpdate:
    """What the replicated planner tells the updater about one pass over a service's slots."""

    def __init__(self):
        self.outdated: list[tuple[int, dict]] = []   # (slot, running task on an older spec) to replace
        self.in_flight = 0                           # slots in transition (old stopping, new not running yet)
        self.new_tasks: list[dict] = []              # the service's tasks on the current spec version


def current_like(service: dict, task: dict) -> bool:
    return task["spec_version"] == service["spec_version"] or clean(service, task)


def clean(service: dict, task: dict) -> bool:
    """Whether a task of an older spec version runs exactly what the service asks now (swarmkit's
    !IsTaskDirty): the same task spec, and host ports for the same targets."""
    if task["spec"] != service["spec"]["task"]:
        return False
    wanted = {(p["target_port"], p["protocol"], p.get("publish_mode") or "ingress")
              for p in (service["spec"].get("endpoint") or {}).get("ports") or []}
    return {(p["target"], p["protocol"], p["mode"]) for p in task.get("ports") or []} == wanted


def adopt(task: dict, version: int) -> dict:
    """The op that gives a clean task of an older version the service's version instead of replacing it."""
    return {"op": "patch", "kind": "task", "id": task["id"], "soft": True, "if_version": task.get("version"),
            "set": [(["spec_version"], version)]}


def sort_live(service: dict, live: list[dict], update: SlotUpdate, p: Plan) -> tuple[dict | None, list[dict]]:
    """One slot's (or node's) live tasks, oldest first: (its current task, the others to stop). A start-first
    pair (an update, or a rebalance move) keeps the old task until the new one runs; otherwise the slot keeps
    the task that runs what the service asks (a rollback can leave an old task that does beside a newer one
    that does not), running first, newest first."""
    up = [t for t in live if not is_terminal(t["status"]["state"])]
    if len(up) >= 2 and current_like(service, up[-1]):
        olds = [t for t in up[:-1] if up[-1].get("replaces") == t["id"] or not current_like(service, t)]
        if olds:
            old, new = olds[-1], up[-1]
            if new["status"]["state"] == "running":
                moved = new.get("replaces") == old["id"]
                p.ops.append(shutdown(old, "moved by rebalance" if moved else "replaced by an updated task"))
            else:
                update.in_flight += 1
            return new, [t for t in live if t is not old and t is not new]
    if up:
        keep = next((t for t in reversed(up) if current_like(service, t) and t["status"]["state"] == "running"),
                    None) or next((t for t in reversed(up) if current_like(service, t)), None) or up[-1]
        return keep, [t for t in live if t is not keep]
    return (live[-1] if live else None), live[:-1]


def failures(service: dict, status: dict, config: dict, new_tasks: list[dict], now: float) -> list[tuple[dict, str]]:
    """The update's failed new tasks, with why: failed before running or within `monitor`, or not running
    within `healthy_deadline`."""
    since = status.get("started_at") or 0
    out = []
    for t in new_tasks:
        if (t.get("created_at") or 0) < since - 1e-6:
            continue
        st = t["status"]
        if st["state"] in FAILED_STATES:
            ran = st.get("running_at")
            if ran is None or (st.get("timestamp") or now) - ran <= config["monitor"]:
                out.append((t, st.get("err") or st.get("message") or st["state"]))
        elif t["desired_state"] == "running" and not is_terminal(st["state"]) and st["state"] != "running" \
                and now - (t.get("created_at") or now) > config["healthy_deadline"]:
            out.append((t, f"not running within the healthy deadline ({fmt_duration(config['healthy_deadline'])})"))
    return out


def plan_update(service: dict, slots: SlotUpdate, p: Plan) -> None:
    """Decide this pass's update steps for a replicated service (see the module docstring)."""
    status = current_status(service)
    if status is None:
        if not slots.outdated and not slots.in_flight:
            return
        # tasks on an old spec with no update recorded (a record from before, or a restore): update them
        status = {"state": "updating", "message": "update in progress", "started_at": p.now, "completed_at": None,
                  "spec_version": service["spec_version"]}
        p.ops.append(_status_op(service, status))
    state = status["state"]
    if state not in ROLLING:
        return  # paused (until the next update or rollback), or completed
    config = config_for(service, status)
    rollback = state == "rollback_started"
    p.waiting.add(service["id"])  # delays, monitor windows and deadlines: look again soon

    failed = failures(service, status, config, slots.new_tasks, p.now)
    updated = len({_key(t) for t in slots.new_tasks if (t.get("created_at") or 0) >= (status["started_at"] or 0)})
    reason = None
    if failed and len(failed) / max(1, updated) > config["max_failure_ratio"]:
        task, why = failed[-1]
        reason = f"due to failure or early termination of task {task['id']}: {why}"
    elif p.now - (status.get("started_at") or p.now) > config["progress_deadline"]:
        reason = f"because it did not complete within the progress deadline ({fmt_duration(config['progress_deadline'])})"
    if reason is not None and config["failure_action"] != "continue":
        what = "rollback" if rollback else "update"
        if config["failure_action"] == "rollback" and not rollback:
            op = _rollback_op(service, status, f"update rolled back {reason}", p.now)
            if op is not None:
                p.ops.append(op)
                return
        p.ops.append(_status_op(service, dict(status, state="rollback_paused" if rollback else "paused",
                                              message=f"{what} paused {reason}")))
        return

    limit = config["parallelism"] or len(slots.outdated) + slots.in_flight
    room = limit - slots.in_flight
    came_up = [t["status"].get("running_at") for t in slots.new_tasks
               if t["status"]["state"] == "running" and t["status"].get("running_at")
               and (t.get("created_at") or 0) >= (status["started_at"] or 0)]
    last_up = max(came_up) if came_up else None
    if room > 0 and config["delay"] and last_up is not None and p.now - last_up < config["delay"]:
        room = 0
    for slot, old in sorted(slots.outdated, key=lambda item: str(item[0]))[:max(0, room)]:
        p.tick()
        if config["order"] == "start-first":
            p.ops.append(create(_new(service, slot, p.now)))
        else:
            op = shutdown(old, "replaced by an updated task")
            op["set"] = list(op["set"]) + [(["update_pending"], service["spec_version"])]
            p.ops.append(op)
            if p.finished(old):  # never placed, or its node is gone: nothing to wait for
                p.ops.append(create(_new(service, slot, p.now)))
    if slots.outdated or slots.in_flight:
        return
    if last_up is not None and p.now - last_up < config["monitor"]:
        return  # watch the last ones for `monitor` seconds before calling it done
    done = "rollback_completed" if rollback else "completed"
    message = "update completed"
    if rollback:  # an automatic rollback keeps saying why it happened
        message = "rollback completed" + (f": {status['cause']}" if status.get("cause") else "")
    p.ops.append(_status_op(service, dict(status, state=done, completed_at=p.now, message=message)))

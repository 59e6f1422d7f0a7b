"""Replicated services: one live task per slot 1..replicas (swarmkit's replicated orchestrator).

A slot whose task ended is restarted per the restart policy (restart.py); a task on a node that is
down or drained is shut down and replaced. A running task built from an older spec is left to the updater
(updater.py), which replaces a few at a time: here a slot may hold two live tasks while a start-first update
brings up the new one, or none while a stop-first update waits for the old one to stop (`update_pending`).
Scale-down takes tasks from the nodes running the most tasks of the service first, dead and unplaced slots
before all.
"""

from __future__ import annotations

from collections import defaultdict

from swarmctl.manager.orchestrator import rebalance, restart, updater
from swarmctl.manager.orchestrator.common import Plan, by_created, create, shutdown
from swarmctl.manager.orchestrator.reaper import reap_groups
from swarmctl.state.records import is_terminal, new_task


def by_slot(tasks: list[dict]) -> dict[int, list[dict]]:
    """A service's tasks by slot, oldest first."""
    slots: dict[int, list[dict]] = defaultdict(list)
    for t in tasks:
        slots[t["slot"]].append(t)
    for slot_tasks in slots.values():
        if len(slot_tasks) > 1:
            slot_tasks.sort(key=by_created)
    return slots


def plan_replicated(service: dict, tasks: list[dict], p: Plan) -> None:
    slots = by_slot(tasks)
    p.tick()
    version = service["spec_version"]
    update = updater.SlotUpdate()
    update.new_tasks = [t for t in tasks if t["spec_version"] == version]
    live_slots: dict[int, dict] = {}  # slot -> its current task (desired running, maybe ended)
    for slot, slot_tasks in slots.items():
        p.tick()
        live = [t for t in slot_tasks if t["desired_state"] == "running"]
        current, extras = updater.sort_live(service, live, update, p)
        for extra in extras:  # never two live tasks for one slot
            p.ops.append(shutdown(extra, "duplicate task for slot" if not is_terminal(extra["status"]["state"])
                                  else ""))
        if current is None:
            pending = slot_tasks[-1] if slot_tasks else None
            if pending is not None and pending.get("update_pending") == version:
                # stop-first: the old task is stopping; its replacement comes in this slot once it has
                if p.finished(pending):
                    new = new_task(service, slot, None, p.now)
                    p.ops.append(create(new))
                    live_slots[slot] = new
                else:
                    live_slots[slot] = pending
                update.in_flight += 1
            continue
        if is_terminal(current["status"]["state"]):
            again, now_ok = restart.decide(service, current, p.now)
            if not again:  # the slot is done: its ended task stays current, nothing replaces it
                live_slots[slot] = current
                continue
            if not now_ok:  # waiting out the restart delay
                p.waiting.add(service["id"])
                live_slots[slot] = current
                continue
            p.ops.append(shutdown(current, ""))
            p.ops.append(create(restart.restarted(service, current, slot, None, p.now)))
        elif not p.node_usable(current.get("node_id")):
            p.ops.append(shutdown(current, "task moved: its node is down or drained"))
            p.ops.append(create(restart.moved(service, current, slot, None, p.now)))
        elif current["spec_version"] != version:
            if updater.clean(service, current):  # e.g. after a rollback to the spec it runs: keep it, as swarmkit does
                p.ops.append(updater.adopt(current, version))
            else:
                update.outdated.append((slot, current))  # the updater decides when
        elif current["status"]["state"] != "running" and any(t["spec_version"] != version for t in slot_tasks):
            update.in_flight += 1  # replaced by the update, not up yet
        live_slots[slot] = current
    want = service["spec"]["replicas"]
    if len(live_slots) > want:
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
            p.tick()
            slot, task = max(live_slots.items(), key=removal_priority)
            if task.get("node_id"):
                per_node[task["node_id"]] -= 1
            p.ops.append(shutdown(task, "scaled down"))
            del live_slots[slot]
    elif len(live_slots) < want:
        free = (s for s in range(1, want + len(slots) + 2) if s not in live_slots)
        for _ in range(want - len(live_slots)):
            p.tick()
            p.ops.append(create(new_task(service, next(free), None, p.now)))
    if update.in_flight:
        p.waiting.add(service["id"])  # a new task's coming up does not wake the orchestrator: look again soon
    updater.plan_update(service, update, p)
    if rebalance.wanted(service, p) and not update.outdated and len(live_slots) == want \
            and (updater.current_status(service) or {}).get("state") not in updater.ROLLING:
        if rebalance.plan_moves(service, live_slots, update.in_flight, p) and service.get("rebalance_request"):
            p.ops.append({"op": "patch", "kind": "service", "id": service["id"], "soft": True,
                          "if_version": service.get("version"), "set": [(["rebalance_request"], None)]})
    reap_groups(service["id"], slots.values(), p)

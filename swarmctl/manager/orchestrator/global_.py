"""Global services: one task on every ready, active node whose labels satisfy the constraints
(swarmkit's global orchestrator). History and restarts are kept per node."""

from __future__ import annotations

from collections import defaultdict

from swarmctl.manager.orchestrator import restart, updater
from swarmctl.manager.orchestrator.common import Plan, by_created, create, shutdown
from swarmctl.manager.orchestrator.reaper import reap_groups
from swarmctl.manager.scheduler import constraints
from swarmctl.state.records import is_terminal, new_task


def plan_global(service: dict, tasks: list[dict], p: Plan) -> None:
    parsed = constraints.parse_all(service["spec"]["task"]["placement"].get("constraints") or [])
    eligible = {nid for nid, n in p.nodes.items()
                if n["status"]["state"] == "ready" and n["spec"]["availability"] == "active"
                and all(c.matches(n) for c in parsed)}
    version = service["spec_version"]
    update = updater.SlotUpdate()
    update.new_tasks = [t for t in tasks if t["spec_version"] == version]
    by_node: dict[str, list[dict]] = defaultdict(list)
    for t in tasks:
        by_node[t["node_id"]].append(t)
    for node_id, node_tasks in by_node.items():
        p.tick()
        node_tasks.sort(key=by_created)
        live = [t for t in node_tasks if t["desired_state"] == "running"]
        node = p.nodes.get(node_id)
        keep = node is not None and node["spec"]["availability"] != "drain" and all(c.matches(node) for c in parsed)
        current, extras = updater.sort_live(service, live, update, p)
        for t in extras:
            p.ops.append(shutdown(t, "duplicate task for node" if not is_terminal(t["status"]["state"]) else ""))
        replacement = None
        if current is None and node_tasks and node_tasks[-1].get("update_pending") == version and keep:
            # stop-first: the old task is stopping; its replacement comes on this node once it has
            if p.finished(node_tasks[-1]) and node_id in eligible:
                p.ops.append(create(new_task(service, None, node_id, p.now)))
            update.in_flight += 1
            continue
        if current is not None and not keep:
            p.ops.append(shutdown(current, "node no longer eligible"))
            current = None
        elif current is not None and current["spec_version"] != version and not is_terminal(current["status"]["state"]):
            if updater.clean(service, current):
                p.ops.append(updater.adopt(current, version))
            else:
                update.outdated.append((node_id, current))  # the updater decides when
            continue
        elif current is not None and current["status"]["state"] != "running" and current["spec_version"] == version \
                and any(t["spec_version"] != version for t in node_tasks):
            update.in_flight += 1
        elif current is not None and is_terminal(current["status"]["state"]):
            again, now_ok = restart.decide(service, current, p.now)
            if again and not now_ok:
                p.waiting.add(service["id"])
            if not again or not now_ok:
                continue
            p.ops.append(shutdown(current, ""))
            replacement = restart.restarted(service, current, None, node_id, p.now)
            current = None
        if current is None and node_id in eligible:
            p.ops.append(create(replacement or new_task(service, None, node_id, p.now)))
    for node_id in eligible - set(by_node):
        p.ops.append(create(new_task(service, None, node_id, p.now)))
    if update.in_flight:
        p.waiting.add(service["id"])
    updater.plan_update(service, update, p)
    reap_groups(service["id"], by_node.values(), p)

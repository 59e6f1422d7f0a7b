"""Rebalancing (no Docker Swarm release has it, moby#24103): move a replicated service's tasks toward an even
spread over its eligible nodes, when nodes join, come back or become active.

`service create/update --rebalance auto|never` (unset: the swarm's `default_rebalance`, `never` unless set
with `swarm update --default-rebalance`); `service rebalance SERVICE` asks for one pass regardless
(`rebalance_request` on the service, cleared once balanced). With auto, every pass of the orchestrator over the
service checks: among the nodes the service may run on (ready, active, constraints met), when the counts of its
running tasks differ by more than 1, tasks on the busiest nodes are moved to the least busy ones, at most the
update config's `parallelism` at a time, start-first: the new task is created on the chosen node beside the old
one, which stops only once the new one runs (`replaces` names it; replicated.py keeps both meanwhile), so
capacity never drops. No move starts while one is in flight, while the service is being updated, or while
any of its tasks is not running: each move is decided on settled counts.
"""

from __future__ import annotations

from collections import Counter

from swarmctl.manager.orchestrator.common import Plan, create
from swarmctl.manager.scheduler import constraints as constraint_rules
from swarmctl.state.records import new_task

MODES = ("auto", "never")


def wanted(service: dict, p: Plan) -> bool:
    mode = service["spec"].get("rebalance") or p.default_rebalance or "never"
    return mode == "auto" or bool(service.get("rebalance_request"))


def eligible_nodes(service: dict, p: Plan) -> list[dict]:
    placement = service["spec"]["task"].get("placement") or {}
    try:
        rules = constraint_rules.parse_all(placement.get("constraints") or [])
    except constraint_rules.ConstraintError:
        return []
    return [n for n in p.nodes.values() if n["status"]["state"] == "ready" and n["spec"]["availability"] == "active"
            and all(r.matches(n) for r in rules)]


def plan_moves(service: dict, live_slots: dict[int, dict], in_flight: int, p: Plan) -> bool:
    """Add the moves of this pass; True when the service is balanced (or cannot be balanced further)."""
    tasks = list(live_slots.values())
    if in_flight or any(t["status"]["state"] != "running" or t.get("spec_version") != service["spec_version"]
                        for t in tasks):
        return False
    nodes = eligible_nodes(service, p)
    if len(nodes) < 2:
        return True
    cap = (service["spec"]["task"].get("placement") or {}).get("max_replicas_per_node") or 0
    counts = Counter({n["id"]: 0 for n in nodes})
    by_node: dict[str, list[tuple[int, dict]]] = {}
    for slot, t in sorted(live_slots.items()):
        if t.get("node_id") in counts:
            counts[t["node_id"]] += 1
            by_node.setdefault(t["node_id"], []).append((slot, t))
    config = service["spec"].get("update_config") or {}
    budget = config.get("parallelism", 1) or len(tasks)
    moves = []
    while len(moves) < budget:
        busiest = max(counts, key=lambda nid: (counts[nid], nid))
        lightest = min(counts, key=lambda nid: (counts[nid], nid))
        if counts[busiest] - counts[lightest] <= 1 or (cap and counts[lightest] + 1 > cap) \
                or not by_node.get(busiest):
            break
        slot, old = by_node[busiest].pop()
        counts[busiest] -= 1
        counts[lightest] += 1
        moves.append((slot, old, lightest))
    for slot, old, target in moves:
        p.tick()
        task = new_task(service, slot, target, p.now)
        task["replaces"] = old["id"]
        p.ops.append(create(task))
    return not moves

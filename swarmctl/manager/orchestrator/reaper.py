"""The task reaper: forgets tasks that have ended, in bounded batches (swarmkit's TaskReaper).

* per slot (replicated) or per node (global), ended tasks beyond the cluster's `task_history_limit`,
  oldest first; the slot's current task is never history, even when it ended and is not restarted;
* tasks of a removed service: stopped first (the planner asks them to shut down), deleted once ended;
* tasks of a removed node: deleted once they are no longer desired to run (their container cannot be
  asked about any more).
At most `Plan.reap_budget` deletes per pass; a service with more left is looked at again soon.
"""

from __future__ import annotations

from swarmctl.manager.orchestrator.common import Plan, by_created, delete


def _spend(p: Plan, service_id: str, tasks: list[dict]) -> None:
    for t in tasks:
        if p.reap_budget <= 0:
            p.waiting.add(service_id)
            return
        p.reap_budget -= 1
        p.ops.append(delete(t))


def reap_groups(service_id: str, groups, p: Plan) -> None:
    """Delete ended tasks beyond the history limit of each slot (or node), and those of removed nodes."""
    limit = max(0, p.history_limit)
    for group in groups:
        p.tick()
        done = [t for t in group if t["desired_state"] != "running" and p.finished(t)]
        if not done:
            continue
        gone = [t for t in done if t.get("node_id") and t["node_id"] not in p.nodes]
        if gone:
            gone_ids = {t["id"] for t in gone}
            done = [t for t in done if t["id"] not in gone_ids]
            _spend(p, service_id, gone)
        if len(done) > limit:
            done.sort(key=by_created)
            _spend(p, service_id, done[:len(done) - limit])


def reap_orphans(service_id: str, tasks: list[dict], p: Plan) -> None:
    """The tasks of a removed service: those that ended (or whose node is gone or down) are deleted."""
    ended = [t for t in tasks if t["desired_state"] != "running" and
             (p.finished(t) or p.nodes.get(t["node_id"], {}).get("status", {}).get("state") == "down")]
    _spend(p, service_id, ended)

"""Service control: create, update, scale, remove, and the views of services and their tasks.

Only the service record is written here; the orchestrator turns it into tasks. Every spec is
checked before it is stored, so a bad request changes nothing.
"""

from __future__ import annotations

import copy

from swarmctl.errors import BadRequest, Conflict, NotFound
from swarmctl.manager.scheduler import constraints
from swarmctl.manager.writes import commit
from swarmctl.state.raft import RaftStore
from swarmctl.state.records import (MODES, RESTART_CONDITIONS, STRATEGIES, default_task_spec, is_terminal, new_id,
                                    task_name)

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def resolve_service(store: RaftStore, ref: str) -> dict:
    services = store.list("service")
    for s in services:
        if s["id"] == ref or s["spec"]["name"] == ref:
            return s
    matches = [s for s in services if ref and s["id"].startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    raise NotFound(f"service {ref} not found")


def _merge(base: dict, patch: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("env", "labels"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate_spec(spec: dict) -> dict:
    """A complete, checked service spec; BadRequest names the first problem."""
    name = spec.get("name")
    if not name or not set(name) <= NAME_CHARS or name[0] in "-_.":
        raise BadRequest(f"invalid service name {name!r}: use letters, digits, '-', '_' and '.'")
    if spec.get("mode") not in MODES:
        raise BadRequest(f"invalid mode {spec.get('mode')!r}: must be replicated or global")
    replicas = spec.get("replicas")
    if spec["mode"] == "replicated":
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise BadRequest(f"invalid replicas {replicas!r}: must be a whole number >= 0")
    else:
        if replicas not in (None, 0) and spec.get("replicas_set"):
            raise BadRequest("replicas can only be used with replicated mode")
        spec["replicas"] = None
    spec.pop("replicas_set", None)
    task = spec["task"]
    if not task.get("image") or not isinstance(task["image"], str):
        raise BadRequest("an image is required")
    placement = task["placement"]
    try:
        constraints.parse_all(placement.get("constraints") or [])
    except constraints.ConstraintError as exc:
        raise BadRequest(str(exc)) from None
    if placement.get("strategy") not in (None, *STRATEGIES):
        raise BadRequest(f"invalid placement strategy {placement['strategy']!r}: use spread, binpack or random")
    if (placement.get("max_replicas_per_node") or 0) < 0:
        raise BadRequest("max replicas per node must be >= 0")
    for kind in ("reservations", "limits"):
        for key in ("cpus", "memory"):
            value = task["resources"][kind].get(key) or 0
            if value < 0:
                raise BadRequest(f"{kind} {key} must be >= 0")
    policy = task["restart_policy"]
    if policy.get("condition") not in RESTART_CONDITIONS:
        raise BadRequest(f"invalid restart condition {policy.get('condition')!r}: use none, on-failure or any")
    for key in ("delay", "window", "max_attempts"):
        if (policy.get(key) or 0) < 0:
            raise BadRequest(f"restart {key} must be >= 0")
    if task.get("network_mode") not in ("host", "none"):
        raise BadRequest("network mode must be host or none")
    for key in (task.get("env") or {}):
        if not key or "=" in key:
            raise BadRequest(f"invalid environment variable name {key!r}")
    return spec


def build_spec(body: dict) -> dict:
    task = _merge(default_task_spec(), body.get("task") or {})
    spec = {"name": body.get("name"), "labels": dict(body.get("labels") or {}),
            "mode": body.get("mode") or "replicated", "replicas": body.get("replicas"), "task": task,
            "replicas_set": body.get("replicas") is not None}
    if spec["replicas"] is None and spec["mode"] == "replicated":
        spec["replicas"] = 1
    return validate_spec(spec)


async def create(store: RaftStore, body: dict, request_id: str | None = None) -> dict:
    spec = build_spec(body)
    if not spec["name"]:
        raise BadRequest("a service name is required")
    if any(s["spec"]["name"] == spec["name"] for s in store.list("service")):
        raise Conflict(f"service {spec['name']} already exists")
    service_id = new_id()
    record = {"id": service_id, "spec": spec, "spec_version": 1, "previous_spec": None}
    try:
        await commit(store, [{"op": "create", "kind": "service", "id": service_id, "record": record,
                              "unique": "spec.name"}], request_id=request_id)
    except Conflict as exc:
        raise Conflict(f"service {spec['name']} already exists" if "already exists" in str(exc) else str(exc))
    return service_view(store, store.get("service", service_id))


async def update(store: RaftStore, ref: str, changes: dict, request_id: str | None = None) -> dict:
    """Apply a partial spec (same shape as create's body); returns the service and the changed fields."""
    service = resolve_service(store, ref)
    old = service["spec"]
    body = {"name": old["name"], "labels": old["labels"], "mode": old["mode"], "replicas": old["replicas"],
            "task": old["task"]}
    if "mode" in changes and changes["mode"] != old["mode"]:
        raise BadRequest("the mode of a service cannot be changed")
    if "name" in changes and changes["name"] != old["name"]:
        raise BadRequest("a service cannot be renamed")
    force = bool(changes.pop("force", False))
    body = _merge(body, {k: v for k, v in changes.items() if k != "task"})
    if changes.get("task"):
        body["task"] = _merge(old["task"], changes["task"])
    if old["mode"] == "global" and changes.get("replicas") is not None:
        raise BadRequest("replicas can only be used with replicated mode")
    new = validate_spec(dict(body, replicas_set=False))
    if force:
        new["task"]["force_update"] = old["task"].get("force_update", 0) + 1
    changed = sorted(k for k in ("labels", "replicas") if new[k] != old[k])
    changed += sorted(f"task.{k}" for k in new["task"] if new["task"][k] != old["task"].get(k))
    if not changed:
        return {"service": service_view(store, service), "changes": []}
    sets = [(["spec"], new), (["previous_spec"], old)]
    if any(c.startswith("task.") for c in changed):
        sets.append((["spec_version"], service["spec_version"] + 1))
    await commit(store, [{"op": "patch", "kind": "service", "id": service["id"], "set": sets}],
                 request_id=request_id)
    return {"service": service_view(store, store.get("service", service["id"])), "changes": changed}


async def remove(store: RaftStore, ref: str) -> None:
    service = resolve_service(store, ref)
    ops = [{"op": "delete", "kind": "service", "id": service["id"]}]
    for task in store.find("task", "service_id", service["id"]):
        if task["desired_state"] == "running":
            ops.append({"op": "patch", "kind": "task", "id": task["id"], "missing_ok": True,
                        "set": [(["desired_state"], "shutdown"), (["status", "message"], "service removed")]})
    await commit(store, ops)


def service_view(store: RaftStore, service: dict) -> dict:
    tasks = store.find("task", "service_id", service["id"])
    running = sum(1 for t in tasks if t["desired_state"] == "running" and t["status"]["state"] == "running")
    if service["spec"]["mode"] == "global":
        desired = sum(1 for t in tasks if t["desired_state"] == "running")
    else:
        desired = service["spec"]["replicas"]
    view = dict(service)
    view["replicas_status"] = {"running": running, "desired": desired}
    return view


def task_view(store: RaftStore, task: dict) -> dict:
    view = dict(task)
    view["name"] = task_name(task)
    node = store.get("node", task["node_id"]) if task.get("node_id") else None
    view["node_name"] = node["description"]["hostname"] if node else None
    return view


def list_tasks(store: RaftStore, service: dict | None = None) -> list[dict]:
    tasks = store.find("task", "service_id", service["id"]) if service else store.list("task")
    tasks.sort(key=lambda t: (t["service_name"], t["slot"] or 0, t["node_id"] or "",
                              -(t.get("created_at") or 0)))
    return [task_view(store, t) for t in tasks]


def converged(store: RaftStore, service: dict) -> dict:
    """Progress of a service towards its spec, for the CLI's wait."""
    tasks = [t for t in store.find("task", "service_id", service["id"])
             if t["desired_state"] == "running" and t["spec_version"] == service["spec_version"]]
    view = service_view(store, service)
    failures = [t for t in store.find("task", "service_id", service["id"])
                if t["spec_version"] == service["spec_version"] and t["status"]["state"] in ("failed", "rejected")]
    pending = [t["status"]["message"] for t in tasks if t["status"]["state"] == "pending"
               and t["status"]["message"].startswith("no suitable node")]
    running = sum(1 for t in tasks if t["status"]["state"] == "running")
    return {"running": running, "desired": view["replicas_status"]["desired"],
            "spec_version": service["spec_version"], "failed_count": len(failures),
            "failed": [{"task": task_name(t), "error": t["status"]["err"] or t["status"]["message"]}
                       for t in failures[-5:]],
            "pending": pending[:1],
            "ended": sum(1 for t in tasks if is_terminal(t["status"]["state"]))}

"""Service control: create, update, scale, remove, and the views of services and their tasks.

Only the service record is written here; the orchestrator turns it into tasks. Every spec is
checked before it is stored, so a bad request changes nothing.
"""

from __future__ import annotations

import copy
import json
import re
import time

from swarmctl.api import limits
from swarmctl.errors import BadRequest, Conflict, NotFound, OutOfSequence
from swarmctl.manager import container_options, secrets
from swarmctl.manager.idempotent import derived_id, run_once
from swarmctl.manager.scheduler import constraints, preferences
from swarmctl.mesh import ports as mesh_ports
from swarmctl.agent import templates
from swarmctl.state.raft import RaftStore
from swarmctl.state.records import (HEALTHCHECK_DEFAULTS, MODES, PREVIOUS_SPECS, RESTART_CONDITIONS,
                                    ROLLBACK_FAILURE_ACTIONS, STRATEGIES, UPDATE_FAILURE_ACTIONS, UPDATE_ORDERS,
                                    default_task_spec, default_update_config,
                                    is_terminal, new_id, task_name)

# A request without a version is planned again on the fresh record this often when a concurrent write
# changed the service between planning and commit (each round, at least one of the racing writes wins).
UNVERSIONED_RETRIES = 20
PROGRESS_SLOTS = 100  # slots listed in a progress answer (a larger service shows the overall line only)

_IMAGE = re.compile(limits.IMAGE_PATTERN)


def resolve_service(store: RaftStore, ref: str) -> dict:
    services = store.list("service")
    for s in services:
        if s["id"] == ref or s["spec"]["name"] == ref:
            return s
    matches = [s for s in services if ref and s["id"].startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    raise NotFound(f"service {ref} not found")


# task fields a change replaces as a whole (maps whose keys a client removes by leaving them out)
_WHOLE = ("env", "labels", "healthcheck", "sysctls", "hosts", "log_driver")
# task fields where null, empty and absent are the same (the engine's default)
_EMPTY_SAME = ("secrets", "configs", "mounts", "cap_add", "cap_drop", "sysctls", "ulimits", "dns", "dns_options",
               "hosts", "groups", "dns_search", "labels")


def _merge(base: dict, patch: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in _WHOLE:
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check_update_config(config: dict | None, what: str, actions: tuple) -> dict:
    """A complete update (or rollback) config; Docker's defaults for what is missing (older records too)."""
    out = _merge(default_update_config(what == "rollback"), config or {})
    if not isinstance(out["parallelism"], int) or isinstance(out["parallelism"], bool) or out["parallelism"] < 0:
        raise BadRequest(f"invalid {what} parallelism {out['parallelism']!r}: must be a whole number >= 0")
    if out["order"] not in UPDATE_ORDERS:
        raise BadRequest(f"invalid {what} order {out['order']!r}: use stop-first or start-first")
    if out["failure_action"] not in actions:
        raise BadRequest(f"invalid {what} failure action {out['failure_action']!r}: use "
                         + (", ".join(actions[:-1]) + " or " + actions[-1]))
    for key in ("delay", "monitor"):
        if not isinstance(out[key], (int, float)) or out[key] < 0:
            raise BadRequest(f"invalid {what} {key} {out[key]!r}: must be a duration >= 0")
    for key in ("healthy_deadline", "progress_deadline"):
        if not isinstance(out[key], (int, float)) or out[key] <= 0:
            raise BadRequest(f"invalid {what} {key.replace('_', ' ')} {out[key]!r}: must be a duration > 0")
    ratio = out["max_failure_ratio"]
    if not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        raise BadRequest(f"invalid {what} max failure ratio {ratio!r}: must be between 0 and 1")
    return out


def validate_spec(spec: dict) -> dict:
    """A complete, checked service spec; BadRequest names the first problem."""
    name = spec.get("name")
    if not name or not isinstance(name, str):
        raise BadRequest("meta: name must be provided")
    if len(name) > limits.MAX_NAME:
        raise BadRequest(f"invalid service name {name[:limits.MAX_NAME]!r}...: {limits.NAME_LENGTH_MESSAGE}")
    if not re.match(limits.NAME_PATTERN, name):
        raise BadRequest(f"invalid service name {name!r}: {limits.NAME_MESSAGE}")
    if spec.get("mode") not in MODES:
        raise BadRequest(f"invalid mode {spec.get('mode')!r}: must be replicated or global")
    replicas = spec.get("replicas")
    if spec["mode"] == "replicated":
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise BadRequest(f"invalid replicas {replicas!r}: must be a whole number >= 0")
        if replicas > limits.MAX_REPLICAS:
            raise BadRequest(f"invalid replicas {replicas}: at most {limits.MAX_REPLICAS} replicas per service")
    else:
        if replicas not in (None, 0) and spec.get("replicas_set"):
            raise BadRequest("replicas can only be used with replicated mode")
        spec["replicas"] = None
    spec.pop("replicas_set", None)
    task = spec["task"]
    if not task.get("image") or not isinstance(task["image"], str):
        raise BadRequest("an image is required")
    if not _IMAGE.match(task["image"]):
        message = limits.IMAGE_MESSAGE
        if _IMAGE.match(task["image"].lower()):
            message += ": repository name must be lowercase"
        raise BadRequest(f"{message}: {task['image']!r}")
    placement = task["placement"]
    try:
        constraints.parse_all(placement.get("constraints") or [])
    except constraints.ConstraintError as exc:
        raise BadRequest(str(exc)) from None
    try:
        preferences.parse_all(placement.get("preferences") or [])
    except preferences.PreferenceError as exc:
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
    task["healthcheck"] = check_healthcheck(task.get("healthcheck"))
    for key in (task.get("env") or {}):
        if not key or "=" in key:
            raise BadRequest(f"invalid environment variable name {key!r}")
    for key, value in (task.get("env") or {}).items():
        try:
            templates.check(value)
        except templates.TemplateError as exc:
            raise BadRequest(f"invalid value of environment variable {key}: {exc}") from None
    if task.get("hostname") is not None:
        if not isinstance(task["hostname"], str):
            raise BadRequest("hostname must be a string")
        try:
            templates.check(task["hostname"])
        except templates.TemplateError as exc:
            raise BadRequest(f"invalid hostname: {exc}") from None
    secrets.check_refs(task)  # task.secrets and task.configs: targets, owners, modes (ids: resolve_refs)
    for key in ("user", "working_dir"):
        if task.get(key) is not None and not isinstance(task[key], str):
            raise BadRequest(f"{key.replace('_', ' ')} must be a string")
    if task.get("labels") is not None and not (isinstance(task["labels"], dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in task["labels"].items())):
        raise BadRequest("container labels must map strings to strings")
    if task.get("dns_search") is not None and not (isinstance(task["dns_search"], list) and all(
            isinstance(d, str) and d for d in task["dns_search"])):
        raise BadRequest("dns search must be a list of domain names")
    container_options.check(task)
    if spec.get("rebalance") not in (None, "auto", "never"):
        raise BadRequest(f"invalid rebalance {spec['rebalance']!r}: use auto or never")
    for key, actions in (("update_config", UPDATE_FAILURE_ACTIONS), ("rollback_config", ROLLBACK_FAILURE_ACTIONS)):
        spec[key] = _check_update_config(spec.get(key), key.split("_")[0], actions)
    try:
        spec["endpoint"] = mesh_ports.check_endpoint(spec.get("endpoint"))
    except mesh_ports.PortError as exc:
        raise BadRequest(str(exc)) from None
    size = len(json.dumps(task))
    if size > limits.MAX_TASK_SPEC_BYTES:
        raise BadRequest(f"the task spec is {size} bytes as JSON, more than the limit of {limits.MAX_TASK_SPEC_BYTES} "
                         "(it is copied into every task)")
    return spec


_HEALTH_TEST_FORMS = 'expected ["CMD-SHELL", command], ["CMD", arg, ...], ["NONE"] or [] (the image\'s test)'


def check_healthcheck(health: dict | None) -> dict | None:
    """The task's healthcheck with Docker's defaults filled in, or None (the image's HEALTHCHECK applies).

    `test` is Docker's form: ["CMD-SHELL", command], ["CMD", arg, ...], ["NONE"] (the image's check turned off)
    or [] (the image's test, with these timings). Durations are seconds; 0 leaves the engine's default, as in
    Docker, and anything else must be at least 1ms (swarmkit's rule)."""
    if health is None:
        return None
    if not isinstance(health, dict):
        raise BadRequest("healthcheck must be an object or null")
    unknown = sorted(set(health) - {"test", *HEALTHCHECK_DEFAULTS})
    if unknown:
        raise BadRequest(f"unknown healthcheck setting {unknown[0]!r}")
    test = health.get("test")
    test = [] if test is None else test
    if not isinstance(test, list) or not all(isinstance(word, str) for word in test):
        raise BadRequest(f"invalid healthcheck test {test!r}: {_HEALTH_TEST_FORMS}")
    if test and not (test == ["NONE"] or (test[0] == "CMD-SHELL" and len(test) == 2 and test[1].strip())
                     or (test[0] == "CMD" and len(test) > 1 and test[1])):
        raise BadRequest(f"invalid healthcheck test {test!r}: {_HEALTH_TEST_FORMS}")
    out = {"test": list(test)}
    for key, default in HEALTHCHECK_DEFAULTS.items():
        value = health.get(key)
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise BadRequest(f"invalid healthcheck {key} {value!r}: expected a number")
        if key == "retries":
            if value < 0:
                raise BadRequest("healthcheck retries cannot be negative")
            if value != int(value):
                raise BadRequest(f"invalid healthcheck retries {value!r}: expected a whole number")
            out[key] = int(value)
            continue
        if value < 0:
            raise BadRequest(f"healthcheck {key} cannot be negative")
        if 0 < value < 0.001:
            raise BadRequest(f"healthcheck {key} cannot be less than 1ms")
        if value > limits.MAX_DURATION:
            raise BadRequest(f"healthcheck {key} is too long: at most {limits.MAX_DURATION:g} seconds")
        out[key] = float(value)
    if test == ["NONE"] and any(out[key] != default for key, default in HEALTHCHECK_DEFAULTS.items()):
        raise BadRequest("--no-healthcheck conflicts with --health-* options: "
                         "a healthcheck with test [\"NONE\"] takes no other settings")
    return out


def build_spec(body: dict) -> dict:
    task = _merge(default_task_spec(), body.get("task") or {})
    spec = {"name": body.get("name"), "labels": dict(body.get("labels") or {}),
            "mode": body.get("mode") or "replicated", "replicas": body.get("replicas"), "task": task,
            "replicas_set": body.get("replicas") is not None, "endpoint": body.get("endpoint"),
            "update_config": _merge(default_update_config(), body.get("update_config") or {}),
            "rollback_config": _merge(default_update_config(True), body.get("rollback_config") or {}),
            "rebalance": body.get("rebalance")}
    if spec["replicas"] is None and spec["mode"] == "replicated":
        spec["replicas"] = 1
    return validate_spec(spec)


async def create(store: RaftStore, body: dict, request_id: str | None = None) -> dict:
    """Create a service; a retry with the same request id returns the same service."""
    spec = build_spec(body)
    name = spec["name"]
    service_id = derived_id(request_id, "service") if request_id else new_id()

    def plan():
        services = store.list("service")
        if any(s["spec"]["name"] == name for s in services):
            raise Conflict(f"service {name} already exists")
        final = copy.deepcopy(spec)
        secrets.resolve_refs(store, final["task"])  # names to ids; an unknown one is refused
        final["endpoint"] = allocate_published(services, final["endpoint"], None)
        record = {"id": service_id, "spec": final, "spec_version": 1, "previous_spec": None,
                  "vip_index": free_vip_index(services), "claims": port_claims(final["endpoint"])}
        if secrets.ref_claims(final["task"]):
            record["refs"] = secrets.ref_claims(final["task"])
        return secrets.ref_asserts(final["task"]) + [
            {"op": "create", "kind": "service", "id": service_id, "record": record,
             "unique": ["spec.name", "claims"]}], \
            {"service_id": service_id}

    def answer(reply):
        service = store.get("service", reply["service_id"])
        if service is None:
            raise NotFound(f"service {name} was created by this request and has been removed since")
        return service_view(store, service)

    def on_error(result):
        error = result.get("error") or ""
        return Conflict(f"service {name} already exists" if "already exists" in error else error)

    return await run_once(store, "service.create", request_id, plan, answer, on_error=on_error,
                          retries=UNVERSIONED_RETRIES)


def _plan_update(service: dict, changes: dict, force: bool, store: RaftStore | None = None,
                 replace: bool = False) -> tuple[dict, list[str]]:
    """The new spec of a service after a partial spec (same shape as create's body), and what changed. With
    `replace`, `changes` is the whole new spec (create's body: what it leaves out takes the defaults), as
    Docker's ServiceUpdate; only the name, the mode and the task's force counter stay the service's. With
    `store`, the task's secret and config references are resolved to ids."""
    changes = dict(changes)
    replace = bool(changes.pop("replace", False)) or replace
    old = service["spec"]
    if "mode" in changes and changes["mode"] != old["mode"]:
        raise BadRequest("the mode of a service cannot be changed")
    if "name" in changes and changes["name"] != old["name"]:
        raise BadRequest("a service cannot be renamed")
    if old["mode"] == "global" and changes.get("replicas") is not None:
        raise BadRequest("replicas can only be used with replicated mode")
    if replace:
        new = build_spec(dict(changes, name=old["name"], mode=old["mode"]))
        new["task"]["force_update"] = old["task"].get("force_update", 0)
    else:
        body = {"name": old["name"], "labels": old["labels"], "mode": old["mode"], "replicas": old["replicas"],
                "task": old["task"], "endpoint": old.get("endpoint"), "update_config": old.get("update_config"),
                "rollback_config": old.get("rollback_config"), "rebalance": old.get("rebalance")}
        body = _merge(body, {k: v for k, v in changes.items()
                             if k not in ("task", "endpoint", "update_config", "rollback_config")})
        for key in ("update_config", "rollback_config"):
            if changes.get(key):
                body[key] = _merge(body.get(key) or {}, changes[key])
        if "endpoint" in changes:
            body["endpoint"] = copy.deepcopy(changes["endpoint"])
        if changes.get("task"):
            body["task"] = _merge(old["task"], changes["task"])
        new = validate_spec(dict(body, replicas_set=False))
    if store is not None:
        secrets.resolve_refs(store, new["task"])
    if force:
        new["task"]["force_update"] = old["task"].get("force_update", 0) + 1
    changed = sorted(k for k in ("labels", "replicas") if new[k] != old[k])
    if new.get("rebalance") != old.get("rebalance"):
        changed.append("rebalance")
    changed += [k for k in ("update_config", "rollback_config")
                if new[k] != _check_update_config(old.get(k), k.split("_")[0],
                                                  UPDATE_FAILURE_ACTIONS if k == "update_config"
                                                  else ROLLBACK_FAILURE_ACTIONS)]
    if new["endpoint"] != mesh_ports.check_endpoint(old.get("endpoint")):
        changed.append("endpoint")
    # keys of either spec: a list emptied (the last secret removed) leaves the new spec without its key
    changed += sorted(f"task.{k}" for k in set(new["task"]) | set(old["task"])
                      if new["task"].get(k) != old["task"].get(k)
                      and not (k in _EMPTY_SAME and not new["task"].get(k) and not old["task"].get(k)))
    return new, changed


async def update(store: RaftStore, ref: str, changes: dict, request_id: str | None = None,
                 version: int | None = None, scope: str = "service.update") -> dict:
    """Apply a partial spec (same shape as create's body); returns the service and the changed fields.

    With `version`, the service must still be at that version (else 409 "update out of sequence"). Without
    it, the change applies to the service as it is now. Either way the write commits only if the service is
    still the one planned from (if_version), so two updates never both succeed on the same version."""
    changes = dict(changes)
    force = bool(changes.pop("force", False))
    replace = bool(changes.pop("replace", False))

    def plan():
        service = resolve_service(store, ref)
        if version is not None and service.get("version") != version:
            raise OutOfSequence()
        new, changed = _plan_update(service, changes, force, store, replace=replace)
        if "endpoint" in changed:
            others = [s for s in store.list("service") if s["id"] != service["id"]]
            new["endpoint"] = allocate_published(others, new["endpoint"], service["spec"].get("endpoint"))
            if new["endpoint"] == service["spec"].get("endpoint"):
                changed.remove("endpoint")
        reply = {"service_id": service["id"], "changes": changed}
        if not changed:
            return None, reply
        sets = [(["spec"], new), (["previous_spec"], service["spec"]),
                (["previous_specs"], previous_specs(service) + [service["spec"]])]
        sets[-1] = (["previous_specs"], sets[-1][1][-PREVIOUS_SPECS:])
        if any(c.startswith("task.") or c == "endpoint" for c in changed):  # tasks get their ports anew
            sets.append((["spec_version"], service["spec_version"] + 1))
            sets.append((["update_status"], new_update_status("updating", "update in progress",
                                                              service["spec_version"] + 1)))
        patch = {"op": "patch", "kind": "service", "id": service["id"], "if_version": service["version"],
                 "set": sets}
        if "endpoint" in changed:
            sets.append((["claims"], port_claims(new["endpoint"])))
            patch["unique"] = "claims"
        if secrets.ref_claims(new["task"]) != (service.get("refs") or []):
            sets.append((["refs"], secrets.ref_claims(new["task"])))
        return secrets.ref_asserts(new["task"]) + [patch], reply

    def answer(reply):
        service = store.get("service", reply["service_id"])
        if service is None:
            raise NotFound(f"service {ref} not found")
        return {"service": service_view(store, service), "changes": reply["changes"]}

    return await run_once(store, scope, request_id, plan, answer,
                          retries=0 if version is not None else UNVERSIONED_RETRIES)


def previous_specs(service: dict) -> list[dict]:
    """The service's earlier specs, oldest first (at most PREVIOUS_SPECS); records from before the list was
    kept have only `previous_spec`."""
    kept = service.get("previous_specs")
    if kept is None:
        return [service["previous_spec"]] if service.get("previous_spec") else []
    return list(kept)


def new_update_status(state: str, message: str, spec_version: int, now: float | None = None) -> dict:
    """Docker's UpdateStatus: state (updating, paused, completed, rollback_started, rollback_paused,
    rollback_completed), a message that says why, started and completed times; and the spec version it
    is about (the orchestrator's updater works on it, manager/orchestrator/updater.py)."""
    return {"state": state, "message": message, "started_at": now if now is not None else time.time(),
            "completed_at": None, "spec_version": spec_version}


async def rollback(store: RaftStore, ref: str, request_id: str | None = None) -> dict:
    """`service rollback`: back to the previous spec, rolled out with the rollback config."""
    def plan():
        service = resolve_service(store, ref)
        kept = previous_specs(service)
        if not kept:
            raise BadRequest(f"service {service['spec']['name']} does not have a previous spec")
        spec = copy.deepcopy(kept[-1])
        secrets.resolve_refs(store, spec["task"])  # a secret removed since: "secret not found: NAME"
        others = [s for s in store.list("service") if s["id"] != service["id"]]
        spec["endpoint"] = allocate_published(others, mesh_ports.check_endpoint(spec.get("endpoint")),
                                              service["spec"].get("endpoint"))
        version = service["spec_version"] + 1
        sets = [(["spec"], spec), (["previous_spec"], kept[-2] if len(kept) > 1 else None),
                (["previous_specs"], kept[:-1]), (["spec_version"], version),
                (["claims"], port_claims(spec.get("endpoint"))),
                (["update_status"], new_update_status("rollback_started", "manually requested rollback", version)),
                (["refs"], secrets.ref_claims(spec["task"]))]
        return secrets.ref_asserts(spec["task"]) + [
            {"op": "patch", "kind": "service", "id": service["id"], "if_version": service["version"],
             "set": sets, "unique": "claims"}], {"service_id": service["id"]}

    def answer(reply):
        service = store.get("service", reply["service_id"])
        if service is None:
            raise NotFound(f"service {ref} not found")
        return {"service": service_view(store, service), "changes": ["rollback"]}

    return await run_once(store, "service.rollback", request_id, plan, answer, retries=UNVERSIONED_RETRIES)


async def request_rebalance(store: RaftStore, ref: str, request_id: str | None = None) -> dict:
    """`service rebalance`: one rebalance of a replicated service, whatever its --rebalance (the orchestrator
    moves tasks toward an even spread and clears the request, manager/orchestrator/rebalance.py)."""
    def plan():
        service = resolve_service(store, ref)
        if service["spec"]["mode"] != "replicated":
            raise BadRequest(f"service {service['spec']['name']} is global: it has one task per node already")
        return [{"op": "patch", "kind": "service", "id": service["id"],
                 "set": [(["rebalance_request"], time.time())]}], {"service_id": service["id"]}

    def answer(reply):
        service = store.get("service", reply["service_id"])
        if service is None:
            raise NotFound(f"service {ref} not found")
        return {"service": service_view(store, service), "changes": ["rebalance"]}

    return await run_once(store, "service.rebalance", request_id, plan, answer)


async def remove(store: RaftStore, ref: str, request_id: str | None = None) -> None:
    """Remove a service and shut its tasks down; a retry of a removal that was applied succeeds too."""
    def plan():
        service = resolve_service(store, ref)
        ops = [{"op": "delete", "kind": "service", "id": service["id"]}]
        for task in store.find("task", "service_id", service["id"]):
            if task["desired_state"] == "running":
                ops.append({"op": "patch", "kind": "task", "id": task["id"], "missing_ok": True,
                            "set": [(["desired_state"], "shutdown"), (["status", "message"], "service removed")]})
        return ops, {"service_id": service["id"]}

    await run_once(store, "service.remove", request_id, plan, lambda _reply: None)


def _published(services: list[dict]) -> dict[tuple[int, str], tuple[dict, str]]:
    """(published port, protocol) -> (service, publish mode) for the ports these services publish."""
    used = {}
    for s in services:
        for port in (s["spec"].get("endpoint") or {}).get("ports") or []:
            if port.get("published_port"):
                used[(port["published_port"], port["protocol"])] = (s, port["publish_mode"])
    return used


def port_claims(endpoint: dict | None) -> list[str]:
    """The service record's `claims`: its ingress published ports, which no other service may hold. The store
    checks them on every write (state/machine.py _check_unique), so two creates planned at the same time
    cannot both take a port; allocate_published gives the error text. Host-mode ports are not claimed:
    services may share them (the scheduler keeps their tasks apart)."""
    return sorted(f"{p['protocol']}/{p['published_port']}" for p in (endpoint or {}).get("ports") or []
                  if p.get("publish_mode") == "ingress" and p.get("published_port"))


def allocate_published(services: list[dict], endpoint: dict, old: dict | None) -> dict:
    """The endpoint with every omitted published port filled in (kept from the old spec for the same target, else
    the lowest free one of 30000-32767, as swarmkit's port allocator), after refusing ports that other services
    publish, with Docker's text. Host-mode ports may be shared between services (the scheduler keeps them on
    different nodes), but not with an ingress port: the routing mesh listens on every node."""
    used = _published(services)
    endpoint = copy.deepcopy(endpoint)
    previous = {(p["target_port"], p["protocol"], p["publish_mode"]): p.get("published_port")
                for p in (old or {}).get("ports") or []}
    taken = {key for port in endpoint["ports"] if port.get("published_port")
             for key in [(port["published_port"], port["protocol"])]}
    for port in endpoint["ports"]:
        key = (port.get("published_port"), port["protocol"])
        if port.get("published_port") and key in used:
            other, mode = used[key]
            if mode == "ingress" or port["publish_mode"] == "ingress":
                how = "an ingress port" if mode == "ingress" else "a host-published port"
                raise BadRequest(f"port '{port['published_port']}' is already in use by service "
                                 f"'{other['spec']['name']}' ({other['id']}) as {how}")
    for port in endpoint["ports"]:
        if port.get("published_port"):
            continue
        keep = previous.get((port["target_port"], port["protocol"], port["publish_mode"]))
        if keep and (keep, port["protocol"]) not in used and (keep, port["protocol"]) not in taken:
            port["published_port"] = keep
        else:
            low, high = mesh_ports.DYNAMIC_PUBLISHED
            for number in range(low, high + 1):
                if (number, port["protocol"]) not in used and (number, port["protocol"]) not in taken:
                    port["published_port"] = number
                    break
            else:
                raise BadRequest(f"no free port in the dynamic range {low}-{high} to publish")
        taken.add((port["published_port"], port["protocol"]))
    return endpoint


def free_vip_index(services: list[dict]) -> int:
    """The lowest index no service has: each node derives the service's virtual IP from it (mesh/agent.py)."""
    used = {s.get("vip_index") for s in services}
    index = 1
    while index in used:
        index += 1
    return index


def service_view(store: RaftStore, service: dict) -> dict:
    tasks = store.find("task", "service_id", service["id"])
    running = sum(1 for t in tasks if t["desired_state"] == "running" and t["status"]["state"] == "running")
    if service["spec"]["mode"] == "global":
        desired = sum(1 for t in tasks if t["desired_state"] == "running")
    else:
        desired = service["spec"]["replicas"]
    view = dict(service)
    view.pop("claims", None)  # the store's check of published ports (port_claims), not part of the service
    view["replicas_status"] = {"running": running, "desired": desired}
    return view


def task_view(store: RaftStore, task: dict, node_names: dict | None = None) -> dict:
    """A task as the API shows it: its name and its node's hostname (`node_names` caches them across a list)."""
    view = dict(task)
    view["name"] = task_name(task)
    node_id = task.get("node_id")
    if not node_id:
        view["node_name"] = None
    elif node_names is not None and node_id in node_names:
        view["node_name"] = node_names[node_id]
    else:
        node = store.get("node", node_id)
        view["node_name"] = node["description"]["hostname"] if node else None
        if node_names is not None:
            node_names[node_id] = view["node_name"]
    return view


def sorted_tasks(store: RaftStore, service: dict | None = None) -> list[dict]:
    """The tasks of a service (or all), in `service ps` order: service, slot, node, newest first."""
    tasks = store.find("task", "service_id", service["id"]) if service else store.list("task")
    tasks.sort(key=lambda t: (t["service_name"], t["slot"] or 0, t["node_id"] or "",
                              -(t.get("created_at") or 0)))
    return tasks


def list_tasks(store: RaftStore, service: dict | None = None) -> list[dict]:
    names: dict = {}
    return [task_view(store, t, names) for t in sorted_tasks(store, service)]


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
            "ended": sum(1 for t in tasks if is_terminal(t["status"]["state"])),
            "update_status": service.get("update_status")
            if (service.get("update_status") or {}).get("spec_version") == service["spec_version"] else None,
            # one line per slot (per node, global) for the CLI's terminal view, as Docker draws it
            "slots": [{"slot": t["slot"] if t["slot"] is not None else t["node_id"], "state": t["status"]["state"]}
                      for t in sorted(tasks, key=lambda t: (t["slot"] is None, t["slot"] or 0, t["node_id"] or ""))
                      ][:PROGRESS_SLOTS]}

"""The deploy plan of a stack: what to create, update, leave or remove, computed from the compose project and
what the swarm holds, before anything changes; and its execution through the API, in dependency order.

A service whose normalised spec (translate.comparable) equals the running one is left alone, so a redeploy of
the same files restarts nothing. A secret or config whose file changed becomes a new version, NAME_key-v2,
-v3, ... (label swarmctl.stack.key=key): a secret's data is immutable, and Docker's redeploy fails here
(moby#33808). The services roll to the new version through the updater; versions no service uses any more are
removed at the end.
"""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass, field
from typing import Callable

from swarmctl.stack.compose import Project, StackError
from swarmctl.stack.translate import (KEY_LABEL, NAMESPACE_LABEL, comparable, dependencies, deploy_order,
                                      object_body, object_data, object_labels, object_name, scoped, service_body)

KINDS = ("secret", "config")


@dataclass
class Action:
    action: str  # create | update | remove | unchanged
    kind: str  # service | secret | config
    name: str
    before: dict | None = None
    after: dict | None = None
    # what execution needs (not printed)
    key: str | None = None  # the compose key (service or object)
    body: dict | None = None
    current: dict | None = None  # the record as read (id, version)
    depends: dict = field(default_factory=dict)  # service actions: compose dependency -> condition

    def public(self) -> dict:
        return {"action": self.action, "kind": self.kind, "name": self.name, "before": self.before,
                "after": self.after}


@dataclass
class State:
    """What the swarm holds: every service (views), the secrets' and configs' views (None: this daemon has no
    such API), and how to ask whether a secret's data equals some bytes (POST /v1/secrets/{id}/matches)."""
    services: list[dict]
    secrets: list[dict] | None = None
    configs: list[dict] | None = None
    secret_matches: Callable[[dict, bytes], bool] | None = None


@dataclass
class Plan:
    stack: str
    objects: list[Action]  # secrets and configs: create / update / unchanged
    services: list[Action]  # in deploy order
    pruned: list[Action]  # services removed by --prune
    cleanup: list[Action]  # secrets and configs removed after the services moved on (old versions, --prune)

    def actions(self) -> list[Action]:
        return self.objects + self.pruned + self.services + self.cleanup

    @property
    def changed(self) -> bool:
        return any(a.action != "unchanged" for a in self.actions())


def _labels(view: dict) -> dict:
    return (view.get("spec") or {}).get("labels") or {}


def _version_of(name: str, base: str) -> int | None:
    if name == base:
        return 1
    match = re.fullmatch(re.escape(base) + r"-v(\d+)", name)
    return int(match.group(1)) if match else None


def _object_view(view: dict) -> dict:
    return {"name": view["spec"]["name"], "labels": dict(_labels(view))}


def _referenced(spec: dict, kind: str) -> set[str]:
    return {ref.get(f"{kind}_name") for ref in (spec.get("task") or {}).get(f"{kind}s") or []}


def _versions(stack: str, key: str, base: str, views: list[dict]) -> list[tuple[int, dict]]:
    """The existing versions of a stack's secret or config (key), oldest first."""
    out = []
    for view in views:
        labels = _labels(view)
        number = _version_of(view["spec"]["name"], base)
        if number is None:
            continue
        if labels.get(NAMESPACE_LABEL, stack) == stack and labels.get(KEY_LABEL, key) == key:
            out.append((number, view))
    return sorted(out, key=lambda item: item[0])


def _same_data(kind: str, view: dict, data: bytes, state: State) -> bool:
    if kind == "config":
        return (view.get("spec") or {}).get("data") == base64.b64encode(data).decode()
    if state.secret_matches is None:
        return False
    return state.secret_matches(view, data)


def _plan_objects(stack: str, project: Project, state: State, kind: str) -> tuple[list[Action], dict[str, str]]:
    top = project.secrets if kind == "secret" else project.configs
    views = state.secrets if kind == "secret" else state.configs
    if top and views is None:
        raise StackError(f"the compose file has {kind}s, but this swarmctl daemon has no {kind}s API")
    views = views or []
    by_name = {v["spec"]["name"]: v for v in views}
    actions, names = [], {}
    for key in sorted(top):
        obj = top[key] or {}
        base = object_name(stack, key, obj)
        if obj.get("external"):
            if base not in by_name:
                raise StackError(f"{kind} not found: {base} (declared external as {key})")
            names[key] = base
            continue
        data = object_data(project, kind, key)
        labels = object_labels(stack, key, obj)
        versions = _versions(stack, key, base, views)
        if not versions:
            names[key] = base
            actions.append(Action("create", kind, base, None, {"name": base, "labels": labels}, key=key,
                                  body=object_body(base, labels, data)))
            continue
        number, newest = versions[-1]
        if _same_data(kind, newest, data, state):
            names[key] = newest["spec"]["name"]
            after = {"name": names[key], "labels": labels}
            if _labels(newest) != labels:
                actions.append(Action("update", kind, names[key], _object_view(newest), after, key=key,
                                      body={"labels": labels}, current=newest))
            else:
                actions.append(Action("unchanged", kind, names[key], _object_view(newest), after, key=key,
                                      current=newest))
            continue
        name = f"{base}-v{number + 1}"
        names[key] = name
        actions.append(Action("create", kind, name, _object_view(newest), {"name": name, "labels": labels}, key=key,
                              body=object_body(name, labels, data)))
    return actions, names


def plan(stack: str, project: Project, state: State, prune: bool = False) -> Plan:
    """The whole deploy, decided before anything changes: refuses unknown dependencies, cycles and bad
    settings (build_spec's checks, naming the service) first."""
    from swarmctl.errors import BadRequest
    from swarmctl.manager.services import build_spec
    deps = dependencies(project)
    order = deploy_order(deps)
    secret_actions, secret_names = _plan_objects(stack, project, state, "secret")
    config_actions, config_names = _plan_objects(stack, project, state, "config")
    mine = {s["spec"]["name"]: s for s in state.services if _labels(s).get(NAMESPACE_LABEL) == stack}
    service_actions = []
    desired_specs: dict[str, dict] = {}
    for key in order:
        body = service_body(stack, key, project.services[key], project, secret_names, config_names)
        try:
            desired = build_spec(copy.deepcopy(body))
        except BadRequest as exc:
            raise StackError(f"service {key}: {exc}") from None
        name = body["name"]
        desired_specs[name] = desired
        depends = {scoped(stack, d): c for d, c in deps[key].items()}
        current = mine.get(name)
        if current is None:
            service_actions.append(Action("create", "service", name, None, comparable(desired), key=key, body=body,
                                          depends=depends))
            continue
        if current["spec"]["mode"] != desired["mode"]:
            raise StackError(f"service {key}: the mode of a service cannot be changed ({current['spec']['mode']} to "
                             f"{desired['mode']}): remove the service first")
        before = comparable(current["spec"])
        after = comparable(desired, current["spec"])
        action = "unchanged" if before == after else "update"
        service_actions.append(Action(action, "service", name, before, after, key=key, body=body, current=current,
                                      depends=depends))
    pruned = []
    if prune:
        for name in sorted(set(mine) - set(desired_specs)):
            pruned.append(Action("remove", "service", name, comparable(mine[name]["spec"]), None,
                                 current=mine[name]))
    # the specs the swarm will run once the deploy is done: what references a secret or config then keeps it
    final = [s["spec"] for s in state.services if s["spec"]["name"] not in desired_specs
             and not any(p.name == s["spec"]["name"] for p in pruned)] + list(desired_specs.values())
    cleanup = []
    for kind, actions, names in (("secret", secret_actions, secret_names), ("config", config_actions, config_names)):
        views = (state.secrets if kind == "secret" else state.configs) or []
        used = set().union(*(_referenced(spec, kind) for spec in final)) if final else set()
        keep = set(names.values())
        top = project.secrets if kind == "secret" else project.configs
        for view in sorted(views, key=lambda v: v["spec"]["name"]):
            labels = _labels(view)
            name = view["spec"]["name"]
            if labels.get(NAMESPACE_LABEL) != stack or name in keep or name in used:
                continue
            key = labels.get(KEY_LABEL)
            superseded = key in top and _version_of(name, object_name(stack, key, top[key] or {})) is not None
            if superseded or prune:
                cleanup.append(Action("remove", kind, name, _object_view(view), None, key=key, current=view))
    return Plan(stack, secret_actions + config_actions, service_actions, pruned, cleanup)

"""A compose project's services, secrets and configs as swarmctl's API bodies, as docker/cli's
cli/compose/convert does it for Docker: `NAME_svc` named, labelled com.docker.stack.namespace=NAME.

The create body goes through swarmctl/manager/services.py build_spec (the one place that makes a task spec of
user options) for its checks and to normalise it for comparison with what the swarm runs.
"""

from __future__ import annotations

import base64
import copy
import os

from swarmctl.stack.compose import DEPENDS_CONDITIONS, Project, StackError

NAMESPACE_LABEL = "com.docker.stack.namespace"
IMAGE_LABEL = "com.docker.stack.image"
KEY_LABEL = "swarmctl.stack.key"  # the compose key of a stack's secret or config (its versions share it)
DEFAULT_MODE = 0o444


def scoped(stack: str, name: str) -> str:
    return f"{stack}_{name}"


def _duration(value, where: str) -> float:
    from swarmctl.cli.units import UnitError, parse_duration
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_duration(str(value), where)
    except UnitError as exc:
        raise StackError(str(exc)) from None


def _bytes(value, where: str) -> int:
    from swarmctl.cli.units import UnitError, parse_bytes
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return parse_bytes(str(value), where)
    except UnitError as exc:
        raise StackError(str(exc)) from None


def _cpus(value, where: str) -> float:
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise StackError(f"invalid {where} {value!r}: expected a number of CPUs, e.g. 0.5") from None
    if cpus < 0:
        raise StackError(f"invalid {where} {value!r}: must be >= 0")
    return cpus


def _int(value, where: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise StackError(f"invalid {where} {value!r}: expected a whole number") from None


def _update_config(config: dict | None, where: str) -> dict | None:
    if config is None:
        return None
    out: dict = {}
    if config.get("parallelism") is not None:
        out["parallelism"] = _int(config["parallelism"], f"{where}.parallelism")
    for key in ("delay", "monitor"):
        if config.get(key) is not None:
            out[key] = _duration(config[key], f"{where}.{key}")
    for key in ("failure_action", "order"):
        if config.get(key) is not None:
            out[key] = str(config[key])
    if config.get("max_failure_ratio") is not None:
        try:
            out["max_failure_ratio"] = float(config["max_failure_ratio"])
        except (TypeError, ValueError):
            raise StackError(f"invalid {where}.max_failure_ratio {config['max_failure_ratio']!r}") from None
    return out


def restart_policy(service: dict) -> dict | None:
    """deploy.restart_policy; without it the legacy `restart:` as docker/cli's convertRestartPolicy reads it."""
    policy = (service.get("deploy") or {}).get("restart_policy")
    if policy is not None:
        out = {}
        if policy.get("condition") is not None:
            out["condition"] = str(policy["condition"])
        for key in ("delay", "window"):
            if policy.get(key) is not None:
                out[key] = _duration(policy[key], f"deploy.restart_policy.{key}")
        if policy.get("max_attempts") is not None:
            out["max_attempts"] = _int(policy["max_attempts"], "deploy.restart_policy.max_attempts")
        return out
    restart = service.get("restart")
    if not restart:
        return None
    name, _, count = str(restart).partition(":")
    attempts = _int(count, "restart") if count else 0
    if name in ("no", ""):
        return None
    if name in ("always", "unless-stopped"):
        return {"condition": "any", "max_attempts": attempts}
    if name == "on-failure":
        return {"condition": "on-failure", "max_attempts": attempts}
    raise StackError(f"invalid restart policy: unknown policy '{name}' (must be one of 'no', 'always', "
                     "'on-failure', or 'unless-stopped')")


def healthcheck(health: dict | None) -> dict | None:
    if health is None:
        return None
    if health.get("disable"):
        if health.get("test"):
            raise StackError("healthcheck: test and disable can't be set at the same time")
        return {"test": ["NONE"]}
    test = health.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    out = {"test": [str(w) for w in test] if test is not None else []}
    for key in ("interval", "timeout", "start_period", "start_interval"):
        if health.get(key) is not None:
            out[key] = _duration(health[key], f"healthcheck.{key}")
    if health.get("retries") is not None:
        out["retries"] = _int(health["retries"], "healthcheck.retries")
    return out


def _mode(value, where: str) -> int:
    if value is None:
        return DEFAULT_MODE
    if isinstance(value, str):
        try:
            return int(value, 8)
        except ValueError:
            raise StackError(f"invalid {where} {value!r}: expected an octal file mode, e.g. 0444") from None
    return _int(value, where)


def file_references(stack: str, service: dict, project: Project, kind: str, names: dict[str, str]) -> list[dict]:
    """The task's secrets (or configs): each compose reference with the swarm name of the object it uses
    (`names`: compose key -> swarm name, versions included), target, uid, gid, mode (Docker's defaults)."""
    top = project.secrets if kind == "secrets" else project.configs
    singular = kind[:-1]
    out = []
    for ref in service.get(kind) or []:
        source = ref["source"]
        if source not in top:
            raise StackError(f'undefined {singular} "{source}"')
        target = ref.get("target") or source
        if kind == "configs" and not target.startswith("/"):
            target = "/" + target
        out.append({f"{singular}_name": names.get(source) or object_name(stack, source, top[source]),
                    "target": target, "uid": str(ref.get("uid") or "0"), "gid": str(ref.get("gid") or "0"),
                    "mode": _mode(ref.get("mode"), f"{kind}.{source}.mode")})
    out.sort(key=lambda r: (r[f"{singular}_name"], r["target"]))  # docker/cli sorts them: no needless update
    return out


def object_name(stack: str, key: str, obj: dict) -> str:
    """The swarm name of a top-level secret or config: its `name:`, an external one's key, else NAME_key."""
    if obj.get("name"):
        return str(obj["name"])
    if obj.get("external"):
        return key
    return scoped(stack, key)


def _listed(value) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _pairs(value, sep: str, where: str) -> dict[str, str]:
    """A compose map, or a list of KEY<sep>VALUE strings, as a dict of strings."""
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    out = {}
    for item in _listed(value):
        key, found, val = item.partition(sep)
        if not found and sep == ":" and "=" in item:
            key, found, val = item.partition("=")
        if not found or not key:
            raise StackError(f"invalid {where} {item!r}: expected KEY{sep}VALUE")
        out[key] = val
    return out


def volume_mount(stack: str, item, project: Project) -> dict:
    """A compose `volumes` entry (short `SOURCE:TARGET[:MODE]` or long syntax) as a task spec mount. Named volumes
    are the stack's (`<stack>_<name>`, as Docker's stack deploy) unless the top-level volume is external or named."""
    if isinstance(item, dict):
        kind = item.get("type") or "volume"
        source, target = item.get("source"), item.get("target")
        mount = {"type": kind, "target": str(target or ""), "readonly": bool(item.get("read_only"))}
        if (item.get("bind") or {}).get("propagation"):
            mount["propagation"] = str(item["bind"]["propagation"])
        if (item.get("volume") or {}).get("nocopy") is not None:
            mount["no_copy"] = bool(item["volume"]["nocopy"])
        tmpfs = item.get("tmpfs") or {}
        if tmpfs.get("size") is not None:
            mount["tmpfs_size"] = _bytes(tmpfs["size"], "volumes.tmpfs.size")
        if tmpfs.get("mode") is not None:
            mount["tmpfs_mode"] = _mode(tmpfs["mode"], "volumes.tmpfs.mode")
    else:
        parts = str(item).split(":")
        if len(parts) == 1:
            source, target, mode = None, parts[0], ""
        elif len(parts) in (2, 3):
            source, target, mode = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
        else:
            raise StackError(f"invalid volume specification {item!r}")
        kind = "bind" if source and source[0] in "/.~" else "volume"
        mount = {"type": kind, "target": target, "readonly": False}
        for word in filter(None, mode.split(",")):
            if word in ("ro", "rw"):
                mount["readonly"] = word == "ro"
            elif word in ("shared", "slave", "private", "rshared", "rslave", "rprivate") and kind == "bind":
                mount["propagation"] = word
            elif word == "nocopy" and kind == "volume":
                mount["no_copy"] = True
            elif word not in ("z", "Z", "cached", "delegated", "consistent"):
                raise StackError(f"invalid volume specification {item!r}: unknown mode {word!r}")
    if kind not in ("bind", "volume", "tmpfs"):
        raise StackError(f"unsupported volume type {kind!r}: use bind, volume or tmpfs")
    if kind == "bind" and source:
        mount["source"] = os.path.normpath(os.path.join(project.workdir, os.path.expanduser(str(source))))
    elif kind == "volume" and source:
        if str(source) not in project.volumes:
            raise StackError(f"undefined volume {str(source)!r}: declare it under the top-level volumes")
        top = project.volumes[str(source)] or {}
        external = top.get("external")
        if isinstance(external, dict):  # the legacy form, external: {name: N}
            mount["source"] = str(external.get("name") or source)
        elif external or top.get("name"):
            mount["source"] = str(top.get("name") or source)
        else:
            mount["source"] = scoped(stack, str(source))
            labels = {**(top.get("labels") or {}), NAMESPACE_LABEL: stack} if isinstance(top.get("labels"), dict) \
                else {NAMESPACE_LABEL: stack}
            mount["labels"] = {str(k): str(v) for k, v in labels.items()}
            if top.get("driver") or top.get("driver_opts"):
                mount["driver_config"] = {"name": str(top.get("driver") or "local"), "options": {
                    str(k): str(v) for k, v in (top.get("driver_opts") or {}).items()}}
    elif source:
        mount["source"] = str(source)
    return mount


def container_options(stack: str, service: dict, project: Project) -> dict:
    """The task spec's container options from a compose service (read_only, init, tty, cap_add, cap_drop, sysctls,
    ulimits, dns, dns_opt, dns_search, extra_hosts, stop_signal, group_add, logging, volumes)."""
    task: dict = {}
    for key in ("read_only", "init", "tty"):
        if service.get(key) is not None:
            task[key] = bool(service[key])
    for key, field in (("cap_add", "cap_add"), ("cap_drop", "cap_drop"), ("dns", "dns"), ("dns_opt", "dns_options"),
                       ("group_add", "groups")):
        if service.get(key):
            task[field] = _listed(service[key])
    if service.get("dns_search"):
        task["dns_search"] = [stack] + [d for d in _listed(service["dns_search"]) if d != stack]
    if service.get("sysctls"):
        task["sysctls"] = _pairs(service["sysctls"], "=", "sysctl")
    if service.get("extra_hosts"):
        task["hosts"] = _pairs(service["extra_hosts"], ":", "extra_hosts entry")
    if service.get("ulimits"):
        ulimits = []
        for name, value in service["ulimits"].items():
            if isinstance(value, dict):
                ulimits.append({"name": str(name), "soft": _int(value.get("soft"), f"ulimits.{name}.soft"),
                                "hard": _int(value.get("hard"), f"ulimits.{name}.hard")})
            else:
                ulimits.append({"name": str(name), "soft": _int(value, f"ulimits.{name}"),
                                "hard": _int(value, f"ulimits.{name}")})
        task["ulimits"] = ulimits
    if service.get("stop_signal") is not None:
        task["stop_signal"] = str(service["stop_signal"])
    logging = service.get("logging")
    if logging:
        task["log_driver"] = {"name": str(logging.get("driver") or "json-file"),
                              "options": {str(k): str(v) for k, v in (logging.get("options") or {}).items()}}
    if service.get("volumes"):
        task["mounts"] = [volume_mount(stack, item, project) for item in service["volumes"]]
    return task


def service_body(stack: str, name: str, service: dict, project: Project,
                 secret_names: dict[str, str] | None = None, config_names: dict[str, str] | None = None) -> dict:
    """The POST /v1/services body of one compose service."""
    try:
        return _service_body(stack, name, service, project, secret_names or {}, config_names or {})
    except StackError as exc:
        raise StackError(f"service {name}: {exc}") from None


def _service_body(stack, name, service, project, secret_names, config_names) -> dict:
    image = service.get("image")
    if not image:
        raise StackError("an image is required (swarmctl does not build images: `build` is ignored)")
    deploy = service.get("deploy") or {}
    task: dict = {"image": str(image)}
    if service.get("entrypoint") is not None:
        task["command"] = list(service["entrypoint"])
    if service.get("command") is not None:
        task["args"] = list(service["command"])
    env = {k: v for k, v in (service.get("environment") or {}).items() if v is not None}
    if env:
        task["env"] = env
    task["labels"] = {**(service.get("labels") or {}), NAMESPACE_LABEL: stack}
    for key in ("hostname", "user", "working_dir"):
        if service.get(key) is not None:
            task[key] = str(service[key])
    if service.get("stop_grace_period") is not None:
        task["stop_grace_period"] = _duration(service["stop_grace_period"], "stop_grace_period")
    health = healthcheck(service.get("healthcheck"))
    if health is not None:
        task["healthcheck"] = health
    policy = restart_policy(service)
    if policy is not None:
        task["restart_policy"] = policy
    resources: dict = {}
    for kind in ("limits", "reservations"):
        given = (deploy.get("resources") or {}).get(kind) or {}
        part = {}
        if given.get("cpus") is not None:
            part["cpus"] = _cpus(given["cpus"], f"deploy.resources.{kind}.cpus")
        if given.get("memory") is not None:
            part["memory"] = _bytes(given["memory"], f"deploy.resources.{kind}.memory")
        if part:
            resources[kind] = part
    if resources:
        task["resources"] = resources
    placement_in = deploy.get("placement") or {}
    placement: dict = {}
    if placement_in.get("constraints"):
        placement["constraints"] = [str(c) for c in placement_in["constraints"]]
    if placement_in.get("preferences"):
        prefs = []
        for pref in placement_in["preferences"]:
            if not isinstance(pref, dict) or set(pref) != {"spread"}:
                raise StackError(f"invalid placement preference {pref!r}: expected {{spread: DESCRIPTOR}}")
            prefs.append({"spread": str(pref["spread"])})
        placement["preferences"] = prefs
    if placement_in.get("max_replicas_per_node") is not None:
        placement["max_replicas_per_node"] = _int(placement_in["max_replicas_per_node"],
                                                  "deploy.placement.max_replicas_per_node")
    if placement:
        task["placement"] = placement
    task["dns_search"] = [stack]  # "<short>" finds "<stack>_<short>" (the mesh DNS answers "<short>.<stack>")
    task.update(container_options(stack, service, project))
    secrets = file_references(stack, service, project, "secrets", secret_names)
    if secrets:
        task["secrets"] = secrets
    configs = file_references(stack, service, project, "configs", config_names)
    if configs:
        task["configs"] = configs
    mode = deploy.get("mode") or "replicated"
    if mode not in ("replicated", "global"):
        raise StackError(f"unsupported mode: {mode!r} (swarmctl runs replicated and global services)")
    body: dict = {"name": scoped(stack, name), "mode": mode,
                  "labels": {**(deploy.get("labels") or {}), NAMESPACE_LABEL: stack, IMAGE_LABEL: str(image)},
                  "task": task}
    if deploy.get("replicas") is not None:
        if mode == "global":
            raise StackError("replicas can only be used with replicated mode")
        body["replicas"] = _int(deploy["replicas"], "deploy.replicas")
    ports = service.get("ports") or []
    endpoint_mode = deploy.get("endpoint_mode")
    if ports or endpoint_mode:
        if endpoint_mode not in (None, "vip", "dnsrr"):
            raise StackError(f"invalid endpoint mode {endpoint_mode!r}: use vip or dnsrr")
        body["endpoint"] = {"mode": endpoint_mode or "vip", "ports": [
            {k: v for k, v in {"target_port": p["target"], "published_port": p.get("published"),
                               "protocol": p.get("protocol") or "tcp",
                               "publish_mode": p.get("mode") or "ingress"}.items() if v is not None}
            for p in ports]}
    for key in ("update_config", "rollback_config"):
        config = _update_config(deploy.get(key), f"deploy.{key}")
        if config:
            body[key] = config
    return body


def dependencies(project: Project) -> dict[str, dict[str, str]]:
    """service -> {dependency: condition}; refuses an unknown service or condition, naming it."""
    out = {}
    for name, service in project.services.items():
        deps = {}
        for dep, options in (service.get("depends_on") or {}).items():
            if dep not in project.services:
                raise StackError(f"service {name} depends on undefined service {dep}")
            condition = options.get("condition") or "service_started"
            if condition not in DEPENDS_CONDITIONS:
                raise StackError(f"service {name}: depends_on {dep}: condition {condition} is not supported "
                                 f"(use {' or '.join(DEPENDS_CONDITIONS)})")
            deps[dep] = condition
        out[name] = deps
    return out


def deploy_order(deps: dict[str, dict[str, str]]) -> list[str]:
    """The services, each after its dependencies (ties by name); a cycle is refused, naming it."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name):] + [name]
            raise StackError("dependency cycle between services: " + " -> ".join(cycle))
        state[name] = "visiting"
        for dep in sorted(deps[name]):
            visit(dep, path + [name])
        state[name] = "done"
        order.append(name)
    for name in sorted(deps):
        visit(name, [])
    return order


def object_data(project: Project, kind: str, key: str) -> bytes:
    """The data of a top-level secret or config: from its file (relative to the first compose file's
    directory), its environment variable, or (configs) its content."""
    obj = (project.secrets if kind == "secret" else project.configs)[key]
    if obj.get("file") is not None:
        path = os.path.join(project.workdir, os.path.expanduser(str(obj["file"])))
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise StackError(f"{kind} {key}: cannot read {obj['file']}: {exc.strerror or exc}") from None
    if obj.get("environment") is not None:
        value = os.environ.get(str(obj["environment"]))
        if value is None:
            raise StackError(f"{kind} {key}: environment variable {obj['environment']} is not set")
        return value.encode()
    if kind == "config" and obj.get("content") is not None:
        return str(obj["content"]).encode()
    raise StackError(f"{kind} {key}: give file, environment{', content' if kind == 'config' else ''} "
                     "or external: true")


def object_labels(stack: str, key: str, obj: dict) -> dict:
    labels = {str(k): str(v) for k, v in (obj.get("labels") or {}).items()} if isinstance(obj.get("labels"), dict) \
        else {item.partition("=")[0]: item.partition("=")[2] for item in obj.get("labels") or []}
    labels.update({NAMESPACE_LABEL: stack, KEY_LABEL: key})
    return labels


def object_body(name: str, labels: dict, data: bytes) -> dict:
    return {"name": name, "labels": dict(labels), "data": base64.b64encode(data).decode()}


def comparable(spec: dict, current: dict | None = None) -> dict:
    """A service spec in the form two specs are compared in: what the leader fills in (a published port it
    picked, the ids of secrets and configs, the force counter) taken from `current`, the spec the service runs."""
    out = copy.deepcopy(spec)
    out["task"].pop("force_update", None)
    for kind in ("secrets", "configs"):
        for ref in out["task"].get(kind) or []:
            ref.pop(f"{kind[:-1]}_id", None)
    if current is not None:
        taken = {(p["target_port"], p["protocol"], p["publish_mode"]): p.get("published_port")
                 for p in (current.get("endpoint") or {}).get("ports") or []}
        for port in (out.get("endpoint") or {}).get("ports") or []:
            if not port.get("published_port"):
                port["published_port"] = taken.get((port["target_port"], port["protocol"], port["publish_mode"]))
    return out

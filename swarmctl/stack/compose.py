"""Compose files as `docker stack deploy` reads them: YAML (PyYAML), interpolation from the environment,
validation against the vendored compose-spec schema (schema/compose-spec.json, Apache-2.0: schema/NOTICE),
then several files merged in order, as docker/cli's loader does.

Every problem is a StackError with a one-line message that names the file (and, for a schema error, the
service and the key). Warnings for keys swarmctl does not honour use Docker's texts (`Ignoring unsupported
options: build, ...`); keys Docker refuses are refused.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).with_name("schema") / "compose-spec.json"

# docker/cli cli/compose/types/types.go: what stack deploy ignores with a warning, what it calls deprecated,
# and what it refuses.
UNSUPPORTED = ("build", "cgroupns_mode", "cgroup_parent", "devices", "domainname", "external_links", "ipc", "links",
               "mac_address", "network_mode", "pid", "privileged", "restart", "security_opt", "shm_size",
               "userns_mode")
DEPRECATED = {
    "container_name": "Setting the container name is not supported.",
    "expose": "Exposing ports is unnecessary - services on the same network can access each other's containers "
              "on any port.",
}
FORBIDDEN = {
    "extends": "Support for `extends` is not implemented yet.",
    "volume_driver": "Instead of setting the volume driver on the service, define a volume using the top-level "
                     "`volumes` option and specify the driver there.",
    "volumes_from": "To share a volume between services, define it using the top-level `volumes` option and "
                    "reference it from each service that shares it using the service-level `volumes` option.",
    "cpu_quota": "Set resource limits using deploy.resources",
    "cpu_shares": "Set resource limits using deploy.resources",
    "cpuset": "Set resource limits using deploy.resources",
    "mem_limit": "Set resource limits using deploy.resources",
    "memswap_limit": "Set resource limits using deploy.resources",
}
# service keys swarmctl translates (swarmctl/stack/translate.py), and those that need nothing here: every task
# shares the host's network, so networks are no-ops
HONOURED = ("image", "command", "entrypoint", "environment", "env_file", "labels", "ports", "healthcheck", "secrets",
            "configs", "stop_grace_period", "hostname", "user", "working_dir", "deploy", "depends_on",
            # container options (translate.container_options)
            "read_only", "init", "tty", "cap_add", "cap_drop", "sysctls", "ulimits", "dns", "dns_opt", "dns_search",
            "extra_hosts", "stop_signal", "group_add", "logging", "volumes")
SILENT = ("networks",)
DEPLOY_HONOURED = {
    "mode": None, "replicas": None, "labels": None, "endpoint_mode": None,
    "placement": {"constraints": None, "preferences": None, "max_replicas_per_node": None},
    "resources": {"limits": {"cpus": None, "memory": None}, "reservations": {"cpus": None, "memory": None}},
    "restart_policy": {"condition": None, "delay": None, "max_attempts": None, "window": None},
    "update_config": {k: None for k in ("parallelism", "delay", "failure_action", "monitor", "max_failure_ratio",
                                        "order")},
    "rollback_config": {k: None for k in ("parallelism", "delay", "failure_action", "monitor", "max_failure_ratio",
                                          "order")},
}
OBJECT_KEYS = ("file", "environment", "external", "name", "labels")  # of a top-level secret or config
TOP_LEVEL = ("version", "name", "services", "networks", "volumes", "secrets", "configs")
DEPENDS_CONDITIONS = ("service_started", "service_healthy")


class StackError(Exception):
    """A compose file that cannot be deployed; the message is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


@dataclass
class Project:
    """The merged compose files: services (normalised, see normalise_service), secrets, configs; the directory
    relative paths are taken from (the first file's), and the warnings for what is not honoured."""
    services: dict[str, dict] = field(default_factory=dict)
    secrets: dict[str, dict] = field(default_factory=dict)
    configs: dict[str, dict] = field(default_factory=dict)
    volumes: dict[str, dict] = field(default_factory=dict)  # the top-level volumes (named volumes' settings)
    workdir: str = "."
    unsupported: list[str] = field(default_factory=list)
    deprecated: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # other warnings (unset variables)

    def warnings(self) -> list[str]:
        """One line each, in the order Docker prints them."""
        out = []
        if self.unsupported:
            out.append("Ignoring unsupported options: " + ", ".join(self.unsupported))
        if self.deprecated:
            out.append("Ignoring deprecated options: " + "; ".join(f"{k}: {v}" for k, v in
                                                                   sorted(self.deprecated.items())))
        return self.notes + out

    def print_warnings(self, err=None) -> None:
        """Docker's texts on stderr: `Ignoring unsupported options: a, b` and the deprecated block."""
        err = err if err is not None else sys.stderr
        for note in self.notes:
            print(f"WARNING: {note}", file=err)
        if self.unsupported:
            print("Ignoring unsupported options: " + ", ".join(self.unsupported) + "\n", file=err)
        if self.deprecated:
            print("Ignoring deprecated options:\n\n" + "\n".join(f"{k}: {v}" for k, v in
                                                                sorted(self.deprecated.items())) + "\n", file=err)


# ---- reading -------------------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings refuse duplicate keys (Go's yaml.v2, which Docker uses, refuses them too)."""


def _mapping(loader, node, deep=False):
    explicit = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # the keys of `<<: *anchor` merges come first; the mapping's own ones override
    merged = len(node.value) - explicit
    out: dict = {}
    own: set = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str):
            raise StackError(f"line {key_node.start_mark.line + 1}: non-string key {key!r}")
        if index >= merged:
            if key in own:
                raise StackError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            own.add(key)
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse_yaml(text: str, name: str) -> dict:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except StackError as exc:
        raise StackError(f"{name}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise StackError(f"{name}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise StackError(f"{name}: top-level object must be a mapping")
    return data


def read_file(path: str, stdin=None) -> tuple[str, str]:
    """(name, text) of a compose file; "-" reads stdin."""
    if path == "-":
        return "-", (stdin or sys.stdin).read()
    try:
        with open(path, encoding="utf-8") as f:
            return path, f.read()
    except OSError as exc:
        raise StackError(f"cannot read compose file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise StackError(f"cannot read compose file {path}: not UTF-8 text") from None


# ---- interpolation ---------------------------------------------------------------------------------------
_TEMPLATE = re.compile(r"\$(?:(?P<escaped>\$)|(?P<named>[_a-zA-Z][_a-zA-Z0-9]*)"
                       r"|\{(?P<braced>[_a-zA-Z][_a-zA-Z0-9]*(?::?[-?][^}]*)?)\}|(?P<invalid>))")


def substitute(text: str, env: dict, unset: set | None = None) -> str:
    """`$$`, `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset), `${VAR:?err}` (an
    error when unset or empty), `${VAR?err}` (when unset), as docker/cli's template package. A variable that
    is not set and has no default becomes "" (its name is added to `unset`)."""
    def one(match) -> str:
        if match.group("escaped"):
            return "$"
        expr = match.group("named") or match.group("braced")
        if not expr:
            raise StackError(f"invalid template: {text!r}")
        for sep in (":?", "?", ":-", "-"):
            if sep in expr:
                name, arg = expr.split(sep, 1)
                value = env.get(name)
                if sep in (":?", "?"):
                    if value is None or (sep == ":?" and value == ""):
                        raise StackError(f"required variable {name} is missing a value: {arg}")
                    return value
                if value is None or (sep == ":-" and value == ""):
                    return arg  # as written: docker/cli does not interpolate defaults again
                return value
        if expr not in env and unset is not None:
            unset.add(expr)
        return env.get(expr, "")
    return _TEMPLATE.sub(one, text)


# values docker/cli casts after interpolation (loader/interpolate.go); "*" is any key or list index
_CASTS = [
    (("services", "*", "configs", "*", "mode"), "int"), (("services", "*", "secrets", "*", "mode"), "int"),
    (("services", "*", "healthcheck", "retries"), "int"), (("services", "*", "healthcheck", "disable"), "bool"),
    (("services", "*", "deploy", "replicas"), "int"),
    (("services", "*", "deploy", "update_config", "parallelism"), "int"),
    (("services", "*", "deploy", "update_config", "max_failure_ratio"), "float"),
    (("services", "*", "deploy", "rollback_config", "parallelism"), "int"),
    (("services", "*", "deploy", "rollback_config", "max_failure_ratio"), "float"),
    (("services", "*", "deploy", "restart_policy", "max_attempts"), "int"),
    (("services", "*", "deploy", "placement", "max_replicas_per_node"), "int"),
    (("services", "*", "ports", "*", "target"), "int"), (("services", "*", "ports", "*", "published"), "int"),
    (("services", "*", "privileged"), "bool"), (("services", "*", "read_only"), "bool"),
    (("services", "*", "stdin_open"), "bool"), (("services", "*", "tty"), "bool"),
    (("secrets", "*", "external"), "bool"), (("configs", "*", "external"), "bool"),
    (("networks", "*", "external"), "bool"), (("volumes", "*", "external"), "bool"),
]


def _cast_kind(path: tuple) -> str | None:
    for pattern, kind in _CASTS:
        if len(pattern) == len(path) and all(p == "*" or p == str(k) for p, k in zip(pattern, path)):
            return kind
    return None


def _cast(value: str, kind: str, where: str):
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
    except ValueError:
        return value  # left to the schema, which names the key
    lowered = value.lower()
    if lowered in ("y", "yes", "true", "on"):
        return True
    if lowered in ("n", "no", "false", "off"):
        return False
    raise StackError(f"invalid boolean {value!r} for {where}")


def _path_text(path) -> str:
    return ".".join(str(p) for p in path)


def interpolate(data, env: dict, name: str, unset: set, path: tuple = ()):
    """The document with every string value interpolated (keys are left as they are)."""
    if isinstance(data, dict):
        return {k: interpolate(v, env, name, unset, path + (k,)) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, env, name, unset, path + (i,)) for i, v in enumerate(data)]
    if isinstance(data, str) and "$" in data:
        try:
            value = substitute(data, env, unset)
        except StackError as exc:
            raise StackError(f"{name}: invalid interpolation format for {_path_text(path)}: {exc}. "
                             "You may need to escape any $ with another $.") from None
        kind = _cast_kind(path)
        return _cast(value, kind, f"{name}: {_path_text(path)}") if kind else value
    return data


# ---- validation ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _validator():
    import jsonschema
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        schema = json.load(f)
    return jsonschema.Draft7Validator(schema)


def _short(value) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error) -> tuple[list, str]:
    """(the key's path, what is wrong) of one jsonschema error."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set((error.schema.get("properties") or {}))
        patterns = list((error.schema.get("patternProperties") or {}))
        extra = sorted(k for k in error.instance if k not in allowed and not any(re.search(p, k) for p in patterns))
        if extra:
            return path + [extra[0]], "additional property is not allowed"
    if error.validator == "required":
        return path, error.message
    if error.validator in ("oneOf", "anyOf") and error.context:
        direct = [e for e in error.context if not list(e.relative_path)]
        if direct and all(e.validator == "type" for e in direct) and len(direct) == len(
                [e for e in error.context if not list(e.relative_path) or e.validator == "type"]):
            types = list(dict.fromkeys(t for e in direct for t in _as_list(e.validator_value)))
            return path, f"{_short(error.instance)} is not of type {' or '.join(map(repr, types))}"
        import jsonschema
        best = jsonschema.exceptions.best_match(error.context)
        if best is not None and list(best.absolute_path):
            return path + list(best.relative_path), f"{_short(best.instance)}: {best.message.split(' is ', 1)[-1]}" \
                if best.validator == "type" else best.message
    if error.validator == "type":
        return path, f"{_short(error.instance)} is not of type {' or '.join(map(repr, _as_list(error.validator_value)))}"
    return path, error.message.replace("\n", " ")


def _as_list(value):
    return value if isinstance(value, list) else [value]


def validate(data: dict, name: str) -> None:
    """Refuses a document the compose-spec schema refuses; the message names the file, the service and the key."""
    import jsonschema
    errors = list(_validator().iter_errors(data))
    if not errors:
        return
    error = jsonschema.exceptions.best_match(errors)
    path, problem = _describe(error)
    if len(path) >= 2 and path[0] == "services":
        key = _path_text(path[2:]) or "(the service)"
        raise StackError(f"{name}: service {path[1]}: {key}: {problem}")
    where = _path_text(path) or "(top level)"
    raise StackError(f"{name}: {where}: {problem}")


# ---- normal forms ----------------------------------------------------------------------------------------
def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _mapping_or_list(value, what: str, allow_none: bool) -> dict:
    """A `list_or_dict` (["K=V", "K"] or {K: V}) as a dict; a bare K is None (taken from the environment)
    where allow_none, else ""."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): (_text(v) if v is not None or allow_none else "") for k, v in value.items()}
    out = {}
    for item in value:
        key, sep, val = str(item).partition("=")
        out[key] = val if sep else (None if allow_none else "")
    return out


def _command(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise StackError(f"invalid command {value!r}: {exc}") from None
    return [str(v) for v in value]


_PORT = re.compile(r"^(?:(?P<ip>\[[^\]]*\]|[^:]*):)??(?:(?P<published>[\d-]*):)?(?P<target>\d+(?:-\d+)?)"
                   r"(?:/(?P<protocol>\w+))?$")


def _range(text: str) -> list[int]:
    low, _, high = text.partition("-")
    low_n, high_n = int(low), int(high or low)
    if high_n < low_n:
        raise ValueError(text)
    return list(range(low_n, high_n + 1))


def parse_ports(items) -> list[dict]:
    """Compose ports (short "8080:80/udp", "80", ranges; or long {target, published, protocol, mode}) as long
    dicts {target, published (int or None), protocol, mode}, ranges expanded as Docker expands them."""
    out = []
    for item in items or []:
        if isinstance(item, dict):
            if item.get("target") in (None, ""):
                raise StackError(f"ports: {_short(item)}: a port needs a target")
            published = item.get("published")
            try:
                targets = [int(item["target"])]
                published_list = [None] if published in (None, "") else _range(str(published))
            except ValueError:
                raise StackError(f"ports: {_short(item)}: target and published must be port numbers "
                                 "(published may be a range, 8080-8081)") from None
            if len(published_list) > 1:
                targets = targets * len(published_list)
            for target, pub in zip(targets, published_list):
                port = {"target": target, "published": pub, "protocol": item.get("protocol") or "tcp",
                        "mode": item.get("mode") or "ingress"}
                for extra in ("host_ip", "name", "app_protocol"):
                    if item.get(extra):
                        port[extra] = item[extra]
                out.append(port)
            continue
        text = str(item)
        match = _PORT.match(text)
        if not match:
            raise StackError(f"invalid port {text!r}: expected [[IP:]PUBLISHED:]TARGET[/PROTOCOL]")
        try:
            targets = _range(match.group("target"))
            published = _range(match.group("published")) if match.group("published") else [None] * len(targets)
        except ValueError:
            raise StackError(f"invalid port range in {text!r}") from None
        if len(published) != len(targets):
            if len(targets) == 1:
                targets = targets * len(published)
            else:
                raise StackError(f"invalid port {text!r}: the published and target ranges differ in size")
        for target, pub in zip(targets, published):
            port = {"target": target, "published": pub, "protocol": (match.group("protocol") or "tcp").lower(),
                    "mode": "ingress"}
            if match.group("ip"):
                port["host_ip"] = match.group("ip")
            out.append(port)
    return out


def _references(items, what: str) -> list[dict]:
    out = []
    for item in items or []:
        ref = dict(item) if isinstance(item, dict) else {"source": str(item)}
        if not ref.get("source"):
            raise StackError(f"{what}: {_short(item)}: a reference needs a source")
        ref["source"] = str(ref["source"])
        out.append(ref)
    return out


def _depends_on(value, service: str) -> dict[str, dict]:
    if value is None:
        return {}
    if isinstance(value, list):
        return {str(name): {"condition": "service_started"} for name in value}
    out = {}
    for name, options in value.items():
        options = dict(options or {})
        options.setdefault("condition", "service_started")
        out[str(name)] = options
    return out


def normalise_service(name: str, service: dict | None) -> dict:
    """A service in one shape whatever the compose syntax: environment and labels as dicts, command and
    entrypoint as lists, ports long, secrets/configs as {source, ...}, depends_on as {name: {condition}}."""
    s = copy.deepcopy(service or {})
    if "environment" in s:
        s["environment"] = _mapping_or_list(s["environment"], "environment", allow_none=True)
    if "labels" in s:
        s["labels"] = _mapping_or_list(s["labels"], "labels", allow_none=False)
    deploy = s.get("deploy")
    if deploy is None and "deploy" in s:
        s["deploy"] = {}
    if isinstance(s.get("deploy"), dict) and "labels" in s["deploy"]:
        s["deploy"]["labels"] = _mapping_or_list(s["deploy"]["labels"], "deploy.labels", allow_none=False)
    for key in ("command", "entrypoint"):
        if key in s:
            s[key] = _command(s[key])
    if "ports" in s:
        s["ports"] = parse_ports(s["ports"])
    for key in ("secrets", "configs"):
        if key in s:
            s[key] = _references(s[key], key)
    if "depends_on" in s:
        s["depends_on"] = _depends_on(s["depends_on"], name)
    if "env_file" in s:
        files = s["env_file"] if isinstance(s["env_file"], list) else [s["env_file"]]
        s["env_file"] = [f if isinstance(f, dict) else {"path": str(f)} for f in files]
    return s


# ---- merging ---------------------------------------------------------------------------------------------
_KEYED_LISTS = {"ports": lambda p: json.dumps(p, sort_keys=True), "secrets": lambda r: r["source"],
                "configs": lambda r: r["source"], "volumes": lambda v: v.get("target") if isinstance(v, dict)
                else str(v).split(":")[1] if ":" in str(v) else str(v)}
_REPLACED = ("command", "entrypoint", "test")


def _merge_value(key, base, override):
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = _merge_value(k, out[k], v) if k in out else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(override, list) and key not in _REPLACED:
        if key in _KEYED_LISTS:
            ident = _KEYED_LISTS[key]
            merged = {ident(item): item for item in base}
            merged.update({ident(item): item for item in override})
            return list(merged.values())
        return base + [item for item in override if item not in base]
    return copy.deepcopy(override)


def merge(base: dict, override: dict) -> dict:
    """docker/cli's merge of a later file into an earlier one: services by name (maps merged, scalars
    overridden, lists appended; ports, secrets, configs and volumes merged by their key; command and
    entrypoint replaced), and the top-level secrets, configs, networks and volumes by name."""
    out = dict(base)
    for key, value in override.items():
        if key == "services":
            services = dict(out.get("services") or {})
            for name, service in (value or {}).items():
                services[name] = _merge_value(None, services[name], service) if name in services \
                    else copy.deepcopy(service)
            out["services"] = services
        elif key in ("secrets", "configs", "networks", "volumes"):
            section = dict(out.get(key) or {})
            section.update(copy.deepcopy(value or {}))
            out[key] = section
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---- the warnings ----------------------------------------------------------------------------------------
def _unhonoured(value, allowed: dict, prefix: str) -> list[str]:
    out = []
    for key, sub in (value or {}).items():
        if key.startswith("x-"):
            continue
        if key not in allowed:
            out.append(prefix + key)
        elif isinstance(allowed[key], dict) and isinstance(sub, dict):
            out.extend(_unhonoured(sub, allowed[key], f"{prefix}{key}."))
    return out


def check_forbidden(data: dict, name: str) -> None:
    found = {}
    services = data.get("services")
    for service in (services.values() if isinstance(services, dict) else []):
        if isinstance(service, dict):
            found.update({k: FORBIDDEN[k] for k in service if k in FORBIDDEN})
    if found:
        raise StackError(f"{name}: Compose file contains unsupported options: "
                         + "; ".join(f"{k}: {v}" for k, v in sorted(found.items())))
    if "include" in data:
        raise StackError(f"{name}: Compose file contains unsupported options: include: stack deploy does not "
                         "include other compose files; give each with -c")


def collect_warnings(files: list[dict]) -> tuple[list[str], dict[str, str]]:
    """(unsupported, deprecated): every key of the files' services that is not honoured, sorted (Docker's
    list, and the compose-spec keys Docker's own schema would not know); the deprecated ones Docker names."""
    unsupported: set[str] = set()
    deprecated: dict[str, str] = {}
    for data in files:
        for key in data:
            if key not in TOP_LEVEL and not key.startswith("x-"):
                unsupported.add(key)
        for section, allowed in (("secrets", OBJECT_KEYS), ("configs", OBJECT_KEYS + ("content",))):
            for name, obj in (data.get(section) or {}).items():
                if isinstance(obj, dict):
                    unsupported.update(f"{section}.{name}.{k}" for k in obj
                                       if k not in allowed and not k.startswith("x-"))
        for service in (data.get("services") or {}).values():
            for key in service or {}:
                if key.startswith("x-") or key in HONOURED or key in SILENT:
                    continue
                if key in DEPRECATED:
                    deprecated[key] = DEPRECATED[key]
                else:
                    unsupported.add(key)
            deploy = (service or {}).get("deploy")
            if isinstance(deploy, dict):
                unsupported.update(_unhonoured(deploy, DEPLOY_HONOURED, "deploy."))
            for port in (service or {}).get("ports") or []:
                if isinstance(port, dict):
                    unsupported.update(f"ports.{k}" for k in ("host_ip", "app_protocol") if port.get(k))
                elif re.match(r"^(\[[^\]]*\]|[^:/]*):[^:/]*:", str(port)):
                    unsupported.add("ports.host_ip")
    return sorted(unsupported), deprecated


# ---- loading ---------------------------------------------------------------------------------------------
def load(paths: list[str], env: dict | None = None, stdin=None) -> Project:
    """The project of one or more compose files (later files merged into earlier ones)."""
    if not paths:
        raise StackError("Please specify a Compose file (with --compose-file)")
    env = dict(os.environ if env is None else env)
    documents = []
    unset: set[str] = set()
    for path in paths:
        name, text = read_file(path, stdin)
        data = parse_yaml(text, name)
        check_forbidden(data, name)
        data = interpolate(data, env, name, unset)
        validate(data, name)
        for section in ("services", "secrets", "configs", "networks", "volumes"):
            if data.get(section) is not None and not isinstance(data[section], dict):
                raise StackError(f"{name}: {section} must be a mapping of names")
        for key, service in (data.get("services") or {}).items():
            if service is not None and not isinstance(service, dict):
                raise StackError(f"{name}: service {key}: must be a mapping")
        documents.append((name, data))
    unsupported, deprecated = collect_warnings([data for _name, data in documents])
    merged: dict = {}
    for name, data in documents:
        data = dict(data)
        services = {}
        for key, service in (data.get("services") or {}).items():
            try:
                services[key] = normalise_service(key, service)
            except StackError as exc:
                raise StackError(f"{name}: service {key}: {exc}") from None
        data["services"] = services
        merged = merge(merged, data)
    if not merged.get("services"):
        raise StackError(f"{paths[0]}: no services to deploy")
    first = paths[0]
    workdir = os.getcwd() if first == "-" else os.path.dirname(os.path.abspath(first))
    project = Project(services=merged["services"], secrets=dict(merged.get("secrets") or {}),
                      configs=dict(merged.get("configs") or {}),
                      volumes={k: dict(v or {}) for k, v in (merged.get("volumes") or {}).items()},
                      workdir=workdir, unsupported=unsupported,
                      deprecated=deprecated,
                      notes=[f'The "{v}" variable is not set. Defaulting to a blank string.' for v in sorted(unset)])
    for service in project.services.values():
        resolve_environment(service, project.workdir, env)
    return project


def parse_env_file(path: str) -> list[tuple[str, str | None]]:
    """docker/cli's opts.ParseEnvFile: KEY=VALUE lines (the value as written, quotes included), a bare KEY
    (taken from the environment), blank lines and # comments skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise StackError(f"cannot read env file {path}: {exc.strerror or exc}") from None
    out = []
    for number, line in enumerate(lines, 1):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not key or any(c.isspace() for c in key):
            raise StackError(f"{path}: line {number}: variable '{key}' contains whitespaces")
        out.append((key, value if sep else None))
    return out


def resolve_environment(service: dict, workdir: str, env: dict) -> None:
    """environment after env_file (environment wins; a variable without a value, or with an empty one, takes the
    value of the deploying shell's variable of that name when there is one, as docker/cli's loader does)."""
    result: dict[str, str | None] = {}

    def add(vars_):
        for key, value in vars_:
            if (value is None or value == "") and key in env:
                result[key] = env[key]
            else:
                result[key] = value
    for item in service.get("env_file") or []:
        path = os.path.join(workdir, os.path.expanduser(item["path"]))
        if not os.path.exists(path) and item.get("required") is False:
            continue
        add(parse_env_file(path))
    add(list((service.get("environment") or {}).items()))
    if result or "environment" in service:
        service["environment"] = result

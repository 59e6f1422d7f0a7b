"""Secrets and configs: the one module that creates, shows, changes, removes and delivers them.

A secret's data is sealed with the swarm's data encryption key (manager/keys.py ClusterKeys) before it enters a
write, bound to its place `secret/<id>/data`, so the Raft log, its snapshots, every Raft message and the request
memory hold it only as `sealed:v1:...`. No digest of it is stored either: a hash of a weak password gives the
password away. The plaintext exists only on the leader while it handles a request (create, /matches, the
delivery of a task's files) and on the node that runs a task using it. A config is not secret: its data is
kept in base64 in the record and shown by `config inspect`.

Both are immutable, as in Docker: only labels change ("only updates to Labels are allowed"), and one in use by
a service cannot be removed. Services name them in `task.secrets` / `task.configs` (check_refs, resolve_refs);
the dispatcher hands a node the data of a task's files only while that task is assigned to it (task_files).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import posixpath
import re

from swarmctl.agent.taskfiles import container_path
from swarmctl.api import limits
from swarmctl.errors import BadRequest, Conflict, Forbidden, NotFound, OutOfSequence
from swarmctl.manager.idempotent import derived_id, run_once
from swarmctl.state.records import is_terminal, new_id

KINDS = ("secret", "config")
DATA = ("data",)  # where a secret's sealed data lives in its record (the sealed value's place ends with it)
MAX_SIZE = {"secret": limits.MAX_SECRET_SIZE, "config": limits.MAX_CONFIG_SIZE}
DEFAULT_MODE = 0o444
UNVERSIONED_RETRIES = 20

_NAME = re.compile(limits.SECRET_NAME_PATTERN)
ONLY_LABELS = "only updates to Labels are allowed"  # swarmkit's text for any other change


# ---- checks ------------------------------------------------------------------------------------------------
def check_name(name) -> str:
    """swarmkit's rule and texts (controlapi.validateConfigOrSecretAnnotations)."""
    if not name or not isinstance(name, str):
        raise BadRequest("name must be provided")
    if len(name) > limits.MAX_SECRET_NAME or not _NAME.match(name):
        raise BadRequest(limits.SECRET_NAME_MESSAGE)
    return name


def check_data(kind: str, data: bytes) -> bytes:
    """Docker's limits and texts: at least one byte, less than 500 KiB (secret) or 1000 KiB (config)."""
    if not 1 <= len(data) < MAX_SIZE[kind]:
        raise BadRequest(f"{kind} data must be larger than 0 and less than {MAX_SIZE[kind]} bytes")
    return data


def decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("data must be base64") from None


def resolve(store, kind: str, ref: str) -> dict:
    """A secret or config by id, name or unique id prefix (Docker's lookup order)."""
    records = store.list(kind)
    for record in records:
        if record["id"] == ref:
            return record
    for record in records:
        if record["spec"]["name"] == ref:
            return record
    matches = [r for r in records if ref and r["id"].startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    raise NotFound(f"{kind} {ref} not found")


def view(record: dict) -> dict:
    """What `inspect` and `ls` show: never a secret's data (not even sealed); a config's data in base64."""
    spec = {"name": record["spec"]["name"], "labels": dict(record["spec"].get("labels") or {})}
    if "data" in record["spec"]:
        spec["data"] = record["spec"]["data"]
    return {"id": record["id"], "version": record.get("version"), "created_at": record.get("created_at"),
            "updated_at": record.get("updated_at"), "spec": spec}


def plaintext(keys, kind: str, record: dict) -> bytes:
    """The data of a secret (unsealed with the DEK; on the leader only) or config."""
    if kind == "config":
        return base64.b64decode(record["spec"]["data"])
    return keys.unseal("secret", record["id"], DATA, record["data"])


def users(store, kind: str, record_id: str) -> list[str]:
    """Names of the services whose task spec uses the secret or config, sorted."""
    field, id_key = f"{kind}s", f"{kind}_id"
    return sorted(s["spec"]["name"] for s in store.list("service")
                  if any(ref.get(id_key) == record_id for ref in s["spec"]["task"].get(field) or ()))


# ---- create, update, remove --------------------------------------------------------------------------------
async def create(store, keys, kind: str, body: dict, request_id: str | None = None) -> dict:
    """Create a secret (data sealed before it is written) or config; a retry with the same request id returns
    the same one."""
    name = check_name(body.get("name"))
    data = check_data(kind, decode(body.get("data") or ""))
    record_id = derived_id(request_id, f"{kind}.create") if request_id else new_id()
    labels = dict(body.get("labels") or {})

    def plan():
        if any(r["spec"]["name"] == name for r in store.list(kind)):
            raise Conflict(f"{kind} {name} already exists")
        if kind == "secret":
            record = {"id": record_id, "spec": {"name": name, "labels": labels},
                      "data": keys.seal("secret", record_id, DATA, data)}
        else:
            record = {"id": record_id, "spec": {"name": name, "labels": labels,
                                                "data": base64.b64encode(data).decode()}}
        return [{"op": "create", "kind": kind, "id": record_id, "record": record, "unique": ["spec.name"]}], \
            {"id": record_id}

    def answer(reply):
        return {"id": reply["id"]}

    def on_error(result):
        error = result.get("error") or ""
        return Conflict(f"{kind} {name} already exists" if "already exists" in error or "unique" in error
                        else error)

    return await run_once(store, f"{kind}.create", request_id, plan, answer, on_error=on_error)


async def update(store, keys, kind: str, ref: str, body: dict, version: int | None = None,
                 request_id: str | None = None) -> dict:
    """Change the labels; a different name or data is refused with Docker's text (the data is immutable)."""
    def plan():
        record = resolve(store, kind, ref)
        if version is not None and record.get("version") != version:
            raise OutOfSequence()
        if body.get("name") is not None and body["name"] != record["spec"]["name"]:
            raise BadRequest(ONLY_LABELS)
        if body.get("data") is not None and not _same(plaintext(keys, kind, record), decode(body["data"])):
            raise BadRequest(ONLY_LABELS)
        labels = dict(body.get("labels") or {})
        reply = {"id": record["id"]}
        if labels == (record["spec"].get("labels") or {}):
            return None, reply
        return [{"op": "patch", "kind": kind, "id": record["id"], "if_version": record["version"],
                 "set": [(["spec", "labels"], labels)]}], reply

    def answer(reply):
        record = store.get(kind, reply["id"])
        if record is None:
            raise NotFound(f"{kind} {ref} not found")
        return view(record)

    return await run_once(store, f"{kind}.update", request_id, plan, answer,
                          retries=0 if version is not None else UNVERSIONED_RETRIES)


async def remove(store, kind: str, ref: str, request_id: str | None = None) -> None:
    """Remove one that no service uses (Docker's text names the services that do). The store checks no condition
    across records, so a service planned at the very same moment may still commit a reference to it; its tasks
    then fail with "secret X not found" instead of starting without the file."""
    def plan():
        record = resolve(store, kind, ref)
        names = users(store, kind, record["id"])
        if names:
            plural = "s" if len(names) > 1 else ""
            raise BadRequest(f"{kind} '{record['spec']['name']}' is in use by the following service{plural}: "
                             + ", ".join(names))
        return [{"op": "delete", "kind": kind, "id": record["id"], "if_version": record["version"]}], \
            {"id": record["id"]}

    await run_once(store, f"{kind}.remove", request_id, plan, lambda _reply: None, retries=UNVERSIONED_RETRIES)


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def matches(store, keys, kind: str, ref: str, data_b64: str) -> dict:
    """Whether the stored data equals the given data, compared in constant time on the leader: how a client
    (stacks, the Ansible modules) tells whether a file changed without the data ever leaving the store."""
    record = resolve(store, kind, ref)
    return {"matches": _same(plaintext(keys, kind, record), decode(data_b64))}


# ---- references from a service's task spec -----------------------------------------------------------------
def _target(kind: str, name: str, target) -> str:
    if target is None or target == "":
        target = name if kind == "secret" else "/" + name
    if not isinstance(target, str) or len(target) > limits.MAX_FILE_TARGET or "\x00" in target:
        raise BadRequest(f"invalid {kind} target {str(target)[:64]!r}")
    clean = posixpath.normpath(target)
    if ".." in clean.split("/") or clean in ("/", "."):
        raise BadRequest(f"invalid {kind} target {target!r}: it must name a file, without '..'")
    return target


def _owner(value, what: str, kind: str) -> str:
    text = "0" if value is None else str(value)
    if not text.isdigit() or len(text) > 10:
        raise BadRequest(f"invalid {kind} {what} {value!r}: expected a numeric id")
    return text


def check_refs(task: dict) -> None:
    """Complete and check task.secrets and task.configs in place (services.validate_spec): a name or id, a
    target (default: the name for a secret, /NAME for a config), uid and gid as numeric strings, and a mode.
    A task without any keeps no empty list, so the specs of services that use none stay as they were."""
    for kind in KINDS:
        refs = task.get(f"{kind}s")
        if not refs:
            task.pop(f"{kind}s", None)
            continue
        if not isinstance(refs, list) or len(refs) > limits.MAX_FILE_REFS:
            raise BadRequest(f"{kind}s must be a list of at most {limits.MAX_FILE_REFS}")
        out, targets = [], set()
        for ref in refs:
            if not isinstance(ref, dict):
                raise BadRequest(f"invalid {kind} reference {ref!r}")
            name, record_id = ref.get(f"{kind}_name"), ref.get(f"{kind}_id")
            if not name and not record_id:
                raise BadRequest(f"a {kind} reference needs {kind}_name or {kind}_id")
            if name is not None:
                check_name(name)
            target = _target(kind, name or record_id, ref.get("target"))
            mode = DEFAULT_MODE if ref.get("mode") is None else ref["mode"]
            if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
                raise BadRequest(f"invalid {kind} mode {mode!r}: expected a file mode, e.g. 0444 (292)")
            path = container_path(kind, target)
            if path in targets:
                raise BadRequest(f"duplicate {kind} target for {name or record_id} not allowed")
            targets.add(path)
            out.append({f"{kind}_id": record_id, f"{kind}_name": name, "target": target,
                        "uid": _owner(ref.get("uid"), "uid", kind), "gid": _owner(ref.get("gid"), "gid", kind),
                        "mode": mode})
        task[f"{kind}s"] = out


def resolve_refs(store, task: dict) -> None:
    """Fill in the ids (and names) of a task spec's references from the store, in place; an unknown one is
    refused as Docker's CLI does ("secret not found: NAME"). Called when a service is planned on the leader."""
    for kind in KINDS:
        records = store.list(kind)
        by_id = {r["id"]: r for r in records}
        by_name = {r["spec"]["name"]: r for r in records}
        for ref in task.get(f"{kind}s") or ():
            record = by_id.get(ref.get(f"{kind}_id") or "")
            if record is None or (ref.get(f"{kind}_name") and record["spec"]["name"] != ref[f"{kind}_name"]):
                record = by_name.get(ref.get(f"{kind}_name") or "")
            if record is None:
                raise BadRequest(f"{kind} not found: {ref.get(f'{kind}_name') or ref.get(f'{kind}_id')}")
            ref[f"{kind}_id"] = record["id"]
            ref[f"{kind}_name"] = record["spec"]["name"]


# ---- delivery ----------------------------------------------------------------------------------------------
def task_files(store, keys, node_id: str, task_id: str) -> dict:
    """The data of a task's secrets and configs, for the node the task is assigned to and only while it is
    meant to run there: {"secrets": [{"id", "data"}], "configs": [...]}, data in base64. Called by the
    dispatcher (on the leader), which unseals here and sends over the node's mutual-TLS session."""
    task = store.get("task", task_id)
    if task is None or task.get("node_id") != node_id:
        raise Forbidden(f"task {task_id} is not assigned to node {node_id}")
    if task["desired_state"] != "running" or is_terminal(task["status"]["state"]):
        raise Forbidden(f"task {task_id} is not meant to run")
    out: dict = {}
    for kind in KINDS:
        files = []
        for ref in task["spec"].get(f"{kind}s") or ():
            record = store.get(kind, ref[f"{kind}_id"])
            if record is None:
                raise NotFound(f"{kind} {ref.get(f'{kind}_name') or ref[f'{kind}_id']} not found")
            files.append({"id": record["id"], "data": base64.b64encode(plaintext(keys, kind, record)).decode()})
        out[f"{kind}s"] = files
    return out

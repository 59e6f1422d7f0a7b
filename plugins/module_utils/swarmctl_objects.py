# Copyright (c) 2026 swarmctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

"""What the secret and config modules share: reading the data, finding the managed records (one name, or
NAME_v1, NAME_v2 ... with rolling versions), planning (create, replace, roll, label update, remove) and
carrying out a plan through the daemon's API (/v1/secrets, /v1/configs).

Standard library only. A secret's data never leaves the daemon: whether it changed is asked with
POST /v1/secrets/{id}/matches (the leader compares in constant time); a config's data is in its view.
Nothing in a plan, a diff or a result holds a secret's data.
"""

from __future__ import annotations

import base64
import binascii
import re

from ansible_collections.swarmctl.cluster.plugins.module_utils.swarmctl_client import (
    SwarmctlError,
    update_with_retry,
    with_version,
)

# the label community.docker.docker_secret / docker_config put on rolling versions
VERSION_LABEL = "ansible_version"
HIDDEN = "VALUE_HIDDEN"
HIDDEN_CHANGED = "VALUE_HIDDEN (changed)"

KINDS = {
    "secret": {"path": "/v1/secrets", "max_size": 500 * 1024, "ref_key": "secret_id"},
    "config": {"path": "/v1/configs", "max_size": 1000 * 1024, "ref_key": "config_id"},
}


class ObjectParamError(ValueError):
    pass


def read_data(params):
    """The data as bytes: O(data) (base64-decoded with data_is_b64) or the file O(data_src); None if neither."""
    if params.get("data_src") is not None:
        try:
            with open(params["data_src"], "rb") as f:
                return f.read()
        except (IOError, OSError) as exc:
            raise ObjectParamError("Error while reading %s: %s" % (params["data_src"], exc.strerror or exc))
    data = params.get("data")
    if data is None:
        return None
    if params.get("data_is_b64"):
        try:
            return base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ObjectParamError("data is not valid base64 (data_is_b64=true)")
    return data.encode("utf-8")


NAME_PATTERN = re.compile(r"^[A-Za-z0-9](?:[-_.A-Za-z0-9]*[A-Za-z0-9])?$")
MAX_NAME = 64
NAME_MESSAGE = ("invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character "
                "must be [a-zA-Z0-9]")


def check_name(name):
    """swarmkit's name rule and text (the daemon's), so check mode refuses what the daemon would."""
    if not name or len(name) > MAX_NAME or not NAME_PATTERN.match(name):
        raise ObjectParamError("%s: %s" % (NAME_MESSAGE, name))


def check_size(kind, data):
    """Docker's limits (less than 500 KiB for a secret, 1000 KiB for a config) and text, so check mode refuses
    what the daemon would."""
    limit = KINDS[kind]["max_size"]
    if not data or len(data) >= limit:
        raise ObjectParamError("%s data must be larger than 0 and less than %d bytes" % (kind, limit))


def normalize_labels(labels):
    """Label values as strings (None stays None: labels left out)."""
    if labels is None:
        return None
    out = {}
    for key, value in labels.items():
        key = str(key)
        if not key or any(c.isspace() for c in key):
            raise ObjectParamError("invalid label key %r: keys must be non-empty and contain no whitespace" % (key,))
        out[key] = "" if value is None else str(value)
    return out


def record_name(record):
    return record["spec"]["name"]


def record_labels(record):
    return dict(record["spec"].get("labels") or {})


def version_of(record, name):
    """The rolling version of a record: its ansible_version label, else the N of NAME_vN, else 0."""
    try:
        return int(record_labels(record).get(VERSION_LABEL))
    except (TypeError, ValueError):
        pass
    match = re.match(r"^%s_v(\d+)$" % re.escape(name), record_name(record))
    return int(match.group(1)) if match else 0


def managed_records(records, name, rolling):
    """The records the module manages, oldest first: the one named NAME, or NAME_v1, NAME_v2 ... (rolling)."""
    if not rolling:
        return [r for r in records if record_name(r) == name]
    pattern = re.compile(r"^%s_v\d+$" % re.escape(name))
    found = [r for r in records if pattern.match(record_name(r))]
    return sorted(found, key=lambda r: (version_of(r, name), r.get("created_at") or ""))


def labels_differ(wanted, current):
    """community.docker's comparison (allow_more_present): every wanted label has that value; more are fine."""
    if wanted is None:
        return False
    return any(current.get(k) != v for k, v in wanted.items())


def users_of(services, kind, record_id):
    """Names of the services whose task spec references the secret or config with this id."""
    key = KINDS[kind]["ref_key"]
    users = []
    for service in services or []:
        refs = ((service.get("spec") or {}).get("task") or {}).get(kind + "s") or []
        if any(ref.get(key) == record_id for ref in refs):
            users.append(service["spec"]["name"])
    return sorted(users)


def in_use_message(kind, name, users):
    """Docker's text for the removal of a secret or config that services use."""
    return "%s '%s' is in use by the following service%s: %s" % (
        kind, name, "s" if len(users) > 1 else "", ", ".join(users))


def plan(kind, records, params, data, data_matches, services=None, strict=True):
    """Decide what to do. records: every record of the kind (GET list); data: the wanted bytes (present);
    data_matches(record) -> whether the record holds data (asked only when needed); services: GET /v1/services,
    to tell which records are in use.

    Returns dict(action=create|replace|roll|labels|remove|none, name (of the record afterwards), labels (of a
    new record, or the update), target (the record updated or replaced), remove ([records to delete]),
    keep_in_use ([(record, users)] old versions kept because services use them), data_changed, labels_changed,
    warnings).

    A removal the daemon would refuse (services use the record) raises ObjectParamError with its text; with
    strict=False (check mode: an earlier task of the play may remove those services) it is a warning instead."""
    name = params["name"]
    rolling = bool(params.get("rolling_versions"))
    mine = managed_records(records, name, rolling)
    out = dict(action="none", name=None, labels=None, target=None, remove=[], keep_in_use=[],
               data_changed=False, labels_changed=False, warnings=[])

    def refuse(message):
        if strict:
            raise ObjectParamError(message)
        out["warnings"].append("the daemon would refuse this as things are now: " + message)
    if params["state"] == "absent":
        if mine:
            out.update(action="remove", remove=list(mine))
            for record in mine:
                users = users_of(services, kind, record["id"])
                if users:
                    refuse(in_use_message(kind, record_name(record), users))
        return out
    wanted = normalize_labels(params.get("labels"))
    current = mine[-1] if mine else None
    version = version_of(current, name) if (current and rolling) else 0
    if current is None:
        labels = dict(wanted or {})
        if rolling:
            labels[VERSION_LABEL] = "1"
        out.update(action="create", name="%s_v1" % name if rolling else name, labels=labels)
        check_name(out["name"])
    else:
        current_labels = record_labels(current)
        data_changed = not data_matches(current)
        labels_changed = labels_differ(wanted, current_labels)
        out.update(data_changed=data_changed, labels_changed=labels_changed, target=current,
                   name=record_name(current))
        base = dict(wanted) if wanted is not None else dict(
            (k, v) for k, v in current_labels.items() if k != VERSION_LABEL)
        if data_changed or params.get("force"):
            labels = dict(base)
            if rolling:
                labels[VERSION_LABEL] = str(version + 1)
                out.update(action="roll", name="%s_v%d" % (name, version + 1), labels=labels)
                check_name(out["name"])
            else:
                users = users_of(services, kind, current["id"])
                if users:
                    refuse("%s; the data of a %s cannot change while services use it: remove it from them first, "
                           "or use rolling_versions=true" % (in_use_message(kind, name, users), kind))
                out.update(action="replace", labels=labels, remove=[current])
        elif labels_changed:
            labels = dict(base)
            if rolling:
                labels[VERSION_LABEL] = current_labels.get(VERSION_LABEL) or str(version)
            out.update(action="labels", labels=labels)
    if rolling:
        keep = params.get("versions_to_keep")
        keep = 5 if keep is None else keep
        if keep >= 0:
            versions = list(mine) + ([None] if out["action"] in ("create", "roll") else [])
            excess = max(len(versions) - max(keep, 1), 0)
            for record in versions[:excess]:
                users = users_of(services, kind, record["id"])
                if users:
                    out["keep_in_use"].append((record, users))
                else:
                    out["remove"].append(record)
        if out["action"] == "none" and out["remove"]:
            out["action"] = "prune"
    return out


def summary(kind, record, data_text=None, rolling_names=None):
    """The diff's view of a record: name, labels and data (a secret's is always hidden)."""
    if record is None:
        return {}
    out = {"name": record_name(record), "labels": record_labels(record)}
    if kind == "secret":
        out["data"] = HIDDEN
    elif data_text is not None:
        out["data"] = data_text
    if rolling_names is not None:
        out["versions"] = list(rolling_names)
    return out


def data_text(data):
    """A config's data for the diff: the text if it is UTF-8, else base64."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode("ascii")


def config_data(record):
    """The bytes of a config view's spec.data (base64), or None."""
    raw = record["spec"].get("data")
    if raw is None:
        return None
    try:
        return base64.b64decode(raw)
    except (binascii.Error, ValueError):
        return None


def diff_of(kind, decision, records, params, data):
    """before/after for --diff. A secret's data shows as VALUE_HIDDEN (VALUE_HIDDEN (changed) when it changes)."""
    rolling = bool(params.get("rolling_versions"))
    mine = managed_records(records, params["name"], rolling)
    current = mine[-1] if mine else None
    names = [record_name(r) for r in mine] if rolling else None

    def text_of(record):
        return data_text(config_data(record)) if (kind == "config" and record is not None) else None
    before = summary(kind, current, text_of(current), names)
    action = decision["action"]
    if action == "remove":
        return dict(before=before, after={})
    removed = set(r["id"] for r in decision["remove"])
    after_names = [n for r, n in zip(mine, names or [None] * len(mine)) if r["id"] not in removed] if rolling else None
    if action in ("create", "replace", "roll"):
        after = {"name": decision["name"], "labels": dict(decision["labels"] or {})}
        if kind == "secret":
            after["data"] = HIDDEN_CHANGED if (action == "create" or decision["data_changed"]) else HIDDEN
        else:
            after["data"] = data_text(data)
        if rolling:
            after["versions"] = (after_names or []) + ([decision["name"]] if action != "replace" else [])
        return dict(before=before, after=after)
    after = dict(before)
    if action == "labels":
        after["labels"] = dict(decision["labels"])
    if rolling:
        after["versions"] = after_names
    return dict(before=before, after=after)


def execute(client, kind, decision, params, data, warn, done=None):
    """Carry out a plan. Returns (the record the name points at afterwards or None, [names removed]). `done`
    (a list) collects each change as it is made, so a failure part way knows whether anything changed."""
    path = KINDS[kind]["path"]
    removed = []
    done = [] if done is None else done
    action = decision["action"]
    result = decision["target"]
    if action in ("remove", "replace"):
        for record in decision["remove"]:
            client.delete("%s/%s" % (path, record["id"]))
            removed.append(record_name(record))
            done.append("removed")
        result = None
    if action in ("create", "replace", "roll"):
        body = {"name": decision["name"], "labels": decision["labels"] or {},
                "data": base64.b64encode(data).decode("ascii")}
        answer = client.post(path, body)
        done.append("created")
        result = client.get("%s/%s" % (path, answer["id"]))
    elif action == "labels":
        target = decision["target"]
        record_path = "%s/%s" % (path, target["id"])
        reads = [target]

        def plan_update(current):
            return {"labels": decision["labels"]}, [("spec", "labels")]
        update_with_retry(lambda: reads.pop() if reads else client.get(record_path), plan_update,
                          lambda current, body: client.post(with_version(record_path + "/update", current), body))
        done.append("labels")
        result = client.get(record_path)
    if action in ("create", "roll", "prune", "none", "labels"):
        for record in decision["remove"]:
            try:
                client.delete("%s/%s" % (path, record["id"]))
                removed.append(record_name(record))
                done.append("removed")
            except SwarmctlError as exc:
                if exc.status == 404:
                    continue
                if "in use" in exc.message:  # a service took it up since the plan: keep it
                    warn("kept %s %s: %s" % (kind, record_name(record), exc.message))
                    continue
                raise
    return result, removed


def secret_matches(client, record, data):
    """Whether the secret record holds data: the daemon compares (the data never comes back)."""
    answer = client.post("/v1/secrets/%s/matches" % record["id"], {"data": base64.b64encode(data).decode("ascii")})
    return bool(answer.get("matches"))


def object_argument_spec():
    """The options of community.docker.docker_secret / docker_config the two modules share."""
    return dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        data_is_b64=dict(type="bool", default=False),
        data_src=dict(type="path"),
        labels=dict(type="dict"),
        force=dict(type="bool", default=False),
        rolling_versions=dict(type="bool", default=False),
        versions_to_keep=dict(type="int", default=5),
    )


def run(module, client, kind):
    """The whole module: read, plan, diff, check mode, execute; exits the module."""
    params = module.params
    path = KINDS[kind]["path"]
    try:
        data = read_data(params) if params["state"] == "present" else None
        if data is not None:
            check_size(kind, data)
        records = client.get(path)
        services = client.get("/v1/services")
    except ObjectParamError as exc:
        module.fail_json(msg=str(exc))
    except SwarmctlError as exc:
        module.fail_json(msg=exc.message, status=exc.status)

    def matches(record):
        if kind == "secret":
            return secret_matches(client, record, data)
        return config_data(record) == data
    try:
        decision = plan(kind, records, params, data, matches, services, strict=not module.check_mode)
    except ObjectParamError as exc:
        module.fail_json(msg=str(exc))
    except SwarmctlError as exc:
        module.fail_json(msg=exc.message, status=exc.status)
    action = decision["action"]
    changed = action != "none"
    result = dict(changed=changed)
    id_key, name_key = kind + "_id", kind + "_name"
    target = decision["target"]
    if params["state"] == "present":
        keeps = action in ("none", "labels", "prune")
        result[id_key] = target["id"] if (keeps and target) else None
        result[name_key] = decision["name"]
    result["removed"] = [record_name(r) for r in decision["remove"]]
    if changed:
        result["diff"] = diff_of(kind, decision, records, params, data)
    for warning in decision["warnings"]:
        module.warn(warning)
    for record, users in decision["keep_in_use"]:
        module.warn("%s %s is kept although it is beyond versions_to_keep: %s"
                    % (kind, record_name(record), in_use_message(kind, record_name(record), users)))
    if module.check_mode or not changed:
        module.exit_json(**result)
    done = []
    try:
        record, removed = execute(client, kind, decision, params, data, module.warn, done)
    except SwarmctlError as exc:
        # changed only if a step before the failing one was made (e.g. a replace removed the old record)
        module.fail_json(msg=exc.message, status=exc.status, changed=bool(done))
    result["removed"] = removed
    if params["state"] == "present" and record is not None:
        result[id_key] = record["id"]
        result[name_key] = record_name(record)
    module.exit_json(**result)

#!/usr/bin/python
# Copyright (c) 2026 swarmctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node
short_description: Manage a node of a swarmctl swarm
version_added: 0.1.0
description:
  - Changes a node's role, its availability, and its labels, through a manager of the swarm.
  - Parameter names follow M(community.docker.docker_node), so playbooks move over by renaming the module.
author:
  - swarmctl maintainers (@swarmctl)
attributes:
  check_mode:
    description: Predicts the change without making it.
    support: full
  diff_mode:
    description: Shows the node's role, availability and labels before and after.
    support: full
extends_documentation_fragment:
  - swarmctl.cluster.swarmctl
options:
  hostname:
    description:
      - The node, by hostname, id, or unique id prefix.
      - If several nodes have this hostname, use the id; the module fails otherwise.
    type: str
    required: true
  labels:
    description:
      - Node labels (user-defined key/value metadata, used by placement constraints C(node.labels.KEY)).
      - What the node has afterwards depends on O(labels_state) and O(labels_to_remove).
      - Keys must be non-empty and contain no whitespace; values are stored as strings.
    type: dict
  labels_state:
    description:
      - V(merge) adds the labels of O(labels) and updates their values; other labels stay. If O(labels) is empty,
        nothing changes.
      - V(replace) makes O(labels) the node's only labels. If O(labels) is not given or empty, all labels are
        removed.
    type: str
    default: merge
    choices: [merge, replace]
  labels_to_remove:
    description:
      - Label keys to remove from the node. Keys the node does not have are ignored.
      - A key that is also in O(labels) keeps the value from O(labels) (with a warning).
      - Ignored when O(labels_state=replace).
    type: list
    elements: str
  availability:
    description:
      - Node availability. If not given, it stays as it is.
    type: str
    choices: [active, pause, drain]
  role:
    description:
      - Node role. If not given, it stays as it is. Promotion and demotion are guarded by the swarm's quorum
        checks (the last manager cannot be demoted).
    type: str
    choices: [manager, worker]
seealso:
  - module: swarmctl.cluster.swarm
  - module: swarmctl.cluster.info
"""

EXAMPLES = r"""
- name: Drain a node
  swarmctl.cluster.node:
    hostname: worker1
    availability: drain

- name: Promote a node to manager
  swarmctl.cluster.node:
    hostname: worker2
    role: manager

- name: Add or update labels, keeping the others
  swarmctl.cluster.node:
    hostname: worker1
    labels:
      zone: a
      disk: ssd

- name: Set exactly these labels
  swarmctl.cluster.node:
    hostname: worker1
    labels:
      zone: b
    labels_state: replace

- name: Remove some labels
  swarmctl.cluster.node:
    hostname: worker1
    labels_to_remove:
      - disk
"""

RETURN = r"""
node:
  description:
    - The node record after the update (C(GET /v1/nodes/ID)); in check mode, the record with the predicted spec.
  returned: success
  type: dict
  contains:
    id:
      description: The node id.
      type: str
      returned: always
    spec:
      description: C(role), C(availability) and C(labels).
      type: dict
      returned: always
    description:
      description: Hostname, engine labels, resources and addresses.
      type: dict
      returned: always
    status:
      description: C(state) (V(unknown), V(ready) or V(down)), C(addr) and C(message).
      type: dict
      returned: always
    manager_status:
      description: For managers, their addresses, whether they lead and their reachability; null for workers.
      type: dict
      returned: always
changes:
  description: The node settings that changed, or would change in check mode.
  returned: success
  type: list
  elements: str
  sample: ["availability", "labels"]
"""

import copy

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.swarmctl.cluster.plugins.module_utils.swarmctl_client import (
    SwarmctlError,
    client_from_module,
    swarmctl_argument_spec,
    update_with_retry,
    with_version,
)


class NodeParamError(ValueError):
    pass


def label_key_problem(key):
    if not key or any(c.isspace() for c in key):
        return "invalid label key %r: keys must be non-empty and contain no whitespace" % (key,)
    return None


def wanted_labels(current, labels, labels_state, labels_to_remove, warn=None):
    """The labels the node should have afterwards (community.docker.docker_node's rules)."""
    if labels is not None:
        labels = dict((str(k), "" if v is None else str(v)) for k, v in labels.items())
        for key in labels:
            problem = label_key_problem(key)
            if problem:
                raise NodeParamError(problem)
    current = dict(current or {})
    if labels_state == "replace":
        return dict(labels or {})
    new = dict(current)
    new.update(labels or {})
    for key in labels_to_remove or []:
        if labels is not None and key in labels:
            if warn:
                warn("Label '%s' listed both in 'labels' and 'labels_to_remove'. Keeping the assigned label value."
                     % key)
            continue
        new.pop(key, None)
    return new


def plan(node, params, warn=None):
    """What to change on node: (changes, update body or None, role action or None, predicted node)."""
    spec = node["spec"]
    changes = []
    body = {}
    predicted = copy.deepcopy(node)
    if params.get("availability") and params["availability"] != spec["availability"]:
        changes.append("availability")
        body["availability"] = params["availability"]
        predicted["spec"]["availability"] = params["availability"]
    current_labels = spec.get("labels") or {}
    new_labels = wanted_labels(current_labels, params.get("labels"), params.get("labels_state") or "merge",
                               params.get("labels_to_remove"), warn)
    if new_labels != current_labels:
        changes.append("labels")
        predicted["spec"]["labels"] = new_labels
        if (params.get("labels_state") or "merge") == "replace":
            body["labels"] = new_labels
        else:
            add = dict((k, v) for k, v in new_labels.items() if current_labels.get(k) != v)
            remove = sorted(k for k in current_labels if k not in new_labels)
            if add:
                body["labels_add"] = add
            if remove:
                body["labels_rm"] = remove
    action = None
    if params.get("role") and params["role"] != spec["role"]:
        changes.append("role")
        action = "promote" if params["role"] == "manager" else "demote"
        predicted["spec"]["role"] = params["role"]
    return changes, (body or None), action, predicted


def update_paths(body):
    """The fields of the node record an update body changes, for the retry rule (still_meaningful)."""
    paths = []
    if "availability" in body:
        paths.append(("spec", "availability"))
    if "labels" in body:
        paths.append(("spec", "labels"))
    for key in list(body.get("labels_add") or {}) + list(body.get("labels_rm") or []):
        paths.append(("spec", "labels", key))
    return paths


def summary(node):
    spec = node["spec"]
    return {"role": spec["role"], "availability": spec["availability"], "labels": dict(spec.get("labels") or {})}


def main():
    argument_spec = swarmctl_argument_spec(
        hostname=dict(type="str", required=True),
        labels=dict(type="dict"),
        labels_state=dict(type="str", default="merge", choices=["merge", "replace"]),
        labels_to_remove=dict(type="list", elements="str"),
        availability=dict(type="str", choices=["active", "pause", "drain"]),
        role=dict(type="str", choices=["manager", "worker"]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    client = client_from_module(module)
    ref = module.params["hostname"].strip()
    if not ref:
        module.fail_json(msg="hostname must not be empty")
    try:
        node = client.get("/v1/nodes/%s" % ref)
    except SwarmctlError as exc:
        module.fail_json(msg=exc.message, status=exc.status)
    try:
        changes, body, action, predicted = plan(node, module.params, module.warn)
    except NodeParamError as exc:
        module.fail_json(msg=str(exc))
    result = dict(changed=bool(changes), changes=changes, node=predicted)
    if changes:
        result["diff"] = dict(before=summary(node), after=summary(predicted))
    if changes and not module.check_mode:
        path = "/v1/nodes/%s" % node["id"]
        done = []
        reads = [node]

        def plan_update(current):
            planned = plan(current, module.params)[1] or {}
            return planned, update_paths(planned)

        try:
            if body:
                # with the node's version; on "update out of sequence" re-read and retry while the fields the
                # update changes are as first read (module_utils.update_with_retry)
                update_with_retry(lambda: reads.pop() if reads else client.get(path), plan_update,
                                  lambda current, planned: client.post(with_version(path + "/update", current), planned))
                done.extend(c for c in changes if c != "role")
            if action:
                client.post("%s/%s" % (path, action), {})
                done.append("role")
            result["node"] = client.get(path)
        except SwarmctlError as exc:
            module.fail_json(msg=exc.message, status=exc.status, changed=bool(done), changes=done)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

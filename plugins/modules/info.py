#!/usr/bin/python
# Copyright (c) 2026 swarmctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: info
short_description: Facts about a swarmctl node and its swarm
version_added: 0.1.0
description:
  - Tells whether the local swarmctl daemon is part of a swarm and whether it is a manager, and on a manager
    returns the swarm, its join tokens, and on request its nodes, services and tasks.
  - Modeled on M(community.docker.docker_swarm_info). Works on managers, on workers, and on nodes outside
    any swarm (it only reads).
author:
  - swarmctl maintainers (@swarmctl)
attributes:
  check_mode:
    description: The module only reads; it runs the same in check mode.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
extends_documentation_fragment:
  - swarmctl.cluster.swarmctl
options:
  nodes:
    description:
      - List the swarm's nodes (managers only).
    type: bool
    default: false
  nodes_filters:
    description:
      - Only list nodes that match all of these filters. Each value is a string or a list of strings (any of them).
      - Keys are C(id) (id prefix), C(name) (hostname), C(role), C(availability), C(state) (V(ready), V(down),
        V(unknown)) and C(label) (C(KEY) or C(KEY=VALUE)).
    type: dict
  services:
    description:
      - List the swarm's services (managers only).
    type: bool
    default: false
  services_filters:
    description:
      - Only list services that match all of these filters. Each value is a string or a list of strings.
      - Keys are C(id) (id prefix), C(name), C(mode) and C(label) (C(KEY) or C(KEY=VALUE)).
    type: dict
  tasks:
    description:
      - List the swarm's tasks (managers only).
    type: bool
    default: false
  tasks_filters:
    description:
      - Only list tasks that match all of these filters. Each value is a string or a list of strings.
      - Keys are C(id) (id prefix), C(name) (task name, for example C(web.1)), C(service) (service name or id),
        C(node) (hostname or node id) and C(desired-state) (for example V(running)).
    type: dict
  unlock_key:
    description:
      - Return the swarm's unlock key (C(SWMKEY-1-...)) in RV(swarm_unlock_key) (managers only). Null when
        autolock is off.
    type: bool
    default: false
  verbose_output:
    description:
      - With V(false), RV(nodes), RV(services) and RV(tasks) hold community.docker's short summaries (the
        columns of C(node ls), C(service ls) and C(service ps)); with V(true) the full records of the API.
    type: bool
    default: false
  events_since:
    description:
      - Return the swarm's events (C(GET /v1/events), as C(swarmctl events --since)) from this time on, as kept by
        the manager the module runs on (the last 10,000 events, at most 15 minutes). Managers only.
      - Docker's forms of a time, as C(docker events --since), for example C(10m) (that long ago), Unix seconds
        such as C(1700000000), or RFC 3339 such as C(2026-12-07T01:02:03Z).
      - Not set means no events are returned.
    type: str
  events_until:
    description:
      - The end of the events returned with O(events_since), in the same forms. Not set means now.
    type: str
  events_filters:
    description:
      - Only return events that match all of these filters. Each value is a string or a list of strings (any of
        them).
      - Keys are C(type) (V(service), V(node), V(task), V(secret), V(config), V(cluster)), C(event) (V(create),
        V(update), V(remove)), C(service) (name or id; its events and its tasks'), C(node) (hostname or id),
        C(secret), C(config) and C(scope).
    type: dict
seealso:
  - module: swarmctl.cluster.swarm
"""

EXAMPLES = r"""
- name: Read swarm facts
  swarmctl.cluster.info:
  register: result

- name: Print the worker join token on a manager
  ansible.builtin.debug:
    msg: "{{ result.swarm_facts.JoinTokens.Worker }}"
  when: result.swarm_manager

- name: List the ready workers and the running tasks of one service
  swarmctl.cluster.info:
    nodes: true
    nodes_filters:
      role: worker
      state: ready
    tasks: true
    tasks_filters:
      service: web
      desired-state: running
  register: result

- name: What happened to the service web in the last 10 minutes
  swarmctl.cluster.info:
    events_since: 10m
    events_filters:
      type: service
      service: web
  register: result
"""

RETURN = r"""
can_talk_to_docker:
  description:
    - Whether the module reached the local swarmctl daemon (community.docker's name; swarmctl has no Docker
      daemon of its own in this place). Always V(true) when the module succeeds.
  returned: always
  type: bool
  sample: true
docker_swarm_active:
  description: Same as RV(swarm_active), under community.docker's name.
  returned: always
  type: bool
  sample: true
docker_swarm_manager:
  description: Same as RV(swarm_manager), under community.docker's name.
  returned: always
  type: bool
  sample: true
swarm_unlock_key:
  description:
    - The key that unlocks a manager restarted under autolock (C(swarmctl swarm unlock)), or null when autolock
      is off.
  returned: When O(unlock_key=true) and the node is a manager.
  type: str
  sample: SWMKEY-1-...
swarm_active:
  description: Whether the node is part of a swarm.
  returned: always
  type: bool
  sample: true
swarm_manager:
  description: Whether the node is a manager of its swarm.
  returned: always
  type: bool
  sample: true
local_node:
  description:
    - The local daemon's own view (C(GET /v1/info)), with C(node_id), C(cluster_id), C(role),
      C(local_node_state), C(hostname), C(addr), C(manager_addr) and C(managers).
  returned: always
  type: dict
swarm_facts:
  description:
    - The swarm (C(GET /v1/swarm)) with the join tokens under C(JoinTokens.Worker) and C(JoinTokens.Manager),
      and the managers' management addresses under C(manager_addrs).
    - Empty unless the node is a manager.
  returned: always
  type: dict
nodes:
  description:
    - The swarm's nodes that match O(nodes_filters).
    - With O(verbose_output=false), community.docker's summary of each, the columns of C(node ls) - C(ID),
      C(Hostname), C(Status), C(Availability), C(ManagerStatus) (V(Leader), V(reachable), V(unreachable) or null
      for a worker) and C(EngineVersion) (the node's swarmctl version, when known).
    - With O(verbose_output=true), the records of C(GET /v1/nodes).
  returned: When O(nodes=true) and the node is a manager.
  type: list
  elements: dict
  sample: [{"ID": "4u8dmxcu1vzbd0fjmf9l0jyvd", "Hostname": "manager1", "Status": "ready",
            "Availability": "active", "ManagerStatus": "Leader", "EngineVersion": null}]
services:
  description:
    - The swarm's services that match O(services_filters).
    - With O(verbose_output=false), the columns of C(service ls) - C(ID), C(Name), C(Mode) (V(Replicated) or
      V(Global)), C(Replicas) (null for a global service), C(Image) and C(Ports).
    - With O(verbose_output=true), the records of C(GET /v1/services).
  returned: When O(services=true) and the node is a manager.
  type: list
  elements: dict
tasks:
  description:
    - The swarm's tasks that match O(tasks_filters).
    - With O(verbose_output=false), the columns of C(service ps) - C(ID), C(ContainerID), C(Image), C(Node) (the
      hostname), C(DesiredState), C(CurrentState) and C(Error) (null without error).
    - With O(verbose_output=true), the records of C(GET /v1/tasks).
  returned: When O(tasks=true) and the node is a manager.
  type: list
  elements: dict
events:
  description:
    - The events from O(events_since) to O(events_until) that match O(events_filters), in Raft order, each as
      C(docker events --format json) prints one, with C(Type), C(Action), C(Actor) (C(ID), C(Attributes)), C(scope),
      C(time), C(timeNano) and swarmctl's C(index).
  returned: When O(events_since) is set and the node is a manager.
  type: list
  elements: dict
  sample:
    - Type: service
      Action: update
      Actor:
        ID: j7n1lawfjfc43pkv4hxq5k0a4
        Attributes:
          name: web
          replicas.old: "1"
          replicas.new: "3"
      scope: swarm
      time: 1796607878
      timeNano: 1796607878823488256
      index: 42
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.swarmctl.cluster.plugins.module_utils.swarmctl_client import (
    SwarmctlError,
    client_from_module,
    parse_timestamp,
    swarmctl_argument_spec,
)

EVENT_FILTERS = ("type", "event", "service", "node", "secret", "config", "scope")


class FilterError(ValueError):
    pass


def _values(value):
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _label_match(labels, wanted):
    key, sep, value = wanted.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == value


def _field(kind, item, key):
    """The values of item that filter key compares with (nodes, services or tasks)."""
    if key == "id":
        return item.get("id")
    if kind == "nodes":
        return {"name": item["description"].get("hostname"), "role": item["spec"].get("role"),
                "availability": item["spec"].get("availability"), "state": item["status"].get("state"),
                "label": item["spec"].get("labels") or {}}[key]
    if kind == "services":
        spec = item["spec"]
        return {"name": spec.get("name"), "mode": spec.get("mode"), "label": spec.get("labels") or {}}[key]
    return {"name": item.get("name"), "service": (item.get("service_name"), item.get("service_id")),
            "node": (item.get("node_name"), item.get("node_id")), "desired-state": item.get("desired_state")}[key]


def matches(kind, item, key, wanted):
    """Whether item passes the filter key=wanted (one value)."""
    actual = _field(kind, item, key)
    if key == "id":
        return bool(actual) and actual.startswith(wanted)
    if key == "label":
        return _label_match(actual, wanted)
    if isinstance(actual, tuple):
        return wanted in [a for a in actual if a is not None]
    return actual == wanted


FILTER_KEYS = {
    "nodes": ["availability", "id", "label", "name", "role", "state"],
    "services": ["id", "label", "mode", "name"],
    "tasks": ["desired-state", "id", "name", "node", "service"],
}


def check_filters(kind, filters):
    """Fail early on filter keys this module does not know."""
    if not filters:
        return
    known = FILTER_KEYS[kind]
    for key in filters:
        if key not in known:
            raise FilterError("unknown %s_filters key %r: use %s" % (kind, key, ", ".join(known)))


def apply_filters(kind, items, filters):
    """Items that match every filter (a filter's value may be a list: any of its values)."""
    if not filters:
        return list(items)
    return [item for item in items
            if all(any(matches(kind, item, key, v) for v in _values(value)) for key, value in filters.items())]


def summary(kind, item):
    """community.docker.docker_swarm_info's short form of a node, service or task record."""
    if kind == "nodes":
        status = item.get("manager_status")
        manager = None
        if status:
            manager = "Leader" if status.get("leader") else status.get("reachability")
        description = item.get("description") or {}
        return {"ID": item.get("id"), "Hostname": description.get("hostname"),
                "Status": (item.get("status") or {}).get("state"),
                "Availability": (item.get("spec") or {}).get("availability"), "ManagerStatus": manager,
                "EngineVersion": description.get("version")}
    if kind == "services":
        spec = item.get("spec") or {}
        replicated = spec.get("mode", "replicated") == "replicated"
        ports = (spec.get("endpoint") or {}).get("ports") or spec.get("ports") or []
        return {"ID": item.get("id"), "Name": spec.get("name"), "Mode": "Replicated" if replicated else "Global",
                "Replicas": spec.get("replicas") if replicated else None,
                "Image": (spec.get("task") or {}).get("image"), "Ports": ports}
    status = item.get("status") or {}
    return {"ID": item.get("id"), "ContainerID": status.get("container_id"),
            "Image": (item.get("spec") or {}).get("image"), "Node": item.get("node_name"),
            "DesiredState": item.get("desired_state"), "CurrentState": status.get("state"),
            "Error": status.get("err") or None}


def _events_path(params):
    """GET /v1/events?since=...&until=...&filter=K=V for the events options (None without events_since)."""
    from urllib.parse import quote
    if params["events_since"] is None:
        if params["events_until"] is not None or params["events_filters"]:
            raise ValueError("events_until and events_filters need events_since")
        return None
    since = parse_timestamp(params["events_since"], "events_since")
    until = parse_timestamp(params["events_until"], "events_until") if params["events_until"] is not None else None
    if until is None:
        import time
        until = time.time()
    if until < since:
        raise ValueError("events_until is before events_since")
    query = ["since=%.6f" % since, "until=%.6f" % until]
    for key, value in sorted((params["events_filters"] or {}).items()):
        if key not in EVENT_FILTERS:
            raise ValueError("unknown events_filters key %r: expected one of %s" % (key, ", ".join(EVENT_FILTERS)))
        for item in _values(value):
            query.append("filter=" + quote("%s=%s" % (key, item), safe=""))
    return "/v1/events?" + "&".join(query)


def main():
    argument_spec = swarmctl_argument_spec(
        nodes=dict(type="bool", default=False),
        nodes_filters=dict(type="dict"),
        services=dict(type="bool", default=False),
        services_filters=dict(type="dict"),
        tasks=dict(type="bool", default=False),
        tasks_filters=dict(type="dict"),
        unlock_key=dict(type="bool", default=False, no_log=False),
        verbose_output=dict(type="bool", default=False),
        events_since=dict(type="str"),
        events_until=dict(type="str"),
        events_filters=dict(type="dict"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        for kind in FILTER_KEYS:
            check_filters(kind, module.params["%s_filters" % kind])
    except FilterError as exc:
        module.fail_json(msg=str(exc))
    try:
        events_path = _events_path(module.params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    client = client_from_module(module)
    try:
        info = client.get("/v1/info")
        result = dict(changed=False, local_node=info, swarm_active=info.get("local_node_state") == "active",
                      swarm_manager=bool(info.get("is_manager")), swarm_facts={}, can_talk_to_docker=True)
        result["docker_swarm_active"] = result["swarm_active"]
        result["docker_swarm_manager"] = result["swarm_manager"]
        if result["swarm_manager"]:
            facts = client.get("/v1/swarm")
            worker = client.get("/v1/swarm/join-token/worker")
            manager = client.get("/v1/swarm/join-token/manager")
            facts["JoinTokens"] = {"Worker": worker["token"], "Manager": manager["token"]}
            facts["manager_addrs"] = manager.get("managers") or []
            result["swarm_facts"] = facts
            for kind in FILTER_KEYS:
                if module.params[kind]:
                    items = client.get("/v1/%s" % kind)
                    items = apply_filters(kind, items, module.params["%s_filters" % kind])
                    result[kind] = items if module.params["verbose_output"] else [summary(kind, i) for i in items]
            if module.params["unlock_key"]:
                result["swarm_unlock_key"] = client.get("/v1/swarm/unlock-key").get("unlock_key") or None
            if events_path is not None:
                result["events"] = client.request("GET", events_path, lines=True)
    except SwarmctlError as exc:
        module.fail_json(msg=exc.message, status=exc.status)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright (c) 2026 swarmctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_info
short_description: Facts about the nodes of a swarmctl swarm
version_added: 0.2.0
description:
  - Returns the nodes of a swarmctl swarm as the daemon shows them (C(swarmctl node inspect)), with the keys of
    C(docker node inspect) that swarmctl can fill in honestly added (see RV(nodes)).
  - Modeled on M(community.docker.docker_node_info), with its parameters. Must run against a manager, otherwise
    the module fails.
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
  name:
    description:
      - The nodes to inspect, each by hostname (as registered in the swarm), node id or unique id prefix.
      - Left out, all nodes of the swarm are returned.
      - As in M(community.docker.docker_node_info), a node the swarm does not know is left out of RV(nodes), so
        asking for one unknown node returns an empty list; a name that matches several nodes fails the module.
      - Ignored with O(self=true).
    type: list
    elements: str
  self:
    description:
      - If V(true), return the node the module talks to (the daemon of O(swarmctl_host)); O(name) is ignored.
    type: bool
    default: false
seealso:
  - module: swarmctl.cluster.node
  - module: swarmctl.cluster.info
"""

EXAMPLES = r"""
- name: Get info on all nodes
  swarmctl.cluster.node_info:
  register: result

- name: Get info on one node
  swarmctl.cluster.node_info:
    name: mynode
  register: result

- name: Get info on a list of nodes
  swarmctl.cluster.node_info:
    name:
      - mynode1
      - mynode2
  register: result

- name: Get info on the node the module talks to
  swarmctl.cluster.node_info:
    self: true
  register: result

- name: Show each node's hostname and state
  ansible.builtin.debug:
    msg: "{{ item.Description.Hostname }}: {{ item.Status.State }}"
  loop: "{{ result.nodes }}"
"""

RETURN = r"""
nodes:
  description:
    - The nodes, in the order asked for (all nodes sorted by hostname when O(name) is left out).
    - Each is the daemon's node record (C(GET /v1/nodes/ID)) with the keys C(id), C(spec) (C(role),
      C(availability), C(labels)), C(description) (C(hostname), C(engine_labels), C(resources), C(addrs)),
      C(status) (C(state), C(addr), C(message)) and C(manager_status) (null for a worker; C(addr), C(raft_addr),
      C(leader), C(reachability)), plus these keys of C(docker node inspect) filled in from it, C(ID),
      C(Spec.Role), C(Spec.Availability), C(Spec.Labels), C(Description.Hostname), C(Description.Engine.Labels),
      C(Status.State), C(Status.Addr), C(Status.Message), and for a manager C(ManagerStatus.Leader),
      C(ManagerStatus.Reachability) and C(ManagerStatus.Addr). No other Docker key (C(Version), C(CreatedAt),
      C(Platform), ...) is returned.
  returned: always
  type: list
  elements: dict
  sample:
    - id: 3x7bq6ud8d3jcba9pkrk5rdq1
      ID: 3x7bq6ud8d3jcba9pkrk5rdq1
      spec: {role: manager, availability: active, labels: {}}
      Spec: {Role: manager, Availability: active, Labels: {}}
      Description: {Hostname: manager1, Engine: {Labels: {}}}
      Status: {State: ready, Addr: 10.0.0.1, Message: ""}
      ManagerStatus: {Leader: true, Reachability: reachable, Addr: "10.0.0.1:2377"}
"""

from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.swarmctl.cluster.plugins.module_utils.swarmctl_client import (
    SwarmctlError,
    client_from_module,
    require_manager,
    swarmctl_argument_spec,
)


def docker_shape(node):
    """The daemon's node record, plus the keys of `docker node inspect` it can fill in."""
    out = dict(node)
    spec = node.get("spec") or {}
    description = node.get("description") or {}
    status = node.get("status") or {}
    out["ID"] = node.get("id")
    out["Spec"] = {"Role": spec.get("role"), "Availability": spec.get("availability"),
                   "Labels": dict(spec.get("labels") or {})}
    out["Description"] = {"Hostname": description.get("hostname"),
                          "Engine": {"Labels": dict(description.get("engine_labels") or {})}}
    out["Status"] = {"State": status.get("state"), "Addr": status.get("addr"), "Message": status.get("message") or ""}
    manager = node.get("manager_status")
    if manager:
        out["ManagerStatus"] = {"Leader": bool(manager.get("leader")), "Reachability": manager.get("reachability"),
                                "Addr": manager.get("addr")}
    return out


def node_facts(client, params):
    """The nodes the parameters ask for, Docker-shaped (SwarmctlError from the daemon)."""
    if params["self"]:
        node_id = client.get("/v1/info").get("node_id")
        return [docker_shape(client.get("/v1/nodes/%s" % quote(node_id, safe="")))]
    if not params["name"]:
        return [docker_shape(n) for n in client.get("/v1/nodes")]
    out = []
    for name in params["name"]:
        try:
            node = client.get("/v1/nodes/%s" % quote(name, safe=""))
        except SwarmctlError as exc:
            if exc.status == 404:  # community.docker skips nodes the swarm does not know
                continue
            raise
        out.append(docker_shape(node))
    return out


def main():
    argument_spec = swarmctl_argument_spec(
        name=dict(type="list", elements="str"),
        self=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    client = client_from_module(module)
    try:
        require_manager(module, client, "node_info")
        nodes = node_facts(client, module.params)
    except SwarmctlError as exc:
        module.fail_json(msg="Error reading the nodes from the swarm manager: %s" % exc.message, status=exc.status)
    module.exit_json(changed=False, nodes=nodes)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright (c) 2026 swarmctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: service_info
short_description: Facts about one service of a swarmctl swarm
version_added: 0.2.0
description:
  - Returns one service as the daemon shows it (C(swarmctl service inspect)), or tells that it does not exist.
  - Modeled on M(community.docker.docker_swarm_service_info), with its parameters and return values. Must run
    against a manager, otherwise the module fails.
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
      - The service to inspect, by name, id or unique id prefix.
    type: str
    required: true
seealso:
  - module: swarmctl.cluster.service
  - module: swarmctl.cluster.info
"""

EXAMPLES = r"""
- name: Get info from a service
  swarmctl.cluster.service_info:
    name: myservice
  register: result

- name: Show its running and desired tasks
  ansible.builtin.debug:
    msg: "{{ result.service.replicas_status.running }} of {{ result.service.replicas_status.desired }}"
  when: result.exists
"""

RETURN = r"""
exists:
  description:
    - Whether the service exists.
  type: bool
  returned: always
  sample: true
service:
  description:
    - The service as the daemon stores it (C(GET /v1/services/NAME)), the same as the
      RV(swarmctl.cluster.service#module:swarm_service) of M(swarmctl.cluster.service); V(null) if the service
      does not exist.
    - swarmctl's shape, not C(docker service inspect)'s (C(ID), C(Spec), ... are not returned).
  returned: always
  type: dict
  contains:
    id:
      description: The service id.
      type: str
      returned: success
    spec:
      description: C(name), C(mode), C(replicas), C(labels), C(task) (the task spec), C(endpoint),
        C(update_config), C(rollback_config) and C(rebalance).
      type: dict
      returned: success
    spec_version:
      description: Incremented by every change of the task spec.
      type: int
      returned: success
    replicas_status:
      description: C(running) and C(desired) task counts.
      type: dict
      returned: success
    update_status:
      description: The state of the last rolling update (C(state), C(message)).
      type: dict
      returned: when the service had a rolling update
"""

from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.swarmctl.cluster.plugins.module_utils.swarmctl_client import (
    SwarmctlError,
    client_from_module,
    require_manager,
    swarmctl_argument_spec,
)


def service_facts(client, name):
    """The service named (or with the id) name, None if there is none (SwarmctlError from the daemon)."""
    if not name:
        return None
    try:
        return client.get("/v1/services/%s" % quote(name, safe=""))
    except SwarmctlError as exc:
        if exc.status == 404:
            return None
        raise


def main():
    argument_spec = swarmctl_argument_spec(
        name=dict(type="str", required=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    client = client_from_module(module)
    try:
        require_manager(module, client, "service_info")
        service = service_facts(client, module.params["name"])
    except SwarmctlError as exc:
        module.fail_json(msg="Error reading the service from the swarm manager: %s" % exc.message, status=exc.status)
    module.exit_json(changed=False, exists=service is not None, service=service)


if __name__ == "__main__":
    main()

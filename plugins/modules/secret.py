#!/usr/bin/python
# Copyright (c) 2026 swarmctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: secret
short_description: Manage secrets of a swarmctl swarm
version_added: 0.2.0
description:
  - Creates and removes secrets of a swarmctl swarm (C(swarmctl secret create) and C(swarmctl secret rm)),
    through a manager of the swarm.
  - Parameter names follow M(community.docker.docker_secret), so playbooks move over by renaming the module.
  - The daemon seals a secret's data before it enters the swarm's log and never returns it. Whether the data
    changed is asked from the daemon (C(POST /v1/secrets/ID/matches), compared on the leader), so unlike
    M(community.docker.docker_secret) no hash of the data is kept in a label, and a secret created without this
    module is compared too.
  - A secret's data cannot change. Changed data (or O(force=true)) removes the secret and creates it again, which
    the daemon refuses while services use it; with O(rolling_versions=true) a new version C(NAME_vN) is created
    instead and the services can move to it.
  - Changed labels are updated in place (the daemon allows a label update), not by creating the secret again.
author:
  - swarmctl maintainers (@swarmctl)
attributes:
  check_mode:
    description: Predicts the change without making it (the data is still sent to the daemon to compare it). A removal that the daemon would refuse
      because services use the secret is a warning in check mode (an earlier task of the play may take it from them)
      and a failure in a real run.
    support: full
  diff_mode:
    description: Shows the secret's name, labels and versions before and after; the data shows as C(VALUE_HIDDEN).
    support: full
extends_documentation_fragment:
  - swarmctl.cluster.swarmctl
options:
  name:
    description:
      - The name of the secret. With O(rolling_versions=true), the secrets are named C(NAME_v1), C(NAME_v2) and
        so on.
    type: str
    required: true
  state:
    description:
      - V(present) creates the secret, or a new version of it, when it is missing or its data changed.
      - V(absent) removes it (every version with O(rolling_versions=true)). The daemon refuses to remove a secret
        that services use.
    type: str
    default: present
    choices: [present, absent]
  data:
    description:
      - The value of the secret. It is never logged or returned.
      - Mutually exclusive with O(data_src). One of O(data) and O(data_src) is required with O(state=present).
    type: str
  data_is_b64:
    description:
      - If V(true), O(data) is Base64 encoded and is decoded before it is used.
      - To use binary data, keep it Base64 encoded and let this option decode it.
    type: bool
    default: false
  data_src:
    description:
      - The file on the managed host from which to read the secret.
      - Mutually exclusive with O(data).
    type: path
  labels:
    description:
      - "A map of key:value metadata, where keys and values are strings."
      - A label that is missing or has another value is updated in place; labels the secret has beyond these are
        no change. When the secret is created again (changed data), it gets these labels only.
      - Left out, the secret keeps its labels.
    type: dict
  force:
    description:
      - If V(true), an existing secret is removed and created again (or a new version is created with
        O(rolling_versions=true)) even if nothing changed. Always a change.
    type: bool
    default: false
  rolling_versions:
    description:
      - If V(true), secrets are created with an increasing version number appended to their name (C(NAME_v1),
        C(NAME_v2) ...), and a label C(ansible_version) holding the number, as M(community.docker.docker_secret)
        does. Changed data creates the next version; services refer to a version by its name.
    type: bool
    default: false
  versions_to_keep:
    description:
      - With O(rolling_versions=true), how many versions to keep, the current one included. Older ones are removed
        after the new one is created.
      - V(-1) keeps every version; V(0) or V(1) keeps only the current one.
      - A version that services still use is kept (with a warning) rather than failing the task.
    type: int
    default: 5
notes:
  - The data given in O(data) is masked in Ansible's output (C(no_log)); the data of O(data_src) is never part of
    the output either.
seealso:
  - module: swarmctl.cluster.config
  - module: swarmctl.cluster.service
  - module: swarmctl.cluster.stack
"""

EXAMPLES = r"""
- name: Create a secret from a vault variable
  swarmctl.cluster.secret:
    name: db_password
    data: "{{ vault_db_password }}"

- name: Create a secret from a file on the controller (Base64 keeps binary data intact)
  swarmctl.cluster.secret:
    name: tls_key
    data: "{{ lookup('ansible.builtin.file', 'files/tls.key', rstrip=false) | b64encode }}"
    data_is_b64: true
    labels:
      app: web

- name: Create a secret from a file on the managed host
  swarmctl.cluster.secret:
    name: api_token
    data_src: /etc/app/token

- name: A new version (api_key_v2, api_key_v3, ...) whenever the data changes; keep the last three
  swarmctl.cluster.secret:
    name: api_key
    data: "{{ vault_api_key }}"
    rolling_versions: true
    versions_to_keep: 3
  register: api_key

- name: Use the current version in a service
  ansible.builtin.debug:
    msg: "the service should mount {{ api_key.secret_name }}"

- name: Remove a secret
  swarmctl.cluster.secret:
    name: db_password
    state: absent
"""

RETURN = r"""
secret_id:
  description:
    - The id of the secret (of its current version with O(rolling_versions=true)).
    - V(null) in check mode when the secret would be created.
  returned: success and O(state=present)
  type: str
  sample: hzehrmyjigmcp2gb6nlhmjqcv
secret_name:
  description:
    - The name of the secret (C(NAME_vN) with O(rolling_versions=true)), the name services refer to.
  returned: success and O(state=present)
  type: str
  sample: db_password
removed:
  description:
    - The names of the secrets that were removed (or would be, in check mode).
  returned: success
  type: list
  elements: str
  sample: [api_key_v1]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.swarmctl.cluster.plugins.module_utils.swarmctl_client import (
    client_from_module,
    swarmctl_argument_spec,
)
from ansible_collections.swarmctl.cluster.plugins.module_utils.swarmctl_objects import (
    object_argument_spec,
    run,
)


def main():
    options = object_argument_spec()
    options["data"] = dict(type="str", no_log=True)
    module = AnsibleModule(
        argument_spec=swarmctl_argument_spec(**options),
        supports_check_mode=True,
        required_if=[("state", "present", ("data", "data_src"), True)],
        mutually_exclusive=[("data", "data_src")],
    )
    run(module, client_from_module(module), "secret")


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright (c) 2026 swarmctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: config
short_description: Manage configs of a swarmctl swarm
version_added: 0.2.0
description:
  - Creates and removes configs of a swarmctl swarm (C(swarmctl config create) and C(swarmctl config rm)),
    through a manager of the swarm.
  - Parameter names follow M(community.docker.docker_config), so playbooks move over by renaming the module.
  - A config's data is compared with the data the daemon stores (a config's view holds it), so no hash label
    is needed.
  - A config's data cannot change. Changed data (or O(force=true)) removes the config and creates it again, which
    the daemon refuses while services use it; with O(rolling_versions=true) a new version C(NAME_vN) is created
    instead and the services can move to it.
  - Changed labels are updated in place (the daemon allows a label update), not by creating the config again.
author:
  - swarmctl maintainers (@swarmctl)
attributes:
  check_mode:
    description: Predicts the change without making it. A removal that the daemon would refuse
      because services use the config is a warning in check mode (an earlier task of the play may take it from them)
      and a failure in a real run.
    support: full
  diff_mode:
    description: Shows the config's name, labels, data (as text, or C(base64:...) when it is not UTF-8) and versions
      before and after.
    support: full
extends_documentation_fragment:
  - swarmctl.cluster.swarmctl
options:
  name:
    description:
      - The name of the config. With O(rolling_versions=true), the configs are named C(NAME_v1), C(NAME_v2) and
        so on.
    type: str
    required: true
  state:
    description:
      - V(present) creates the config, or a new version of it, when it is missing or its data changed.
      - V(absent) removes it (every version with O(rolling_versions=true)). The daemon refuses to remove a config
        that services use.
    type: str
    default: present
    choices: [present, absent]
  data:
    description:
      - The value of the config.
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
      - The file on the managed host from which to read the config.
      - Mutually exclusive with O(data).
    type: path
  labels:
    description:
      - "A map of key:value metadata, where keys and values are strings."
      - A label that is missing or has another value is updated in place; labels the config has beyond these are
        no change. When the config is created again (changed data), it gets these labels only.
      - Left out, the config keeps its labels.
    type: dict
  force:
    description:
      - If V(true), an existing config is removed and created again (or a new version is created with
        O(rolling_versions=true)) even if nothing changed. Always a change.
    type: bool
    default: false
  rolling_versions:
    description:
      - If V(true), configs are created with an increasing version number appended to their name (C(NAME_v1),
        C(NAME_v2) ...), and a label C(ansible_version) holding the number, as M(community.docker.docker_config)
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
  template_driver:
    description:
      - Accepted for compatibility with M(community.docker.docker_config), and refused when set. swarmctl stores and
        mounts a config's data exactly as given; it has no template driver. Template the data with Ansible instead
        (for example O(data) from the P(ansible.builtin.template#lookup) lookup).
    type: str
    choices: [golang]
seealso:
  - module: swarmctl.cluster.secret
  - module: swarmctl.cluster.service
  - module: swarmctl.cluster.stack
"""

EXAMPLES = r"""
- name: Create a config from a template on the controller
  swarmctl.cluster.config:
    name: nginx_conf
    data: "{{ lookup('ansible.builtin.template', 'nginx.conf.j2') }}"
    labels:
      app: web

- name: Create a config from a file on the managed host
  swarmctl.cluster.config:
    name: app_settings
    data_src: /etc/app/settings.json

- name: A new version (site_v2, site_v3, ...) whenever the data changes
  swarmctl.cluster.config:
    name: site
    data: "{{ lookup('ansible.builtin.file', 'site.conf') }}"
    rolling_versions: true
  register: site

- name: Remove a config
  swarmctl.cluster.config:
    name: app_settings
    state: absent
"""

RETURN = r"""
config_id:
  description:
    - The id of the config (of its current version with O(rolling_versions=true)).
    - V(null) in check mode when the config would be created.
  returned: success and O(state=present)
  type: str
  sample: hzehrmyjigmcp2gb6nlhmjqcv
config_name:
  description:
    - The name of the config (C(NAME_vN) with O(rolling_versions=true)), the name services refer to.
  returned: success and O(state=present)
  type: str
  sample: nginx_conf
removed:
  description:
    - The names of the configs that were removed (or would be, in check mode).
  returned: success
  type: list
  elements: str
  sample: [site_v1]
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

TEMPLATE_DRIVER_REFUSED = ("template_driver is not supported: swarmctl stores and mounts a config's data exactly as "
                           "given (it has no template driver); template the data with Ansible instead")


def main():
    options = object_argument_spec()
    options["data"] = dict(type="str")
    options["template_driver"] = dict(type="str", choices=["golang"])
    module = AnsibleModule(
        argument_spec=swarmctl_argument_spec(**options),
        supports_check_mode=True,
        required_if=[("state", "present", ("data", "data_src"), True)],
        mutually_exclusive=[("data", "data_src")],
    )
    if module.params["template_driver"] is not None:
        module.fail_json(msg=TEMPLATE_DRIVER_REFUSED)
    run(module, client_from_module(module), "config")


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright (c) 2026 swarmctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack
short_description: Deploy and remove stacks of a swarmctl swarm from compose files
version_added: 0.2.0
description:
  - Deploys a stack from compose files (C(swarmctl stack deploy)) and removes it (C(swarmctl stack rm)), by running
    the C(swarmctl) command on a manager, as M(community.docker.docker_stack) runs C(docker stack).
  - Parameter names follow M(community.docker.docker_stack), so playbooks move over by renaming the module.
  - The stack's services are named C(NAME_SERVICE), its secrets and configs C(NAME_KEY); all carry the label
    C(com.docker.stack.namespace=NAME). A secret or config whose file changed becomes a new version the services
    roll to.
  - Whether anything changes is what C(swarmctl stack deploy --format json) reports; deploying the same files
    again changes nothing and restarts no task.
author:
  - swarmctl maintainers (@swarmctl)
attributes:
  check_mode:
    description: Runs C(swarmctl stack deploy --dry-run), which plans the deployment and changes nothing.
    support: full
  diff_mode:
    description: Shows each service, secret and config that is created, updated or removed, before and after.
    support: full
extends_documentation_fragment:
  - swarmctl.cluster.swarmctl
options:
  name:
    description:
      - The stack name.
    type: str
    required: true
  state:
    description:
      - V(present) deploys the stack (creates or updates it).
      - V(absent) removes the stack's services, then its secrets and configs.
    type: str
    default: present
    choices: [present, absent]
  compose:
    description:
      - List of compose definitions, merged in order as several C(-c) options. Any element may be a string, the
        path of a compose file on the managed host, or the contents of a compose file nested as a dictionary.
      - A dictionary is written to a temporary file (JSON, which is YAML) for the command; relative paths in it
        (C(file:) of secrets and configs, C(env_file)) are relative to the current directory of the task, so
        prefer absolute paths there.
      - Required with O(state=present).
    type: list
    elements: raw
    default: []
  prune:
    description:
      - If V(true), adds C(--prune) to C(swarmctl stack deploy), which removes the services of the stack that are
        no longer in the compose definitions.
    type: bool
    default: false
  detach:
    description:
      - If V(false), C(swarmctl stack deploy --detach=false) waits until the stack's services have converged.
    type: bool
    default: true
  with_registry_auth:
    description:
      - Accepted for compatibility with M(community.docker.docker_stack) and ignored. swarmctl never pulls
        images, so there are no registry credentials to send.
    type: bool
    default: false
  resolve_image:
    description:
      - Accepted for compatibility with M(community.docker.docker_stack) and ignored. swarmctl never queries a
        registry; the images must already be in the nodes' engines.
    type: str
    choices: [always, changed, never]
  absent_retries:
    description:
      - If larger than V(0) and O(state=absent), after C(swarmctl stack rm) the module checks up to
        O(absent_retries) times (C(swarmctl stack ps)) until no task of the stack is left, and fails if some
        remain after the last check.
    type: int
    default: 0
  absent_retries_interval:
    description:
      - Interval in seconds between consecutive O(absent_retries).
    type: int
    default: 1
  swarmctl_cli:
    description:
      - The C(swarmctl) command to run.
      - If not set, C(swarmctl) on the E(PATH) of the managed host, then C(/opt/swarmctl/venv/bin/swarmctl) (where
        the P(swarmctl.cluster.daemon#role) role installs it by default).
    type: path
seealso:
  - module: swarmctl.cluster.service
  - module: swarmctl.cluster.secret
  - module: swarmctl.cluster.config
"""

EXAMPLES = r"""
- name: Deploy a stack from a compose file
  swarmctl.cluster.stack:
    name: shop
    compose:
      - /srv/shop/compose.yml

- name: Deploy a stack from a compose file and an inline override, removing services no longer in it
  swarmctl.cluster.stack:
    name: shop
    prune: true
    compose:
      - /srv/shop/compose.yml
      - services:
          web:
            deploy:
              replicas: 3

- name: Show what a deployment would change
  swarmctl.cluster.stack:
    name: shop
    compose:
      - /srv/shop/compose.yml
  check_mode: true
  diff: true

- name: Remove a stack and wait until its tasks are gone
  swarmctl.cluster.stack:
    name: shop
    state: absent
    absent_retries: 30
"""

RETURN = r"""
actions:
  description:
    - What the deployment did (or would do, in check mode), as C(swarmctl stack deploy --format json) reports it.
    - With O(state=absent), the services, secrets and configs removed.
  returned: success
  type: list
  elements: dict
  contains:
    action:
      description: V(create), V(update), V(remove) or V(unchanged).
      type: str
      returned: always
    kind:
      description: V(service), V(secret) or V(config).
      type: str
      returned: always
    name:
      description: The full name, for example C(shop_web).
      type: str
      returned: always
  sample: [{"action": "create", "kind": "service", "name": "shop_web"}]
stack_spec_diff:
  description:
    - For each service, secret and config that changes, its spec before and after (V(null) where it does not
      exist). A secret's spec holds its name and labels, never its data.
  returned: on change with O(state=present)
  type: dict
  sample: {"shop_web": {"kind": "service", "before": null, "after": {"name": "shop_web"}}}
warnings_from_deploy:
  description:
    - "The warnings of C(swarmctl stack deploy), for example C(Ignoring unsupported options: build). They are also
      shown as Ansible warnings."
  returned: O(state=present)
  type: list
  elements: str
rc:
  description: The exit code of the last C(swarmctl) command.
  returned: when a command ran
  type: int
stdout:
  description: The standard output of the last C(swarmctl) command.
  returned: when a command ran
  type: str
stderr:
  description: The standard error of the last C(swarmctl) command.
  returned: when a command ran
  type: str
"""

import json
import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.swarmctl.cluster.plugins.module_utils.swarmctl_client import (
    SwarmctlError,
    client_from_module,
    swarmctl_argument_spec,
)

DEFAULT_CLI = "/opt/swarmctl/venv/bin/swarmctl"
NAMESPACE_LABEL = "com.docker.stack.namespace"
KINDS = ("service", "secret", "config")


class StackError(Exception):
    def __init__(self, msg, **details):
        super(StackError, self).__init__(msg)
        self.msg = msg
        self.details = details


def nothing_found(name, *texts):
    return any("nothing found in stack: %s" % name.lower() in (t or "").lower() for t in texts)


def write_compose_files(compose, tmpdir):
    """compose elements -> file paths: strings are paths, dicts are written to temp files (JSON is YAML)."""
    if not compose:
        raise StackError("compose parameter must be a list containing at least one element")
    files = []
    for index, element in enumerate(compose):
        if isinstance(element, dict):
            fd, path = tempfile.mkstemp(prefix="compose-%d-" % index, suffix=".json", dir=tmpdir)
            with os.fdopen(fd, "w") as f:
                json.dump(element, f, indent=1, sort_keys=True)
            files.append(path)
        elif isinstance(element, str) and element.strip():
            files.append(element)
        else:
            raise StackError("compose element %r must be a file path (string) or a compose definition "
                             "(dictionary)" % (element,))
    return files


def deploy_command(cli, host, name, files, prune=False, detach=True, dry_run=False):
    cmd = [cli, "-H", host, "stack", "deploy"]
    for path in files:
        cmd += ["-c", path]
    if prune:
        cmd.append("--prune")
    if not detach:
        cmd.append("--detach=false")
    if dry_run:
        cmd.append("--dry-run")
    cmd += ["--format", "json", name]
    return cmd


def parse_json_output(text):
    """One JSON document, or JSON lines (one document a line) -> a Python value (a list for JSON lines)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            out.append(json.loads(line))
    return out


def parse_deploy(stdout):
    """The report of `stack deploy --format json`: {"changed", "actions", "warnings"}."""
    try:
        report = parse_json_output(stdout)
    except ValueError:
        report = None
    if not isinstance(report, dict) or "actions" not in report:
        raise StackError("swarmctl stack deploy --format json printed no report", stdout=stdout)
    report.setdefault("warnings", [])
    return report


def spec_diff(actions):
    """stack_spec_diff and the --diff before/after from the report's actions (the unchanged ones left out)."""
    changes = {}
    before = {}
    after = {}
    for action in actions:
        if action.get("action") == "unchanged":
            continue
        kind = action.get("kind") or "service"
        name = action.get("name")
        changes[name] = {"kind": kind, "action": action.get("action"), "before": action.get("before"),
                         "after": action.get("after")}
        group = kind + "s"
        if action.get("before") is not None:
            before.setdefault(group, {})[name] = action["before"]
        if action.get("after") is not None:
            after.setdefault(group, {})[name] = action["after"]
    return changes, dict(before=before, after=after)


def short_actions(actions):
    return [dict(action=a.get("action"), kind=a.get("kind"), name=a.get("name")) for a in actions]


def stack_members(client, name):
    """What of the stack exists, by kind: {"services": [names], "secrets": [...], "configs": [...]}."""
    members = {}
    for kind in KINDS:
        try:
            records = client.get("/v1/%ss" % kind)
        except SwarmctlError as exc:
            if exc.status == 404 and kind != "service":  # a daemon without secrets or configs
                continue
            raise
        names = sorted(r["spec"]["name"] for r in records or []
                       if ((r.get("spec") or {}).get("labels") or {}).get(NAMESPACE_LABEL) == name)
        if names:
            members[kind + "s"] = names
    return members


def remaining_tasks(stdout, stderr, name):
    """The tasks `stack ps --format json` lists (none once the stack is gone)."""
    if nothing_found(name, stdout, stderr):
        return []
    value = parse_json_output(stdout)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def find_cli(module):
    if module.params["swarmctl_cli"]:
        return module.params["swarmctl_cli"]
    found = module.get_bin_path("swarmctl")
    if found:
        return found
    if os.access(DEFAULT_CLI, os.X_OK):
        return DEFAULT_CLI
    module.fail_json(msg="the swarmctl command was not found on the PATH nor at %s: set swarmctl_cli" % DEFAULT_CLI)


def one_line(stderr, stdout):
    lines = [line.strip() for line in (stderr or stdout or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def present(module, cli, host):
    params = module.params
    try:
        files = write_compose_files(params["compose"], module.tmpdir)
    except StackError as exc:
        module.fail_json(msg=exc.msg)
    cmd = deploy_command(cli, host, params["name"], files, prune=params["prune"], detach=params["detach"],
                         dry_run=module.check_mode)
    rc, out, err = module.run_command(cmd)
    if rc != 0:
        module.fail_json(msg="swarmctl stack deploy failed: %s" % one_line(err, out), rc=rc, stdout=out, stderr=err,
                         cmd=cmd)
    try:
        report = parse_deploy(out)
    except StackError as exc:
        module.fail_json(msg=exc.msg, rc=rc, stdout=out, stderr=err)
    for warning in report["warnings"]:
        module.warn(warning)
    changed = bool(report.get("changed"))
    result = dict(changed=changed, actions=short_actions(report["actions"]), warnings_from_deploy=report["warnings"],
                  rc=rc, stdout=out, stderr=err)
    if changed:
        changes, diff = spec_diff(report["actions"])
        result["stack_spec_diff"] = changes
        result["diff"] = diff
    module.exit_json(**result)


def absent(module, cli, host, client):
    params = module.params
    name = params["name"]
    try:
        members = stack_members(client, name)
    except SwarmctlError as exc:
        module.fail_json(msg=exc.message, status=exc.status)
    actions = [dict(action="remove", kind=group[:-1], name=n) for group, names in sorted(members.items())
               for n in names]
    result = dict(changed=bool(members), actions=actions)
    if members:
        result["diff"] = dict(before=members, after={})
    if module.check_mode or not members:
        module.exit_json(**result)
    rc, out, err = module.run_command([cli, "-H", host, "stack", "rm", name])
    result.update(rc=rc, stdout=out, stderr=err)
    if rc != 0 and not nothing_found(name, out, err):
        try:  # changed only if the failed removal removed something
            result["changed"] = stack_members(client, name) != members
        except SwarmctlError:
            result["changed"] = False
        module.fail_json(msg="swarmctl stack rm failed: %s" % one_line(err, out), **result)
    retries = params["absent_retries"]
    while retries > 0:
        rc, out, err = module.run_command([cli, "-H", host, "stack", "ps", "--format", "json", name])
        try:
            left = remaining_tasks(out, err, name) if (rc == 0 or nothing_found(name, out, err)) else None
        except ValueError:
            left = None
        if left == []:
            break
        retries -= 1
        if retries == 0:
            result.update(rc=rc, stdout=out, stderr=err)
            module.fail_json(msg="the stack %s still has tasks after %d checks (absent_retries)"
                                 % (name, params["absent_retries"]), **result)
        time.sleep(params["absent_retries_interval"])
    module.exit_json(**result)


def main():
    argument_spec = swarmctl_argument_spec(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        compose=dict(type="list", elements="raw", default=[]),
        prune=dict(type="bool", default=False),
        detach=dict(type="bool", default=True),
        with_registry_auth=dict(type="bool", default=False),
        resolve_image=dict(type="str", choices=["always", "changed", "never"]),
        absent_retries=dict(type="int", default=0),
        absent_retries_interval=dict(type="int", default=1),
        swarmctl_cli=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not module.params["name"].strip():
        module.fail_json(msg="name must not be empty")
    client = client_from_module(module)
    cli = find_cli(module)
    host = module.params["swarmctl_host"]
    if module.params["state"] == "present":
        present(module, cli, host)
    else:
        absent(module, cli, host, client)


if __name__ == "__main__":
    main()

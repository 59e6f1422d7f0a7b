#!/usr/bin/python
# Copyright (c) 2026 swarmctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: service
short_description: Manage services of a swarmctl swarm
version_added: 0.1.0
description:
  - Creates, updates and removes services of a swarmctl swarm, through a manager of the swarm.
  - Parameter names follow M(community.docker.docker_swarm_service) for everything swarmctl supports, so
    playbooks move over by renaming the module.
  - Only the options that are given are compared with the service the daemon stores; options left out keep
    their current values (or swarmctl's defaults when the service is created).
  - swarmctl never pulls images; the image must already be loaded into the engines of the nodes.
author:
  - swarmctl maintainers (@swarmctl)
attributes:
  check_mode:
    description: Predicts the change without making it.
    support: full
  diff_mode:
    description: Shows the service spec before and after.
    support: full
extends_documentation_fragment:
  - swarmctl.cluster.swarmctl
options:
  name:
    description:
      - The service name (letters, digits, C(-), C(_) and C(.)).
    type: str
    required: true
  state:
    description:
      - V(present) creates the service or updates it to match the options given.
      - V(absent) removes it (its tasks are shut down).
    type: str
    default: present
    choices: [present, absent]
  image:
    description:
      - The image of the service's containers, for example C(busybox:latest). Compared as a string.
      - Required with O(state=present).
    type: str
  mode:
    description:
      - V(replicated) runs O(replicas) tasks; V(global) runs one task on every node.
      - The mode of a service cannot be updated; a different mode removes and re-creates the service
        (RV(rebuilt=true)).
    type: str
    default: replicated
    choices: [replicated, global]
  replicas:
    description:
      - Number of tasks of a replicated service.
      - V(-1) (the default) keeps the current number, and creates a service with one task.
      - Must not be set for O(mode=global).
    type: int
    default: -1
  command:
    description:
      - The command to run, replacing the image's entrypoint. A string is split like a shell would.
    type: raw
  args:
    description:
      - Arguments of the command, replacing the image's default arguments.
    type: list
    elements: str
  env:
    description:
      - Environment variables, as a dictionary or a list of C(KEY=VALUE) strings. Replaces all variables of the
        service.
      - Values must be strings or numbers; quote values like V(yes) that YAML would read as booleans.
      - Docker's placeholders such as C({{.Node.Hostname}}), C({{.Node.ID}}), C({{.Service.Name}}) and
        C({{.Task.Slot}}) are expanded by swarmctl on each node when the task's container starts. Ansible would
        template them first (and fail), so write such values as C(!unsafe) strings or inside
        C({% raw %}...{% endraw %}) in a playbook (see the examples).
    type: raw
  labels:
    description:
      - Service labels. Replaces all labels of the service.
    type: dict
  network_mode:
    description:
      - The network of the containers. swarmctl supports the host network and no network.
    type: str
    choices: [host, none]
  networks:
    description:
      - The networks of the containers, as in M(community.docker.docker_swarm_service) (names, or dictionaries with
        C(name), C(aliases) and C(options)). swarmctl has no overlay networks; its tasks run on the host's network
        (V(host)) or on none (V(none)), so only one of these two is accepted, and it sets the task's O(network_mode).
        Any other network fails with C(network "NAME" is not available ...); more than one fails too.
      - V(host) and V(none) take no aliases and no options.
      - Left out (or V([])), the service keeps its network (V(host) for a new service).
    type: list
    elements: raw
  mounts:
    description:
      - The mounts of the containers. Replaces all mounts of the service; V([]) removes them. Left out, the service
        keeps its mounts.
    type: list
    elements: dict
    suboptions:
      source:
        description:
          - The host path of a V(bind) mount (absolute), or the volume name of a V(volume) mount (an anonymous
            volume when left out). Must be left out for V(tmpfs).
        type: str
      target:
        description:
          - The path in the container (absolute).
        type: str
        required: true
      type:
        description:
          - The mount's type.
        type: str
        default: bind
        choices: [bind, volume, tmpfs]
      readonly:
        description:
          - Mount read-only.
        type: bool
      labels:
        description:
          - Labels of a volume the mount creates (V(volume) only).
        type: dict
      propagation:
        description:
          - The propagation mode of a V(bind) mount.
        type: str
        choices: [shared, slave, private, rshared, rslave, rprivate]
      no_copy:
        description:
          - Do not fill a new volume with the image's content at the target (V(volume) only).
        type: bool
      driver_config:
        description:
          - The volume driver and its options (V(volume) only).
        type: dict
        suboptions:
          name:
            description:
              - Name of the volume driver.
            type: str
          options:
            description:
              - Options passed to the driver, as key-value pairs.
            type: dict
      tmpfs_size:
        description:
          - Size of a V(tmpfs) mount, in bytes or with a unit (binary multiples), for example V(64M).
        type: str
      tmpfs_mode:
        description:
          - The file mode of a V(tmpfs) mount, an integer, for example V(0o1777) (V(1023)).
        type: int
  env_files:
    description:
      - Files of environment variables (C(KEY=VALUE) lines; blank lines and lines starting with C(#) are skipped),
        read on the host the module runs on, as in M(community.docker.docker_swarm_service).
      - The files are read in order, a later file winning over an earlier one, and O(env) wins over all of them;
        the result replaces all variables of the service, as O(env) does.
    type: list
    elements: path
  logging:
    description:
      - The logging of the containers (Docker's C(--log-driver) and C(--log-opt)). Left out, containers log to
        C(json-file) rotated at 10 MB x 3, and an existing service keeps its logging.
    type: dict
    suboptions:
      driver:
        description:
          - The log driver of the engine, for example V(json-file), V(local) or V(none).
        type: str
      options:
        description:
          - The driver's options, for example C(max-size). Values are strings.
        type: dict
  hostname:
    description:
      - The containers' hostname. Docker's placeholders such as C({{.Task.Slot}}) are expanded as in O(env).
    type: str
  hosts:
    description:
      - Host names and the IP addresses they map to, added to each container's C(/etc/hosts) (C(--host)).
    type: dict
  user:
    description:
      - The user the containers run as, C(USER[:GROUP]) by name or number; V("") is the image's.
    type: str
  working_dir:
    description:
      - The containers' working directory; V("") is the image's.
    type: str
  read_only:
    description:
      - Mount the containers' root filesystem read-only.
    type: bool
  init:
    description:
      - Run an init process in the containers that forwards signals and reaps processes.
    type: bool
  tty:
    description:
      - Give the containers a pseudo terminal.
    type: bool
  cap_add:
    description:
      - Kernel capabilities added to the containers, Docker's names, for example V(NET_ADMIN) or V(ALL).
    type: list
    elements: str
  cap_drop:
    description:
      - Kernel capabilities dropped from the containers, Docker's names.
    type: list
    elements: str
  sysctls:
    description:
      - Namespaced kernel parameters set in the containers, for example C(net.ipv4.ip_forward). Values are strings.
    type: dict
  ulimits:
    description:
      - Resource limits of the containers, each C(NAME:SOFT:HARD) (or C(NAME:LIMIT)), for example
        V(nofile:1024:2048), or a dictionary with C(name), C(soft) and C(hard). This option is swarmctl's
        (community.docker's service module has none).
    type: list
    elements: raw
  dns:
    description:
      - Name servers of the containers (IP addresses), after the node's own service-discovery server.
    type: list
    elements: str
  dns_search:
    description:
      - Search domains of the containers' C(resolv.conf).
    type: list
    elements: str
  dns_options:
    description:
      - Options of the containers' C(resolv.conf), for example V(ndots:2).
    type: list
    elements: str
  stop_signal:
    description:
      - The signal that stops the containers, for example V(SIGTERM), V(SIGUSR1) or V(15).
    type: str
  groups:
    description:
      - Additional groups the containers' processes run with.
    type: list
    elements: str
  container_labels:
    description:
      - Labels of the containers (the task spec's C(labels)); O(labels) are the service's own labels.
    type: dict
  publish:
    description:
      - The published ports of the service. Replaces all published ports of the service; V([]) removes them.
      - Left out, the service keeps its published ports (a new service has none).
      - A port is published on every node (O(publish[].mode=ingress), the routing mesh) or only on the nodes
        that run a task of the service (O(publish[].mode=host)).
      - Compared with the service's ports in order. A port whose O(publish[].published_port) is left out
        matches the port the swarm picked for it, so a rerun changes nothing.
    type: list
    elements: dict
    suboptions:
      published_port:
        description:
          - The port published on the nodes, 1-65535.
          - Left out (or V(0)) with O(publish[].mode=ingress), the swarm picks a free port from 30000-32767 (an
            update keeps the port the service already has for the same target, protocol and mode).
          - With O(publish[].mode=host) it must be O(publish[].target_port) (the tasks use the host's network);
            left out, the target port is published.
        type: int
      target_port:
        description:
          - The port inside the container, 1-65535.
        type: int
        required: true
      protocol:
        description:
          - The protocol of the port.
        type: str
        default: tcp
        choices: [tcp, udp]
      mode:
        description:
          - V(ingress) publishes the port on every node of the swarm through the routing mesh, which forwards
            connections to the service's tasks.
          - V(host) publishes it only on the nodes where a task runs, bound to that task.
        type: str
        default: ingress
        choices: [ingress, host]
  endpoint_mode:
    description:
      - How other services reach this one by name. V(vip) gives the service one virtual IP; V(dnsrr) answers
        with the addresses of its tasks (DNS round robin).
      - V(dnsrr) cannot be used with ports published in V(ingress) mode.
      - Left out, the service keeps its endpoint mode (V(vip) for a new service).
    type: str
    choices: [vip, dnsrr]
  placement:
    description:
      - Where tasks may run.
    type: dict
    suboptions:
      constraints:
        description:
          - Placement constraints, C(KEY==VALUE) or C(KEY!=VALUE) with the keys C(node.id), C(node.hostname),
            C(node.role), C(node.labels.KEY) and C(engine.labels.KEY).
        type: list
        elements: str
      preferences:
        description:
          - Placement preferences, community.docker.docker_swarm_service's shape, for example a list item
            C(spread) set to V(node.labels.zone). Tasks are spread evenly over the values of the label
            (C(node.labels.KEY) or C(engine.labels.KEY)); nodes without the label count as one group. Several
            preferences form a hierarchy, the first the top level.
          - Given, it replaces the service's preferences; V([]) removes them.
        type: list
        elements: dict
      replicas_max_per_node:
        description:
          - Maximum number of tasks of the service on one node; V(0) means no limit.
        type: int
      strategy:
        description:
          - How the scheduler picks among suitable nodes; unset uses the swarm's default strategy.
        type: str
        choices: [spread, binpack, random]
  reservations:
    description:
      - Resources reserved for each task; the scheduler only places a task on a node with enough left.
    type: dict
    suboptions:
      cpus:
        description:
          - CPUs to reserve, for example V(0.5).
        type: float
      memory:
        description:
          - Memory to reserve, in bytes or with a unit (binary multiples), for example V(128M) or V(1.5G).
        type: str
  limits:
    description:
      - Resource limits of each task's container.
    type: dict
    suboptions:
      cpus:
        description:
          - CPU limit, for example V(0.5).
        type: float
      memory:
        description:
          - Memory limit, in bytes or with a unit (binary multiples), for example V(128M) or V(1.5G).
        type: str
  restart_config:
    description:
      - When and how often tasks are restarted.
    type: dict
    suboptions:
      condition:
        description:
          - Restart on V(none), V(on-failure) or V(any) exit.
        type: str
        choices: [none, on-failure, any]
      delay:
        description:
          - Delay between restarts, for example V(5s) or V(1m30s); a bare number means seconds.
        type: str
      max_attempts:
        description:
          - Maximum number of restarts; V(0) means no limit.
        type: int
      window:
        description:
          - Window used to evaluate the restart policy, for example V(30s).
        type: str
  stop_grace_period:
    description:
      - Time to wait for a container to stop before it is killed, for example V(10s).
    type: str
  healthcheck:
    description:
      - Configure a check that is run to determine whether or not containers for this service are healthy, as
        in M(community.docker.docker_swarm_service). A task whose container has a healthcheck runs only once it
        is healthy; an unhealthy container is stopped and its task fails (the restart policy replaces it).
      - Options left out take Docker's defaults (interval and timeout V(30s), retries V(3), start_period
        V(0s), start_interval V(5s)). Without this option the image's own HEALTHCHECK applies.
      - O(healthcheck.interval), O(healthcheck.timeout), O(healthcheck.start_period) and
        O(healthcheck.start_interval) are durations such as V(30s), V(1m30s) or V(500ms) (units us, ms, s, m
        and h; a bare number means seconds).
    type: dict
    suboptions:
      test:
        description:
          - Command to run to check health. Must be either a string or a list. If it is a list, the first item
            must be one of V(NONE), V(CMD) or V(CMD-SHELL). A string runs with the container's shell
            (V(CMD-SHELL)); V([NONE]) turns the image's healthcheck off.
        type: raw
      interval:
        description:
          - Time between running the check.
        type: str
      timeout:
        description:
          - Maximum time to allow one check to run.
        type: str
      retries:
        description:
          - Consecutive failures needed to report unhealthy.
        type: int
      start_period:
        description:
          - Start period for the container to initialize before counting retries towards unstable.
        type: str
      start_interval:
        description:
          - Time between running the check during the start period.
        type: str
  secrets:
    description:
      - The secrets the tasks get, as in M(community.docker.docker_swarm_service), each a file under
        C(/run/secrets/) of the containers (on a tmpfs; see M(swarmctl.cluster.secret)). Replaces all secrets of
        the service; V([]) removes them. Left out, the service keeps its secrets.
      - A changed list is a change of the task spec, rolled out like any other.
    type: list
    elements: dict
    suboptions:
      secret_id:
        description:
          - The secret's id. Left out, it is looked up by O(secrets[].secret_name).
        type: str
      secret_name:
        description:
          - The secret's name, for example the RV(swarmctl.cluster.secret#module:secret_name) of
            M(swarmctl.cluster.secret) (C(NAME_vN) with rolling versions).
        type: str
        required: true
      filename:
        description:
          - The file's name in the container, relative to C(/run/secrets/), or an absolute path. Default the
            secret's name.
        type: str
      uid:
        description:
          - The file's owner (numeric). Default V(0).
        type: str
      gid:
        description:
          - The file's group (numeric). Default V(0).
        type: str
      mode:
        description:
          - The file's mode, an integer, for example V(0o400) or V(256). Default V(0o444) (V(292)).
        type: int
  configs:
    description:
      - The configs the tasks get, as in M(community.docker.docker_swarm_service), each a file in the containers
        (see M(swarmctl.cluster.config)). Replaces all configs of the service; V([]) removes them. Left out, the
        service keeps its configs.
    type: list
    elements: dict
    suboptions:
      config_id:
        description:
          - The config's id. Left out, it is looked up by O(configs[].config_name).
        type: str
      config_name:
        description:
          - The config's name.
        type: str
        required: true
      filename:
        description:
          - The file's path in the container. Default C(/NAME).
        type: str
      uid:
        description:
          - The file's owner (numeric). Default V(0).
        type: str
      gid:
        description:
          - The file's group (numeric). Default V(0).
        type: str
      mode:
        description:
          - The file's mode, an integer. Default V(0o444) (V(292)).
        type: int
  force_update:
    description:
      - Redeploy the tasks even if nothing changed. Always a change when the service exists.
    type: bool
    default: false
  update_config:
    description:
      - How a changed task spec is rolled out (C(service update --update-*)). Unset suboptions keep the daemon's
        defaults (Docker's), or the service's current values on an update.
    type: dict
    suboptions:
      parallelism:
        description:
          - Tasks replaced at once; V(0) means all at once. The daemon's default is 1.
        type: int
      delay:
        description:
          - Wait after each task comes up before the next is replaced, for example V(10s). Default V(0s).
        type: str
      failure_action:
        description:
          - What a failed update does. V(rollback) is not allowed in O(rollback_config). Default V(pause).
        type: str
        choices: [pause, continue, rollback]
      monitor:
        description:
          - How long after it runs a new task is watched for failure, for example V(5s) (the default).
        type: str
      max_failure_ratio:
        description:
          - Share of failed tasks tolerated, from 0 (the default) to 1.
        type: float
      order:
        description:
          - V(stop-first) (the default) stops the old task before the new one starts; V(start-first) starts the
            new one and stops the old one once the new one runs (healthy).
        type: str
        choices: [stop-first, start-first]
      healthy_deadline:
        description:
          - A new task not running (healthy) within this counts as failed, for example V(5m) (the default).
        type: str
      progress_deadline:
        description:
          - An update not completed within this runs the failure action, for example V(10m) (the default).
        type: str
  rollback_config:
    description:
      - How a rollback is rolled out (C(service update --rollback-*)), with the suboptions of O(update_config).
    type: dict
    suboptions:
      parallelism:
        description:
          - Tasks replaced at once; V(0) means all at once. The daemon's default is 1.
        type: int
      delay:
        description:
          - Wait after each task comes up before the next is replaced, for example V(10s). Default V(0s).
        type: str
      failure_action:
        description:
          - What a failed update does. V(rollback) is not allowed in O(rollback_config). Default V(pause).
        type: str
        choices: [pause, continue, rollback]
      monitor:
        description:
          - How long after it runs a new task is watched for failure, for example V(5s) (the default).
        type: str
      max_failure_ratio:
        description:
          - Share of failed tasks tolerated, from 0 (the default) to 1.
        type: float
      order:
        description:
          - V(stop-first) (the default) stops the old task before the new one starts; V(start-first) starts the
            new one and stops the old one once the new one runs (healthy).
        type: str
        choices: [stop-first, start-first]
      healthy_deadline:
        description:
          - A new task not running (healthy) within this counts as failed, for example V(5m) (the default).
        type: str
      progress_deadline:
        description:
          - An update not completed within this runs the failure action, for example V(10m) (the default).
        type: str
  rebalance:
    description:
      - V(auto) moves the service's tasks onto nodes that join, come back or become active, start-first and without
        a capacity dip; V(never) leaves them. Unset means the swarm's default (C(swarm update --default-rebalance)).
    type: str
    choices: [auto, never]
  wait:
    description:
      - After an update that replaces the tasks (a rolling update), wait until it has completed. A paused or
        rolled-back update fails the task with the update's message. V(false) returns at once.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for a rolling update with O(wait=true).
    type: int
    default: 600
notes:
  - A create does not wait for the tasks to run; use M(swarmctl.cluster.info) with O(swarmctl.cluster.info#module:tasks=true)
    to watch them. An update that replaces tasks waits for the rolling update (O(wait)).
seealso:
  - module: swarmctl.cluster.info
"""

EXAMPLES = r"""
- name: Run three web servers
  swarmctl.cluster.service:
    name: web
    image: busybox:latest
    replicas: 3
    command: httpd -f -p 8080
    env:
      LOG_LEVEL: info
    placement:
      constraints:
        - node.role==worker
        - node.labels.zone!=b
      preferences:
        - spread: node.labels.zone
      replicas_max_per_node: 1
    limits:
      memory: 128M
      cpus: 0.5
    restart_config:
      condition: on-failure
      delay: 5s
      max_attempts: 3
    stop_grace_period: 5s
    healthcheck:
      test: wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1
      interval: 10s
      retries: 3
      start_period: 5s
    labels:
      team: frontend

- name: Publish a web server on port 8080 of every node, and a DNS server on the nodes that run it
  swarmctl.cluster.service:
    name: web
    image: busybox:latest
    command: httpd -f -p 80
    publish:
      - published_port: 8080
        target_port: 80
      - target_port: 9090  # the swarm picks the published port (30000-32767)
  register: web

- name: Show the ports the swarm published
  ansible.builtin.debug:
    msg: "{{ web.swarm_service.spec.endpoint.ports }}"

- name: A service reached by DNS round robin, its port bound on the nodes that run it
  swarmctl.cluster.service:
    name: dns
    image: busybox:latest
    command: [sleep, infinity]
    endpoint_mode: dnsrr
    publish:
      - published_port: 53
        target_port: 53
        protocol: udp
        mode: host

- name: Docker's placeholders, expanded by swarmctl on each node (kept from Ansible's templating)
  swarmctl.cluster.service:
    name: agent
    image: busybox:latest
    mode: global
    command: [sleep, infinity]
    env:
      NODE_NAME: !unsafe "{{.Node.Hostname}}"
      TASK_NAME: "{% raw %}{{.Service.Name}}.{{.Task.Slot}}{% endraw %}"

- name: A service with community.docker's container options
  swarmctl.cluster.service:
    name: app
    image: busybox:latest
    command: [sleep, infinity]
    networks: [host]
    mounts:
      - source: /srv/app/config
        target: /etc/app
        readonly: true
      - source: app-data
        target: /data
        type: volume
      - target: /scratch
        type: tmpfs
        tmpfs_size: 64M
        tmpfs_mode: 1023  # 0o1777
    env_files:
      - /srv/app/app.env
    env:
      LOG_LEVEL: debug  # wins over the env files
    logging:
      driver: json-file
      options:
        max-size: 10m
        max-file: "3"
    user: "1000:1000"
    working_dir: /data
    read_only: true
    init: true
    cap_drop: [ALL]
    cap_add: [NET_BIND_SERVICE]
    sysctls:
      kernel.msgmax: "65536"
    ulimits:
      - nofile:1024:2048
    hosts:
      db.internal: 10.0.0.5
    dns: [10.0.0.2]
    dns_search: [example.internal]
    dns_options: ["ndots:2"]
    stop_signal: SIGUSR1
    groups: ["100"]
    container_labels:
      team: backend

- name: Run an agent on every node
  swarmctl.cluster.service:
    name: agent
    image: busybox:latest
    mode: global
    command: [sleep, infinity]

- name: Remove a service
  swarmctl.cluster.service:
    name: web
    state: absent
"""

RETURN = r"""
swarm_service:
  description:
    - The service as the daemon stores it (C(GET /v1/services/NAME)), with C(replicas_status); null after
      removal.
    - In check mode, C(spec) holds the predicted spec (and C(id) is null for a service that would be created).
  returned: success
  type: dict
  contains:
    id:
      description: The service id.
      type: str
      returned: always
    spec:
      description: C(name), C(mode), C(replicas), C(labels), C(task) (image, command, args, env, network_mode,
        resources, restart_policy, placement, stop_grace_period, healthcheck, force_update, and the container
        options that were set, mounts, log_driver, hostname, hosts, user, working_dir, read_only, init, tty, cap_add,
        cap_drop, sysctls, ulimits, dns, dns_search, dns_options, stop_signal, groups and labels) and C(endpoint) (C(mode), and
        C(ports) with C(protocol), C(target_port), C(published_port) and C(publish_mode); the published ports
        the swarm picked are filled in, and null in check mode's prediction of a new service).
      type: dict
      returned: always
    spec_version:
      description: Incremented by every change of the task spec.
      type: int
      returned: always
    replicas_status:
      description: C(running) and C(desired) task counts.
      type: dict
      returned: always
changes:
  description:
    - The options that changed (or would change), as dotted option names such as C(replicas), C(env) or
      C(limits.memory). Empty when the service was created, removed or left as it was.
  returned: success
  type: list
  elements: str
  sample: ["replicas", "limits.memory"]
rebuilt:
  description: True if the service was removed and created again because its mode changed.
  returned: success
  type: bool
  sample: false
"""

import copy
import os
import re
import shlex
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.swarmctl.cluster.plugins.module_utils.swarmctl_client import (
    SwarmctlError,
    client_from_module,
    parse_bytes,
    parse_duration,
    swarmctl_argument_spec,
    update_with_retry,
    with_version,
)

# The daemon's defaults for a new service's task (swarmctl.state.records.default_task_spec), to predict a
# create in check mode.
DEFAULT_TASK = {
    "image": None, "command": None, "args": None, "env": {}, "network_mode": "host",
    "resources": {"reservations": {"cpus": 0.0, "memory": 0}, "limits": {"cpus": 0.0, "memory": 0}},
    "restart_policy": {"condition": "any", "delay": 5.0, "max_attempts": 0, "window": 0.0},
    "placement": {"constraints": [], "preferences": [], "max_replicas_per_node": 0, "strategy": None},
    "stop_grace_period": 10.0, "healthcheck": None, "force_update": 0,
}

# The daemon's defaults of a service's update and rollback configs (swarmctl.state.records.default_update_config).
DEFAULT_UPDATE = {"parallelism": 1, "delay": 0.0, "order": "stop-first", "failure_action": "pause", "monitor": 5.0,
                  "max_failure_ratio": 0.0, "healthy_deadline": 300.0, "progress_deadline": 600.0}

# A healthcheck's settings when left out: the daemon's (swarmctl.state.records.HEALTHCHECK_DEFAULTS), which it
# fills in, so the module compares the spec the daemon stores; tests/unit/plugins/test_healthcheck_agreement.py
# keeps them alike.
HEALTHCHECK_DEFAULTS = {"interval": 30.0, "timeout": 30.0, "retries": 3, "start_period": 0.0, "start_interval": 5.0}

# Spec paths -> option names (for `changes`).
OPTION_NAMES = {
    "mode": "mode", "replicas": "replicas", "labels": "labels",
    "task.image": "image", "task.command": "command", "task.args": "args", "task.env": "env",
    "task.network_mode": "network_mode", "task.stop_grace_period": "stop_grace_period",
    "task.healthcheck": "healthcheck",
    "task.force_update": "force_update",
    "task.placement.constraints": "placement.constraints",
    "task.placement.preferences": "placement.preferences",
    "task.placement.max_replicas_per_node": "placement.replicas_max_per_node",
    "task.placement.strategy": "placement.strategy",
    "task.restart_policy.condition": "restart_config.condition",
    "task.restart_policy.delay": "restart_config.delay",
    "task.restart_policy.max_attempts": "restart_config.max_attempts",
    "task.restart_policy.window": "restart_config.window",
    "task.resources.reservations.cpus": "reservations.cpus",
    "task.resources.reservations.memory": "reservations.memory",
    "task.resources.limits.cpus": "limits.cpus",
    "task.resources.limits.memory": "limits.memory",
    "endpoint.mode": "endpoint_mode", "endpoint.ports": "publish",
    "task.secrets": "secrets", "task.configs": "configs",
    # the container options of issue 13 (task spec fields of the contract; each compared whole)
    "task.mounts": "mounts", "task.log_driver": "logging", "task.hostname": "hostname", "task.hosts": "hosts",
    "task.user": "user", "task.working_dir": "working_dir", "task.read_only": "read_only", "task.init": "init",
    "task.tty": "tty", "task.cap_add": "cap_add", "task.cap_drop": "cap_drop", "task.sysctls": "sysctls",
    "task.ulimits": "ulimits", "task.dns": "dns", "task.dns_search": "dns_search",
    "task.dns_options": "dns_options", "task.stop_signal": "stop_signal", "task.groups": "groups",
    "task.labels": "container_labels",
}
OPTION_NAMES.update({"%s.%s" % (kind, key): "%s.%s" % (kind, key)
                     for kind in ("update_config", "rollback_config") for key in DEFAULT_UPDATE})
OPTION_NAMES.update(rebalance="rebalance")

# Published ports: the daemon's rules (swarmctl.mesh.ports.check_endpoint), repeated because a module imports
# only the standard library and module_utils; tests/unit/plugins/test_publish_agreement.py keeps them alike.
PROTOCOLS = ("tcp", "udp")
PUBLISH_MODES = ("ingress", "host")
ENDPOINT_MODES = ("vip", "dnsrr")
MAX_PORTS = 64  # published ports of one service
DEFAULT_ENDPOINT = {"mode": "vip", "ports": []}

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z0-9_.\-/]+)\s*(==|!=)\s*(.*?)\s*$")
_CONSTRAINT_FIELDS = ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch")


class ServiceParamError(ValueError):
    pass


def _pref_text(pref):
    if isinstance(pref, dict) and len(pref) == 1:
        strategy, arg = list(pref.items())[0]
        return "%s=%s" % (strategy, arg)
    return str(pref)


def check_preference(pref):
    """The daemon's placement preference rules (swarmctl.manager.scheduler.preferences.parse), so check mode
    fails like a real run: {"spread": "node.labels.KEY"} or {"spread": "engine.labels.KEY"}."""
    if not isinstance(pref, dict) or len(pref) != 1:
        raise ServiceParamError("invalid placement preference %r: expected one strategy and its argument, "
                                "e.g. {\"spread\": \"node.labels.zone\"}" % (_pref_text(pref),))
    strategy, descriptor = list(pref.items())[0]
    if strategy != "spread":
        raise ServiceParamError("unsupported placement preference %s (only spread is supported)" % (strategy,))
    if not isinstance(descriptor, str):
        raise ServiceParamError("invalid placement preference %r: the spread descriptor must be a string"
                                % (_pref_text(pref),))
    for prefix in ("node.labels.", "engine.labels."):
        if descriptor[:len(prefix)].lower() == prefix:
            if not descriptor[len(prefix):]:
                raise ServiceParamError("invalid placement preference %r: missing label name" % (_pref_text(pref),))
            return {"spread": descriptor}
    raise ServiceParamError("invalid placement preference %r: spread over node.labels.KEY or engine.labels.KEY"
                            % (_pref_text(pref),))


def check_constraint(expr):
    """The daemon's constraint syntax, checked here so check mode fails like a real run."""
    match = _CONSTRAINT.match(expr or "")
    if not match:
        raise ServiceParamError("invalid constraint %r: expected KEY==VALUE or KEY!=VALUE" % (expr,))
    key, _op, value = match.groups()
    if not value:
        raise ServiceParamError("invalid constraint %r: missing value" % (expr,))
    if key not in _CONSTRAINT_FIELDS and not (key.startswith("node.labels.") or key.startswith("engine.labels.")):
        raise ServiceParamError("invalid constraint %r: unknown key %r (use node.id, node.hostname, node.role, "
                                "node.labels.KEY or engine.labels.KEY)" % (expr, key))
    if key.endswith(".labels."):
        raise ServiceParamError("invalid constraint %r: missing label name" % (expr,))
    return expr


def _env_value(key, value):
    if isinstance(value, bool):
        raise ServiceParamError("env %s has the boolean value %r: quote values such as 'yes', 'true' or 'on' "
                                "so YAML keeps them as strings" % (key, value))
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise ServiceParamError("env %s must be a string, not %s" % (key, type(value).__name__))
    return value


def parse_env(env):
    """A dict, or a list of KEY=VALUE strings -> {KEY: VALUE}."""
    if env is None:
        return None
    if isinstance(env, dict):
        items = [(str(k), _env_value(k, v)) for k, v in env.items()]
    elif isinstance(env, (list, tuple)):
        items = []
        for item in env:
            if not isinstance(item, str) or "=" not in item:
                raise ServiceParamError("invalid env item %r: expected KEY=VALUE" % (item,))
            key, _sep, value = item.partition("=")
            items.append((key, value))
    elif isinstance(env, str) and not env.strip():
        items = []
    else:
        raise ServiceParamError("env must be a dictionary or a list of KEY=VALUE strings")
    for key, _value in items:
        if not key or "=" in key or any(c.isspace() for c in key):
            raise ServiceParamError("invalid environment variable name %r" % (key,))
    return dict(items)


def parse_command(command):
    if command is None:
        return None
    if isinstance(command, str):
        try:
            return shlex.split(command)
        except ValueError as exc:
            raise ServiceParamError("invalid command %r: %s" % (command, exc))
    if isinstance(command, (list, tuple)):
        return [str(c) for c in command]
    raise ServiceParamError("command must be a string or a list of strings")


def _number(value, what, cast):
    try:
        return cast(value)
    except ValueError as exc:
        raise ServiceParamError(str(exc))


def _port_value(value, what, optional=False):
    if value in (None, 0) and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ServiceParamError("invalid %s %r: must be in range 1-65535" % (what, value))
    return value


def check_endpoint(endpoint):
    """A complete, checked endpoint spec (the defaults filled in), as the daemon checks it; the first problem
    raises ServiceParamError with the daemon's text."""
    endpoint = endpoint or {}
    if not isinstance(endpoint, dict):
        raise ServiceParamError("endpoint must be an object")
    mode = endpoint.get("mode") or "vip"
    if mode not in ENDPOINT_MODES:
        raise ServiceParamError("invalid endpoint mode %r: use vip or dnsrr" % (mode,))
    ports = endpoint.get("ports") or []
    if not isinstance(ports, list):
        raise ServiceParamError("endpoint ports must be a list")
    if len(ports) > MAX_PORTS:
        raise ServiceParamError("at most %d published ports per service" % MAX_PORTS)
    out, seen = [], set()
    for port in ports:
        if not isinstance(port, dict):
            raise ServiceParamError("each published port must be an object")
        protocol = port.get("protocol") or "tcp"
        if protocol not in PROTOCOLS:
            raise ServiceParamError("invalid protocol value '%s': use tcp or udp" % (protocol,))
        publish_mode = port.get("publish_mode") or "ingress"
        if publish_mode not in PUBLISH_MODES:
            raise ServiceParamError("invalid publish mode value (%s): must be either 'ingress' or 'host'"
                                    % (publish_mode,))
        target = _port_value(port.get("target_port"), "target port")
        published = _port_value(port.get("published_port"), "published port", optional=True)
        if publish_mode == "host":
            # containers run with the host's network, so a task can only be reached where it listens
            if published is None:
                published = target
            elif published != target:
                raise ServiceParamError("host-mode port %s must be the target port %s: tasks use the host's network "
                                        "and listen on their target port" % (published, target))
        if mode == "dnsrr" and publish_mode == "ingress":
            raise ServiceParamError("port published with ingress mode can't be used with dnsrr mode")
        if published is not None:
            key = (published, protocol)
            if key in seen:
                raise ServiceParamError("duplicate published port %s/%s" % (published, protocol))
            seen.add(key)
        out.append({"protocol": protocol, "target_port": target, "published_port": published,
                    "publish_mode": publish_mode})
    return {"mode": mode, "ports": out}


def publish_ports(publish):
    """The publish option (docker_swarm_service's shape) -> the daemon's port list."""
    ports = []
    for item in publish:
        if not isinstance(item, dict):
            raise ServiceParamError("each published port must be an object")
        ports.append({"protocol": item.get("protocol"), "target_port": item.get("target_port"),
                      "published_port": item.get("published_port"), "publish_mode": item.get("mode")})
    return ports


def current_endpoint(spec):
    """A stored spec's endpoint, with the daemon's default for a service stored without one."""
    endpoint = (spec or {}).get("endpoint") or {}
    return {"mode": endpoint.get("mode") or DEFAULT_ENDPOINT["mode"], "ports": list(endpoint.get("ports") or [])}


def build_endpoint(params, base=None, reuse=None):
    """The request's endpoint for publish and endpoint_mode, checked; None when neither is given.

    The one left out comes from `base` (the current spec's endpoint; the default one when creating). A port whose
    published port is left out (ingress mode) takes the published port of the first port of `reuse` (the current
    endpoint) with the same protocol, target and mode, unless the new ports publish that number themselves: the
    port the daemon picked, so that a rerun is no change and an update does not move the port."""
    publish, mode = params.get("publish"), params.get("endpoint_mode")
    if publish is None and mode is None:
        return None
    base = current_endpoint({"endpoint": base})
    endpoint = check_endpoint({"mode": mode or base["mode"],
                               "ports": publish_ports(publish) if publish is not None else base["ports"]})
    taken = set((p["published_port"], p["protocol"]) for p in endpoint["ports"] if p["published_port"] is not None)
    candidates = [p for p in current_endpoint({"endpoint": reuse})["ports"] if isinstance(p, dict)]
    for port in endpoint["ports"]:
        if port["published_port"] is not None:
            continue
        for i, old in enumerate(candidates):
            key = (old.get("published_port"), old.get("protocol"))
            if (key[0] is not None and key not in taken and old.get("target_port") == port["target_port"]
                    and old.get("protocol") == port["protocol"] and old.get("publish_mode") == port["publish_mode"]):
                port["published_port"] = key[0]
                taken.add(key)
                del candidates[i]
                break
    return endpoint


FILE_KINDS = ("secret", "config")
DEFAULT_FILE_MODE = 0o444


def build_file_refs(kind, refs):
    """task.secrets / task.configs as the daemon stores them (swarmctl.manager.secrets.check_refs): target
    defaulting to the name (a secret) or /NAME (a config), uid and gid as numeric strings, mode 0o444; the ids are
    filled in by resolve_file_refs. None when the option is left out."""
    if refs is None:
        return None
    out = []
    for ref in refs:
        name = ref.get(kind + "_name")
        if not name:
            raise ServiceParamError("%ss[].%s_name must not be empty" % (kind, kind))
        target = ref.get("filename") or (name if kind == "secret" else "/" + name)
        owners = {}
        for key in ("uid", "gid"):
            value = "0" if ref.get(key) is None else str(ref[key]).strip()
            if not value.isdigit():
                raise ServiceParamError("invalid %ss[].%s %r: expected a numeric id" % (kind, key, ref.get(key)))
            owners[key] = value
        mode = DEFAULT_FILE_MODE if ref.get("mode") is None else ref["mode"]
        if not 0 <= mode <= 0o7777:
            raise ServiceParamError("invalid %ss[].mode %r: expected a file mode, e.g. 0o444 (292)" % (kind, mode))
        out.append({kind + "_id": ref.get(kind + "_id"), kind + "_name": name, "target": target,
                    "uid": owners["uid"], "gid": owners["gid"], "mode": mode})
    return out


def resolve_file_refs(body, records_of, warn):
    """Fill in the ids of the body's secret and config references from the daemon's lists (records_of(kind)), as
    the daemon does, so the predicted spec is the one it stores. A name it does not know keeps a null id (the daemon
    refuses it; in check mode an earlier task of the play may create it)."""
    for kind in FILE_KINDS:
        refs = (body.get("task") or {}).get(kind + "s")
        if not refs:
            continue
        records = records_of(kind)
        by_id = dict((r["id"], r) for r in records)
        by_name = dict((r["spec"]["name"], r) for r in records)
        for ref in refs:
            record = by_id.get(ref.get(kind + "_id") or "")
            if record is None or record["spec"]["name"] != ref[kind + "_name"]:
                record = by_name.get(ref[kind + "_name"])
            if record is None:
                warn("%s not found: %s" % (kind, ref[kind + "_name"]))
                continue
            ref[kind + "_id"] = record["id"]


def drop_empty_file_refs(spec):
    """The daemon keeps no empty task.secrets / task.configs list (a service without any has no such key)."""
    for kind in FILE_KINDS:
        if not spec["task"].get(kind + "s"):
            spec["task"].pop(kind + "s", None)
    return spec


# ---- container options (issue 13): community.docker.docker_swarm_service's names -> the task spec's fields --------
# Task spec fields whose absence (a service stored without them) and an empty value mean the same.
EMPTY_AS_UNSET = ("task.mounts", "task.hosts", "task.cap_add", "task.cap_drop", "task.sysctls", "task.ulimits",
                  "task.dns", "task.dns_search", "task.dns_options", "task.groups", "task.labels")

# The daemon's rules for networks and mounts (swarmctl.manager.services.validate_spec), repeated because a module
# imports only the standard library and module_utils; tests/unit/plugins/test_container_options_agreement.py keeps
# them alike.
NETWORK_MODES = ("host", "none")
NETWORK_UNAVAILABLE = ('network "%s" is not available: swarmctl runs tasks on the host\'s network ("host") or none '
                       '("none"); it has no overlay networks')
ONE_NETWORK = "a task has one network here: host or none"
MOUNT_TYPES = ("bind", "volume", "tmpfs")
PROPAGATIONS = ("shared", "slave", "private", "rshared", "rslave", "rprivate")
MAX_MOUNTS = 32
# go-units' ulimit names (the daemon's container_options.ULIMITS)
ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
           "rtprio", "rttime", "sigpending", "stack")


def normal_mounts(mounts):
    """Mounts as compared: keys whose value is null left out (the daemon stores no null)."""
    if not mounts:
        return None
    return [dict((k, v) for k, v in m.items() if v is not None) if isinstance(m, dict) else m for m in mounts]


def _strings(value, what):
    """A dict option's values as the strings the API takes."""
    out = {}
    for key, item in (value or {}).items():
        if isinstance(item, bool):
            raise ServiceParamError("%s %s has the boolean value %r: quote values such as 'yes' or 'true'"
                                    % (what, key, item))
        out[str(key)] = "" if item is None else str(item)
    return out


def build_mounts(mounts):
    """mounts (docker_swarm_service's shape) -> task.mounts, checked as the daemon checks them, with its messages
    (swarmctl.manager.container_options.check_mounts); None when left out. Keys left out (null) are not sent."""
    if mounts is None:
        return None
    if len(mounts) > MAX_MOUNTS:
        raise ServiceParamError("a task has at most %d mounts, not %d" % (MAX_MOUNTS, len(mounts)))
    out, targets = [], set()
    for mount in mounts:
        kind = mount.get("type") or "bind"
        if kind not in MOUNT_TYPES:
            raise ServiceParamError("invalid mount type %r: use bind, volume or tmpfs" % (kind,))
        target, source = mount.get("target"), mount.get("source")
        where = 'invalid mount config for type "%s"' % kind
        if not target:
            raise ServiceParamError("%s: field Target must not be empty" % where)
        if not target.startswith("/"):
            raise ServiceParamError("invalid mount target, must be an absolute path: %s" % target)
        if target.rstrip("/") in targets:
            raise ServiceParamError("duplicate mount point: %s" % target)
        targets.add(target.rstrip("/") or "/")
        if kind == "tmpfs" and source:
            raise ServiceParamError("%s: field Source must not be specified" % where)
        if kind == "bind":
            if not source:
                raise ServiceParamError("%s: field Source must not be empty" % where)
            if not source.startswith("/"):
                raise ServiceParamError("invalid bind mount source, must be an absolute path: %s" % source)
        item = {"type": kind, "source": source or None, "target": target, "readonly": bool(mount.get("readonly"))}
        if mount.get("propagation") is not None:
            if kind != "bind":
                raise ServiceParamError("%s: field BindOptions must not be specified" % where)
            if mount["propagation"] not in PROPAGATIONS:
                raise ServiceParamError("invalid propagation mode: %s" % mount["propagation"])
            item["propagation"] = mount["propagation"]
        if kind != "volume" and any(mount.get(k) is not None for k in ("no_copy", "labels", "driver_config")):
            raise ServiceParamError("%s: field VolumeOptions must not be specified" % where)
        if mount.get("no_copy") is not None:
            item["no_copy"] = bool(mount["no_copy"])
        if mount.get("labels") is not None:
            item["labels"] = _strings(mount["labels"], "mount label")
        driver = mount.get("driver_config")
        if driver is not None:
            if not driver.get("name"):
                raise ServiceParamError("%s: driver_config needs a driver name" % where)
            item["driver_config"] = {"name": driver["name"],
                                     "options": _strings(driver.get("options"), "driver option")}
        if kind != "tmpfs" and (mount.get("tmpfs_size") is not None or mount.get("tmpfs_mode") is not None):
            raise ServiceParamError("%s: field TmpfsOptions must not be specified" % where)
        if mount.get("tmpfs_size") is not None:
            item["tmpfs_size"] = _number(mount["tmpfs_size"], "tmpfs_size",
                                         lambda v: parse_bytes(v, "mounts[].tmpfs_size"))
        mode = mount.get("tmpfs_mode")
        if mode is not None:
            if not 0 <= mode <= 0o7777:
                raise ServiceParamError("invalid tmpfs mode %r: must be a file mode between 0 and 0o7777" % (mode,))
            item["tmpfs_mode"] = mode
        out.append(dict((k, v) for k, v in item.items() if v is not None))
    return out


def network_mode_of(networks, network_mode=None):
    """networks (docker_swarm_service's list of names or {name, aliases, options}) -> task.network_mode, with the
    daemon's messages; None when neither option is given."""
    if networks is None:
        return network_mode
    names = []
    for network in networks:
        if isinstance(network, dict):
            name = network.get("name")
            if not isinstance(name, str) or not name:
                raise ServiceParamError("each item of networks needs a name")
            unknown = sorted(set(network) - {"name", "aliases", "options"})
            if unknown:
                raise ServiceParamError("unknown networks[] option %s: use name, aliases and options" % unknown[0])
            if network.get("aliases") and name in NETWORK_MODES:
                raise ServiceParamError("network %s takes no aliases (aliases are for user-defined networks)" % name)
            if network.get("options") and name in NETWORK_MODES:
                raise ServiceParamError("network %s takes no options" % name)
        elif isinstance(network, str):
            name = network
        else:
            raise ServiceParamError("networks must be a list of names or of dictionaries with a name")
        if name not in NETWORK_MODES:
            raise ServiceParamError(NETWORK_UNAVAILABLE % name)
        names.append(name)
    if len(set(names)) > 1:
        raise ServiceParamError(ONE_NETWORK)
    if not names:
        return network_mode
    if network_mode and network_mode != names[0]:
        raise ServiceParamError("networks [%s] and network_mode %s disagree" % (names[0], network_mode))
    return names[0]


def parse_ulimit(item):
    """A ulimit: "nofile:1024:2048", "nofile:1024" (soft = hard) or {name, soft, hard} -> the API's dict."""
    if isinstance(item, str):
        parts = item.split(":")
        if len(parts) not in (2, 3) or not parts[0]:
            raise ServiceParamError("invalid ulimit %r: expected NAME:SOFT[:HARD], e.g. nofile:1024:2048" % (item,))
        name, soft, hard = parts[0], parts[1], parts[-1]
    elif isinstance(item, dict) and item.get("name"):
        name, soft = item["name"], item.get("soft")
        hard = item.get("hard", soft)
    else:
        raise ServiceParamError("invalid ulimit %r: expected NAME:SOFT[:HARD] or {name, soft, hard}" % (item,))
    try:
        soft, hard = int(soft), int(hard)
    except (TypeError, ValueError):
        raise ServiceParamError("invalid ulimit %r: soft and hard must be whole numbers" % (item,))
    if name not in ULIMITS:
        raise ServiceParamError("invalid ulimit type: %s" % name)
    if soft < -1 or hard < -1:
        raise ServiceParamError("invalid ulimit %r: soft and hard must be >= -1 (-1: unlimited)" % (item,))
    if soft > hard and hard != -1:
        raise ServiceParamError("ulimit soft limit must be less than or equal to hard limit: %d > %d" % (soft, hard))
    return {"name": str(name), "soft": soft, "hard": hard}


def read_env_file(path):
    """A Docker env file: KEY=VALUE lines (blank lines and lines starting with # skipped; a line with only a KEY
    takes its value from the environment the module runs in, and is skipped when that has none)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (IOError, OSError, UnicodeDecodeError) as exc:
        raise ServiceParamError("cannot read env_files item %s: %s" % (path, exc))
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not key or any(c.isspace() for c in key):
            raise ServiceParamError("invalid line %d of env file %s: expected KEY=VALUE" % (number, path))
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


def merged_env(params):
    """env_files read in order (later wins), then env over them (community.docker's rule); None when neither."""
    env = parse_env(params.get("env"))
    files = params.get("env_files")
    if files is None:
        return env
    out = {}
    for path in files:
        out.update(read_env_file(path))
    out.update(env or {})
    return out


def _string_list(value, what):
    if value is None:
        return None
    out = [str(v) for v in value]
    if any(not v for v in out):
        raise ServiceParamError("%s must not hold empty strings" % what)
    return out


def check_task(task):
    """The daemon's rules on a whole predicted task spec (options that depend on each other, possibly from the
    stored spec): no net.* sysctl in the host's network namespace."""
    if task.get("network_mode") == "host":
        for key in task.get("sysctls") or {}:
            if key.startswith("net.") or key.startswith("net/"):
                raise ServiceParamError('sysctl "%s" not allowed in host network namespace' % key)


def build_container_options(params, task):
    """Add the container options given to the body's task (fields left out are not sent)."""
    mounts = build_mounts(params.get("mounts"))
    if mounts is not None:
        task["mounts"] = mounts
    logging = params.get("logging")
    if logging is not None and (logging.get("driver") or logging.get("options")):
        if not logging.get("driver"):
            raise ServiceParamError("logging.options needs logging.driver")
        task["log_driver"] = {"name": logging["driver"], "options": _strings(logging.get("options"), "logging option")}
    network_mode = network_mode_of(params.get("networks"), params.get("network_mode"))
    if network_mode:
        task["network_mode"] = network_mode
    for key in ("hostname", "user", "working_dir", "stop_signal"):
        if params.get(key) is not None:
            task[key] = params[key]
    for key in ("read_only", "init", "tty"):
        if params.get(key) is not None:
            task[key] = bool(params[key])
    for key in ("cap_add", "cap_drop", "dns", "dns_search", "dns_options", "groups"):
        value = _string_list(params.get(key), key)
        if value is not None:
            task[key] = value
    if params.get("hosts") is not None:
        task["hosts"] = _strings(params["hosts"], "hosts")
    if params.get("sysctls") is not None:
        task["sysctls"] = _strings(params["sysctls"], "sysctl")
    if params.get("ulimits") is not None:
        task["ulimits"] = [parse_ulimit(u) for u in params["ulimits"]]
    if params.get("container_labels") is not None:
        task["labels"] = _strings(params["container_labels"], "container label")


def build_body(params):
    """The create request for the options given; options left out are not in it. Raises ServiceParamError."""
    name = params["name"]
    if not name or not set(name) <= NAME_CHARS or name[0] in "-_.":
        raise ServiceParamError("invalid service name %r: use letters, digits, '-', '_' and '.'" % (name,))
    mode = params.get("mode") or "replicated"
    body = {"name": name, "mode": mode}
    replicas = params.get("replicas")
    if replicas is not None and replicas != -1:
        if replicas < 0:
            raise ServiceParamError("invalid replicas %r: must be a whole number >= 0 (or -1 to keep it)" % replicas)
        if mode == "global":
            raise ServiceParamError("replicas can only be used with mode=replicated")
        body["replicas"] = replicas
    if params.get("labels") is not None:
        body["labels"] = dict((str(k), "" if v is None else str(v)) for k, v in params["labels"].items())
    task = {}
    if params.get("image") is not None:
        if not params["image"].strip():
            raise ServiceParamError("image must not be empty")
        task["image"] = params["image"].strip()
    command = parse_command(params.get("command"))
    if command is not None:
        task["command"] = command
    if params.get("args") is not None:
        task["args"] = [str(a) for a in params["args"]]
    env = merged_env(params)
    if env is not None:
        task["env"] = env
    build_container_options(params, task)
    placement = params.get("placement") or {}
    out = {}
    if placement.get("constraints") is not None:
        out["constraints"] = [check_constraint(c) for c in placement["constraints"]]
    if placement.get("preferences") is not None:
        out["preferences"] = [check_preference(p) for p in placement["preferences"]]
    if placement.get("replicas_max_per_node") is not None:
        if placement["replicas_max_per_node"] < 0:
            raise ServiceParamError("placement.replicas_max_per_node must be >= 0")
        out["max_replicas_per_node"] = placement["replicas_max_per_node"]
    if placement.get("strategy"):
        out["strategy"] = placement["strategy"]
    if out:
        task["placement"] = out
    resources = {}
    for kind in ("reservations", "limits"):
        given = params.get(kind) or {}
        out = {}
        if given.get("cpus") is not None:
            if given["cpus"] < 0:
                raise ServiceParamError("%s.cpus must be >= 0" % kind)
            out["cpus"] = float(given["cpus"])
        if given.get("memory") is not None:
            out["memory"] = _number(given["memory"], kind, lambda v: parse_bytes(v, "%s.memory" % kind))
        if out:
            resources[kind] = out
    if resources:
        task["resources"] = resources
    restart = params.get("restart_config") or {}
    out = {}
    if restart.get("condition"):
        out["condition"] = restart["condition"]
    for key in ("delay", "window"):
        if restart.get(key) is not None:
            out[key] = _number(restart[key], key, lambda v, k=key: parse_duration(v, "restart_config.%s" % k))
    if restart.get("max_attempts") is not None:
        if restart["max_attempts"] < 0:
            raise ServiceParamError("restart_config.max_attempts must be >= 0")
        out["max_attempts"] = restart["max_attempts"]
    if out:
        task["restart_policy"] = out
    if params.get("stop_grace_period") is not None:
        task["stop_grace_period"] = _number(params["stop_grace_period"], "stop_grace_period",
                                            lambda v: parse_duration(v, "stop_grace_period"))
    healthcheck = build_healthcheck(params.get("healthcheck"))
    if healthcheck is not None:
        task["healthcheck"] = healthcheck
    for kind in FILE_KINDS:
        refs = build_file_refs(kind, params.get(kind + "s"))
        if refs is not None:
            task[kind + "s"] = refs
    body["task"] = task
    endpoint = build_endpoint(params)
    if endpoint is not None:
        body["endpoint"] = endpoint
    for kind in ("update_config", "rollback_config"):
        config = build_update_config(params.get(kind), kind)
        if config:
            body[kind] = config
    if params.get("rebalance"):
        body["rebalance"] = params["rebalance"]
    return body


def build_update_config(given, kind):
    """The API's update_config (or rollback_config) from the module's suboptions; the daemon's rules
    (swarmctl.manager.services._check_update_config)."""
    out = {}
    for key, value in (given or {}).items():
        if value is None:
            continue
        if key in ("delay", "monitor", "healthy_deadline", "progress_deadline"):
            value = _number(value, key, lambda v, k=key: parse_duration(v, "%s.%s" % (kind, k)))
            if value < 0 or (key.endswith("deadline") and value == 0):
                bound = "more than 0" if key.endswith("deadline") else ">= 0"
                raise ServiceParamError("%s.%s must be %s" % (kind, key, bound))
        elif key == "parallelism" and value < 0:
            raise ServiceParamError("%s.parallelism must be >= 0" % kind)
        elif key == "max_failure_ratio" and not 0 <= value <= 1:
            raise ServiceParamError("%s.max_failure_ratio must be between 0 and 1" % kind)
        elif key == "failure_action" and kind == "rollback_config" and value == "rollback":
            raise ServiceParamError("rollback_config.failure_action must be pause or continue")
        out[key] = value
    return out


UPDATE_OPTIONS = dict(
    parallelism=dict(type="int"),
    delay=dict(type="str"),
    failure_action=dict(type="str", choices=["pause", "continue", "rollback"]),
    monitor=dict(type="str"),
    max_failure_ratio=dict(type="float"),
    order=dict(type="str", choices=["stop-first", "start-first"]),
    healthy_deadline=dict(type="str"),
    progress_deadline=dict(type="str"),
)
UPDATE_ENDED = ("completed", "paused", "rollback_paused", "rollback_completed")


def wait_for_update(client, service, timeout, sleep=time.sleep, clock=time.monotonic):
    """Poll the service's progress until its rolling update ends; its update_status (None if it has none)."""
    deadline = clock() + timeout
    path = "/v1/services/%s/progress" % service["id"]
    while True:
        try:
            progress = client.get(path)
        except SwarmctlError as exc:
            if exc.status not in (500, 502, 503, 504):
                raise
            progress = None
        status = (progress or {}).get("update_status")
        if progress is not None and (status is None or status.get("state") in UPDATE_ENDED):
            return status
        if clock() >= deadline:
            return dict(status or {}, state="timeout",
                        message="the rolling update did not end within %d s (%s)"
                                % (timeout, (status or {}).get("state")))
        sleep(0.5)


def build_healthcheck(health):
    """The task's healthcheck (community.docker's option -> the API's task.healthcheck, in seconds), with the
    daemon's defaults filled in; None when the option is left out. The daemon checks the rest."""
    if health is None:
        return None
    test = health.get("test")
    if test is None:
        test = []
    elif isinstance(test, str):
        test = ["CMD-SHELL", test] if test.strip() else []
    elif isinstance(test, list):
        test = [str(word) for word in test]
    else:
        raise ServiceParamError("healthcheck.test must be a string or a list")
    out = {"test": test}
    for key, default in HEALTHCHECK_DEFAULTS.items():
        value = health.get(key)
        if value is None:
            out[key] = default
        elif key == "retries":
            if value < 0:
                raise ServiceParamError("healthcheck.retries cannot be negative")
            out[key] = int(value)
        else:
            out[key] = _number(value, key, lambda v, k=key: parse_duration(v, "healthcheck.%s" % k))
    return out


# task fields an update replaces whole (the daemon's services._WHOLE); the others that are dicts merge
WHOLE = ("env", "labels", "healthcheck", "sysctls", "hosts", "log_driver")


def merge(base, patch):
    """The daemon's merge: nested dicts merge, except WHOLE, which are replaced whole."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in WHOLE:
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def new_spec(body):
    """The spec the daemon would store for a create request."""
    replicas = body.get("replicas")
    if body["mode"] == "global":
        replicas = None
    elif replicas is None:
        replicas = 1
    spec = {"name": body["name"], "labels": dict(body.get("labels") or {}), "mode": body["mode"],
            "replicas": replicas, "task": merge(DEFAULT_TASK, body.get("task") or {})}
    # the daemon picks the published ports left out (30000-32767); the prediction leaves them null
    spec["endpoint"] = copy.deepcopy(body["endpoint"] if body.get("endpoint") is not None else DEFAULT_ENDPOINT)
    for kind in ("update_config", "rollback_config"):
        spec[kind] = merge(DEFAULT_UPDATE, body.get(kind) or {})
    spec["rebalance"] = body.get("rebalance")
    return drop_empty_file_refs(spec)


def updated_spec(old, body, force=False):
    """The spec the daemon would store after an update request with body's replicas, labels, task and endpoint
    (which replaces the whole endpoint)."""
    new = copy.deepcopy(old)
    if body.get("replicas") is not None:
        new["replicas"] = body["replicas"]
    if body.get("labels") is not None:
        new["labels"] = dict(body["labels"])
    if body.get("task"):
        new["task"] = merge(old["task"], body["task"])
    if body.get("endpoint") is not None:
        new["endpoint"] = copy.deepcopy(body["endpoint"])
    for kind in ("update_config", "rollback_config"):
        new[kind] = merge(merge(DEFAULT_UPDATE, old.get(kind) or {}), body.get(kind) or {})
    new["rebalance"] = body.get("rebalance") or old.get("rebalance")
    if force:
        new["task"]["force_update"] = (old["task"].get("force_update") or 0) + 1
    return drop_empty_file_refs(new)


def changed_options(old, new, prefix=""):
    """Option names (see OPTION_NAMES) whose values differ between two specs (a spec without an endpoint has
    the default one)."""
    if not prefix:
        old, new = dict(old, endpoint=current_endpoint(old)), dict(new, endpoint=current_endpoint(new))
    out = []
    for key in sorted(set(old) | set(new)):
        path = prefix + key
        a, b = old.get(key), new.get(key)
        if path == "task.placement.preferences":  # a service stored before preferences existed has none
            a, b = a or [], b or []
        elif path in EMPTY_AS_UNSET:  # left out (no key) and empty are the same: the engine's default
            a, b = a or None, b or None
        if path == "task.mounts":
            a, b = normal_mounts(a), normal_mounts(b)
        if path not in OPTION_NAMES and isinstance(a, dict) and isinstance(b, dict):
            out.extend(changed_options(a, b, path + "."))
        elif a != b and path != "name":
            out.append(OPTION_NAMES.get(path, path))
    return out


def plan(current, params, resolve=None):
    """Decide what to do: dict(action=create|update|rebuild|remove|none, body, spec (predicted), changes).
    resolve(body): fills in the ids of the secret and config references (resolve_file_refs)."""
    if params["state"] == "absent":
        return dict(action="remove" if current else "none", body=None, spec=None, changes=[])
    body = build_body(params)
    if resolve is not None:
        resolve(body)
    if current is None:
        spec = new_spec(body)
        check_task(spec["task"])
        return dict(action="create", body=body, spec=spec, changes=[])
    old = current["spec"]
    if body["mode"] != old["mode"]:
        # created again from the options given, keeping the published ports the daemon picked
        endpoint = build_endpoint(params, reuse=old.get("endpoint"))
        if endpoint is not None:
            body["endpoint"] = endpoint
        spec = new_spec(body)
        check_task(spec["task"])
        return dict(action="rebuild", body=body, spec=spec, changes=sorted(changed_options(old, spec)))
    endpoint = build_endpoint(params, base=old.get("endpoint"), reuse=old.get("endpoint"))
    if endpoint is None or endpoint == current_endpoint(old):
        body.pop("endpoint", None)  # unchanged: not sent, so the update leaves the endpoint alone
    else:
        body["endpoint"] = endpoint
    spec = updated_spec(old, body, force=bool(params.get("force_update")))
    check_task(spec["task"])
    changes = sorted(changed_options(old, spec))
    if not changes:
        return dict(action="none", body=None, spec=old, changes=[])
    update = dict((k, body[k]) for k in ("replicas", "labels", "task", "endpoint") if body.get(k) is not None)
    if params.get("force_update"):
        update["force"] = True
    return dict(action="update", body=update, spec=spec, changes=changes)


def update_paths(body):
    """The fields of the service record an update body changes, for the retry rule (still_meaningful): replicas,
    labels, env, healthcheck and the endpoint as a whole (the module sets them whole), and every other task setting
    it names."""
    paths = []
    if "replicas" in body:
        paths.append(("spec", "replicas"))
    if "labels" in body:
        paths.append(("spec", "labels"))

    def leaves(tree, prefix):
        for key, value in tree.items():
            if isinstance(value, dict) and value and key not in WHOLE:
                leaves(value, prefix + (key,))
            else:
                paths.append(prefix + (key,))
    leaves(body.get("task") or {}, ("spec", "task"))
    if "endpoint" in body:
        paths.append(("spec", "endpoint"))
    if body.get("force"):
        paths.append(("spec", "task", "force_update"))
    return paths


def find_service(client, name):
    """The service named name (exact name, never an id prefix), or None."""
    for service in client.get("/v1/services"):
        if service["spec"]["name"] == name:
            return service
    return None


def main():
    argument_spec = swarmctl_argument_spec(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        image=dict(type="str"),
        mode=dict(type="str", default="replicated", choices=["replicated", "global"]),
        replicas=dict(type="int", default=-1),
        command=dict(type="raw"),
        args=dict(type="list", elements="str"),
        env=dict(type="raw"),
        labels=dict(type="dict"),
        network_mode=dict(type="str", choices=["host", "none"]),
        networks=dict(type="list", elements="raw"),
        mounts=dict(type="list", elements="dict", options=dict(
            source=dict(type="str"),
            target=dict(type="str", required=True),
            type=dict(type="str", default="bind", choices=["bind", "volume", "tmpfs"]),
            readonly=dict(type="bool"),
            labels=dict(type="dict"),
            propagation=dict(type="str", choices=["shared", "slave", "private", "rshared", "rslave", "rprivate"]),
            no_copy=dict(type="bool"),
            driver_config=dict(type="dict", options=dict(
                name=dict(type="str"),
                options=dict(type="dict"),
            )),
            tmpfs_size=dict(type="str"),
            tmpfs_mode=dict(type="int"),
        )),
        env_files=dict(type="list", elements="path"),
        logging=dict(type="dict", options=dict(
            driver=dict(type="str"),
            options=dict(type="dict"),
        )),
        hostname=dict(type="str"),
        hosts=dict(type="dict"),
        user=dict(type="str"),
        working_dir=dict(type="str"),
        read_only=dict(type="bool"),
        init=dict(type="bool"),
        tty=dict(type="bool"),
        cap_add=dict(type="list", elements="str"),
        cap_drop=dict(type="list", elements="str"),
        sysctls=dict(type="dict"),
        ulimits=dict(type="list", elements="raw"),
        dns=dict(type="list", elements="str"),
        dns_search=dict(type="list", elements="str"),
        dns_options=dict(type="list", elements="str"),
        stop_signal=dict(type="str"),
        groups=dict(type="list", elements="str"),
        container_labels=dict(type="dict"),
        publish=dict(type="list", elements="dict", options=dict(
            published_port=dict(type="int"),
            target_port=dict(type="int", required=True),
            protocol=dict(type="str", default="tcp", choices=["tcp", "udp"]),
            mode=dict(type="str", default="ingress", choices=["ingress", "host"]),
        )),
        endpoint_mode=dict(type="str", choices=["vip", "dnsrr"]),
        placement=dict(type="dict", options=dict(
            constraints=dict(type="list", elements="str"),
            preferences=dict(type="list", elements="dict"),
            replicas_max_per_node=dict(type="int"),
            strategy=dict(type="str", choices=["spread", "binpack", "random"]),
        )),
        reservations=dict(type="dict", options=dict(
            cpus=dict(type="float"),
            memory=dict(type="str"),
        )),
        limits=dict(type="dict", options=dict(
            cpus=dict(type="float"),
            memory=dict(type="str"),
        )),
        restart_config=dict(type="dict", options=dict(
            condition=dict(type="str", choices=["none", "on-failure", "any"]),
            delay=dict(type="str"),
            max_attempts=dict(type="int"),
            window=dict(type="str"),
        )),
        stop_grace_period=dict(type="str"),
        healthcheck=dict(type="dict", options=dict(
            test=dict(type="raw"),
            interval=dict(type="str"),
            timeout=dict(type="str"),
            retries=dict(type="int"),
            start_period=dict(type="str"),
            start_interval=dict(type="str"),
        )),
        force_update=dict(type="bool", default=False),
        secrets=dict(type="list", elements="dict", no_log=False, options=dict(
            secret_id=dict(type="str"),
            secret_name=dict(type="str", required=True),
            filename=dict(type="str"),
            uid=dict(type="str"),
            gid=dict(type="str"),
            mode=dict(type="int"),
        )),
        configs=dict(type="list", elements="dict", options=dict(
            config_id=dict(type="str"),
            config_name=dict(type="str", required=True),
            filename=dict(type="str"),
            uid=dict(type="str"),
            gid=dict(type="str"),
            mode=dict(type="int"),
        )),
        update_config=dict(type="dict", options=UPDATE_OPTIONS),
        rollback_config=dict(type="dict", options=UPDATE_OPTIONS),
        rebalance=dict(type="str", choices=["auto", "never"]),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=600),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("state", "present", ("image",))])
    client = client_from_module(module)
    name = module.params["name"]
    try:
        current = find_service(client, name)
    except SwarmctlError as exc:
        module.fail_json(msg=exc.message, status=exc.status)
    lists = {}

    def records_of(kind):
        if kind not in lists:
            lists[kind] = client.get("/v1/%ss" % kind)
        return lists[kind]

    def resolve(body):
        resolve_file_refs(body, records_of, module.warn if module.check_mode else lambda message: None)
    try:
        decision = plan(current, module.params, resolve)
    except ServiceParamError as exc:
        module.fail_json(msg=str(exc))
    except SwarmctlError as exc:
        module.fail_json(msg=exc.message, status=exc.status)
    action = decision["action"]
    result = dict(changed=action != "none", changes=decision["changes"], rebuilt=action == "rebuild",
                  swarm_service=current)
    if action != "none":
        result["diff"] = dict(before=current["spec"] if current else {}, after=decision["spec"] or {})
    if action in ("create", "rebuild", "update") and module.check_mode:
        result["swarm_service"] = dict(current or {}, id=current["id"] if action == "update" else None,
                                       spec=decision["spec"])
    if action == "remove":
        result["swarm_service"] = None
    if module.check_mode or action == "none":
        module.exit_json(**result)
    try:
        if action in ("remove", "rebuild"):
            client.delete("/v1/services/%s" % current["id"])
        if action in ("create", "rebuild"):
            result["swarm_service"] = client.post("/v1/services", decision["body"])
        elif action == "update":
            # with the service's version; on "update out of sequence" re-read and retry while the fields the
            # update changes are as first read (module_utils.update_with_retry)
            reads = [current]
            path = "/v1/services/%s" % current["id"]

            def plan_update(service):
                fresh = plan(service, module.params, resolve)
                body = fresh["body"] if fresh["action"] == "update" else decision["body"]
                return body, update_paths(body)

            answer, _planned_on = update_with_retry(
                lambda: reads.pop() if reads else client.get(path), plan_update,
                lambda service, body: client.post(with_version(path + "/update", service), body))
            result["swarm_service"] = answer["service"]
            if not answer.get("changes"):
                result["changed"], result["changes"] = False, []
                result.pop("diff", None)
            elif module.params["wait"] and answer["service"].get("spec_version") != current.get("spec_version"):
                status = wait_for_update(client, answer["service"], module.params["wait_timeout"])
                result["swarm_service"] = client.get(path)
                result["update_status"] = status
                if status and status.get("state") != "completed":
                    module.fail_json(msg=status.get("message") or status.get("state"), changed=True,
                                     update_status=status, swarm_service=result["swarm_service"])
    except SwarmctlError as exc:
        module.fail_json(msg=exc.message, status=exc.status, changed=action == "rebuild")
    if result.get("diff") and result["swarm_service"]:
        result["diff"]["after"] = result["swarm_service"]["spec"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()

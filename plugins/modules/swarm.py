#!/usr/bin/python
# Copyright (c) 2026 swarmctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: swarm
short_description: Create, join and leave a swarmctl swarm
version_added: 0.1.0
description:
  - Creates a new swarm on the local swarmctl daemon (O(state=present)), joins the daemon to an existing swarm
    (O(state=join)), makes it leave its swarm (O(state=absent)), or removes another, down node from the swarm
    (O(state=remove)).
  - Parameter names follow M(community.docker.docker_swarm), so playbooks move over by renaming the module.
  - Talks to the local daemon through its unix socket (O(swarmctl_host)); the daemon must be running.
author:
  - swarmctl maintainers (@swarmctl)
attributes:
  check_mode:
    description: Predicts the change without making it.
    support: full
  diff_mode:
    description: Shows the node's swarm membership (and token rotations) before and after.
    support: full
extends_documentation_fragment:
  - swarmctl.cluster.swarmctl
options:
  state:
    description:
      - V(present) creates a new swarm with this node as its first manager, unless the node already is a manager
        of a swarm; on such a manager it rotates the join tokens on request (a new swarm's tokens are fresh,
        so nothing is rotated right after creating one).
      - V(join) joins the swarm of O(remote_addrs) with O(join_token). A node that is already part of a swarm
        is left as it is (RV(ignore:changed=false)).
      - V(absent) makes the node leave its swarm. A manager needs O(force=true).
      - V(remove) removes the node O(node_id) from the swarm; this node must be a manager.
    type: str
    default: present
    choices: [present, join, absent, remove]
  advertise_addr:
    description:
      - The address other nodes reach this node at (init and join). Defaults to the daemon's
        C(--advertise-addr).
      - An IP address, or as in Docker an interface name (C(eth0)) or a Linux address label (C(lo:sw1)); the
        daemon resolves a name to the interface's IPv4 address and refuses an interface with none or with several
        (name a label then), and an unknown name, with one line.
      - A port (C(eth0:2377)) must be the listen port; the management port is O(listen_addr)'s.
    type: str
  listen_addr:
    description:
      - The management API's listen address, C(IP:PORT) or C(INTERFACE:PORT) (init and join), resolved as
        O(advertise_addr). The last C(:digits) is the port. Defaults to the daemon's C(--listen-addr), usually
        C(ADVERTISE:2377).
    type: str
  data_path_addr:
    description:
      - Not supported, and refused with one line when set - swarmctl has no overlay data path; its tasks run on
        the host's network and other nodes reach them at the node's O(advertise_addr).
    type: str
  data_path_port:
    description:
      - Not supported, and refused with one line when set - swarmctl has no VXLAN overlay.
    type: int
  remote_addrs:
    description:
      - Management addresses (C(HOST:PORT)) of managers of the swarm to join. They are tried in order; the first
        one that can be reached is used.
      - Required with O(state=join).
    type: list
    elements: str
  join_token:
    description:
      - The swarm's worker or manager join token, C(SWMTKN-1-...). The token decides the role the node joins as.
      - Required with O(state=join).
    type: str
  force:
    description:
      - With O(state=absent), leave the swarm even if this node is a manager. Leaving as the last manager erases
        the swarm's state.
      - With O(state=remove), remove the node even if it is not down.
      - Not used with O(state=present); use C(swarmctl swarm init --force-new-cluster) to recover a swarm.
    type: bool
    default: false
  node_id:
    description:
      - The node to remove with O(state=remove), by id, unique id prefix or unique hostname.
      - Required with O(state=remove).
    type: str
  rotate_worker_token:
    description:
      - Rotate the worker join token (O(state=present) on a manager). Always a change.
    type: bool
    default: false
  rotate_manager_token:
    description:
      - Rotate the manager join token (O(state=present) on a manager). Always a change.
    type: bool
    default: false
  node_cert_expiry:
    description:
      - Validity of the node certificates the swarm issues from now on, in seconds (O(state=present)). At least
        V(60). Nodes renew their certificates at a random point between 50% and 80% of their lifetime.
      - Unset, the swarm's current setting is kept (a new swarm starts with 7776000, 90 days).
    type: int
  task_history_retention_limit:
    description:
      - Ended tasks the swarm keeps per slot (per node for global services), like Docker's
        C(swarm update --task-history-limit) (O(state=present)). From V(0) to V(1000).
      - Unset, the swarm's current setting is kept (a new swarm starts with 5).
    type: int
  election_tick:
    description:
      - Raft election timeout in ticks of 50 ms (swarmkit's tick is 1 s, so Docker's default 10 is 0.5 s here)
        (O(state=present)). A follower that hears nothing from a leader for a random time between V(election_tick)
        ticks and 2.4 times that stands for election (pysyncobj's C(raftMinTimeout) and C(raftMaxTimeout)).
      - From V(2) to V(400), greater than O(heartbeat_tick). Unset, 5 ticks (0.25-0.6 s), 12 from 200 nodes on.
      - Every manager applies it to its running Raft replica within a second.
    type: int
  heartbeat_tick:
    description:
      - Ticks of 50 ms between the Raft leader's heartbeats (append-entries messages; pysyncobj's
        C(appendEntriesPeriod)) (O(state=present)). From V(1) to V(20), less than O(election_tick) (unset 5).
        Unset, 1 tick. Applied live by every manager.
    type: int
  snapshot_interval:
    description:
      - Raft log entries between two snapshots (log compactions; pysyncobj's C(logCompactionMinEntries))
        (O(state=present)). From V(100) to V(10000000); unset, 20000. A replica also compacts every 10 minutes
        when entries were appended. Applied live by every manager.
    type: int
  keep_old_snapshots:
    description:
      - Old Raft snapshots kept besides the latest. Only V(0) is accepted - pysyncobj keeps one snapshot file.
    type: int
  log_entries_for_slow_followers:
    description:
      - Raft log entries kept after a snapshot for followers that are behind. Only V(0) is accepted - pysyncobj
        drops the log up to the snapshot and sends a follower behind it the snapshot.
    type: int
  dispatcher_heartbeat_period:
    description:
      - How often every node heartbeats to the managers, in seconds (community.docker takes nanoseconds)
        (O(state=present)). From V(0.5) to V(3600). The leader tells the nodes in its heartbeat answers, so it
        applies without restarts; a node is Down after missing about 3 periods.
      - Unset, each daemon's own C(--heartbeat-period) (default 5).
    type: float
notes:
  - Joining uses the daemon's local C(POST /v1/swarm/join); the daemon checks the swarm's CA against the token's
    digest before it sends anything secret.
seealso:
  - module: swarmctl.cluster.info
  - module: swarmctl.cluster.node
"""

EXAMPLES = r"""
- name: Create a swarm on the first manager
  swarmctl.cluster.swarm:
    state: present
    advertise_addr: 10.0.0.1
  register: swarm

- name: Join a worker, handing the token over from the first manager
  swarmctl.cluster.swarm:
    state: join
    join_token: "{{ hostvars[groups['managers'][0]].swarm.swarm_facts.JoinTokens.Worker }}"
    remote_addrs:
      - 10.0.0.1:2377
      - 10.0.0.2:2377

- name: Rotate the worker token
  swarmctl.cluster.swarm:
    state: present
    rotate_worker_token: true

- name: Issue node certificates for 30 days
  swarmctl.cluster.swarm:
    state: present
    node_cert_expiry: 2592000

- name: Keep two ended tasks per slot
  swarmctl.cluster.swarm:
    state: present
    task_history_retention_limit: 2

- name: Create a swarm on the address of an interface, with slower Raft elections
  swarmctl.cluster.swarm:
    state: present
    advertise_addr: eth1
    listen_addr: "eth1:2377"
    election_tick: 20
    heartbeat_tick: 2
    snapshot_interval: 10000
    dispatcher_heartbeat_period: 5

- name: Remove a node that is down
  swarmctl.cluster.swarm:
    state: remove
    node_id: worker3

- name: Leave the swarm, even as a manager
  swarmctl.cluster.swarm:
    state: absent
    force: true
"""

RETURN = r"""
swarm_facts:
  description:
    - The swarm as its managers see it (C(GET /v1/swarm)) with the current join tokens.
    - Empty when this node is not a manager (a worker, a node outside any swarm, or a prediction in check mode).
  returned: success
  type: dict
  contains:
    id:
      description: The swarm's cluster id.
      type: str
      returned: when this node is a manager
    spec:
      description: The swarm's settings.
      type: dict
      returned: when this node is a manager
    root_ca:
      description: The root CA certificate (C(cert)) and its digest (C(digest)).
      type: dict
      returned: when this node is a manager
    managers:
      description: Raft addresses of the managers.
      type: list
      elements: str
      returned: when this node is a manager
    leader:
      description: Raft address of the leader.
      type: str
      returned: when this node is a manager
    manager_addrs:
      description: Management addresses (C(IP:PORT)) of the managers, for O(remote_addrs) of joining nodes.
      type: list
      elements: str
      returned: when this node is a manager
    JoinTokens:
      description: The join tokens, under the keys C(Worker) and C(Manager) as in community.docker.
      type: dict
      returned: when this node is a manager
      sample: {"Worker": "SWMTKN-1-...", "Manager": "SWMTKN-1-..."}
actions:
  description: What was done, or would be done in check mode.
  returned: success
  type: list
  elements: str
  sample: ["Swarm cluster created"]
node_id:
  description: This node's id in its swarm, or null outside a swarm (also after leaving).
  returned: success
  type: str
  sample: 4u8dmxcu1vzbd0fjmf9l0jyvd
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.swarmctl.cluster.plugins.module_utils.swarmctl_client import (
    SwarmctlError,
    client_from_module,
    swarmctl_argument_spec,
    update_with_retry,
    with_version,
)

_TOKEN = re.compile(r"^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$")


def token_problem(token):
    """None if the token looks like a join token, else a message that does not repeat the token."""
    token = (token or "").strip()
    if not token:
        return "join_token is required with state=join"
    if not token.startswith("SWMTKN-"):
        return "join_token is malformed: it must start with 'SWMTKN-1-'"
    if not _TOKEN.match(token):
        return "join_token is malformed: expected SWMTKN-1-<50 base-36 characters>-<25 base-36 characters>"
    return None


def addr_problem(addr):
    """None if addr is HOST:PORT with a valid port."""
    host, sep, port = (addr or "").strip().rpartition(":")
    if not sep or not host:
        return "invalid remote address %r: expected HOST:PORT, e.g. 10.0.0.1:2377" % (addr,)
    if not port.isdigit() or not 0 < int(port) < 65536:
        return "invalid remote address %r: the port must be a number from 1 to 65535" % (addr,)
    return None


# (module option, the API's key in the swarm spec, the swarm's value when its spec does not hold the key)
SETTINGS = (
    ("node_cert_expiry", "node_cert_expiry", None),
    ("task_history_retention_limit", "task_history_limit", 5),
    ("election_tick", "election_tick", None),
    ("heartbeat_tick", "heartbeat_tick", None),
    ("snapshot_interval", "snapshot_interval", None),
    ("keep_old_snapshots", "keep_old_snapshots", None),
    ("log_entries_for_slow_followers", "log_entries_for_slow_followers", None),
    ("dispatcher_heartbeat_period", "dispatcher_heartbeat_period", None),
)
# the ranges of swarmctl/state/raftsettings.py (the daemon checks them again): option -> (lowest, highest, why)
SETTING_RANGES = dict((
    ("heartbeat_tick", (1, 20, None)),
    ("election_tick", (2, 400, None)),
    ("snapshot_interval", (100, 10000000, None)),
    ("keep_old_snapshots", (0, 0, "swarmctl keeps only the latest Raft snapshot (pysyncobj writes one file)")),
    ("log_entries_for_slow_followers", (0, 0, "pysyncobj drops the whole log up to a new snapshot and sends a "
                                              "follower that is behind it the snapshot")),
    ("dispatcher_heartbeat_period", (0.5, 3600, None)),
))


def settings_problem(params):
    """None, or one line naming the first Raft or dispatcher setting out of range."""
    for option in ("election_tick", "heartbeat_tick", "snapshot_interval", "keep_old_snapshots",
                   "log_entries_for_slow_followers", "dispatcher_heartbeat_period"):
        value = params.get(option)
        if value is None:
            continue
        low, high, why = SETTING_RANGES[option]
        if low == high and value != low:
            return "%s must be %s, got %s: %s" % (option, low, value, why)
        if not low <= value <= high:
            return "%s must be between %s and %s, got %s" % (option, low, high, value)
    election, heartbeat = params.get("election_tick"), params.get("heartbeat_tick")
    if election is not None and heartbeat is not None and election <= heartbeat:
        return "election_tick must be greater than heartbeat_tick, got %s and %s" % (election, heartbeat)
    return None


def membership(info):
    """The part of /v1/info the diff shows."""
    return {"local_node_state": info.get("local_node_state"), "role": info.get("role"),
            "node_id": info.get("node_id"), "cluster_id": info.get("cluster_id")}


def is_unreachable(exc):
    """A join error that means 'try the next manager' rather than 'this will never work'."""
    return exc.status in (None, 503) and "could not connect" in (exc.message or "")


class SwarmModule(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.client = client_from_module(module)
        self.changed = False
        self.actions = []
        self.rotated = []
        self.settings_diff = None  # ({option: before}, {option: after}) of the settings that change

    def fail(self, msg, **kwargs):
        # self.changed is set only once a change was made (never before the request that makes it), so a run
        # that fails before changing anything says changed=false
        self.module.fail_json(msg=msg, actions=self.actions, changed=self.changed, **kwargs)

    def call(self, method, path, body=None):
        try:
            return self.client.request(method, path, body)
        except SwarmctlError as exc:
            self.fail(exc.message, status=exc.status)

    def info(self):
        return self.call("GET", "/v1/info")

    def swarm_facts(self, info):
        if not info.get("is_manager"):
            return {}
        facts = self.call("GET", "/v1/swarm")
        worker = self.call("GET", "/v1/swarm/join-token/worker")
        manager = self.call("GET", "/v1/swarm/join-token/manager")
        facts["JoinTokens"] = {"Worker": worker["token"], "Manager": manager["token"]}
        facts["manager_addrs"] = manager.get("managers") or []
        return facts

    # ---- states ----------------------------------------------------------------------------------
    def present(self, info):
        if self.params["force"]:
            self.module.warn("force is not used with state=present: swarmctl.cluster.swarm never forces a new "
                             "cluster (use 'swarmctl swarm init --force-new-cluster' to recover a swarm)")
        if info["local_node_state"] == "active":
            if not info.get("is_manager"):
                self.fail("This node is already part of a swarm as a worker: state=present needs a node outside "
                          "any swarm (to create one) or a manager (to update it). Use state=join to join, or "
                          "promote the node first.")
            self.rotate()
            self.update_settings(created=False)
            return info
        wanted = self.wanted_settings()
        if wanted:
            self.settings_diff = (dict((o, None) for o, k, _d in SETTINGS if k in wanted),
                                  dict((o, wanted[k]) for o, k, _d in SETTINGS if k in wanted))
        if self.module.check_mode:
            self.changed = True
            self.actions.append("Swarm cluster created")
            return dict(info, local_node_state="active", role="manager", is_manager=True, node_id=None)
        body = dict(wanted)
        for key in ("advertise_addr", "listen_addr", "data_path_addr", "data_path_port"):
            if self.params[key] is not None and self.params[key] != "":
                body[key] = self.params[key]
        self.call("POST", "/v1/swarm/init", body)  # a failure fails with changed=false: nothing was created
        self.changed = True
        self.actions.append("Swarm cluster created")
        return self.info()

    def wanted_settings(self):
        """{api key: value} of the setting options given."""
        return dict((api_key, self.params[option]) for option, api_key, _default in SETTINGS
                    if self.params[option] is not None)

    def update_settings(self, created):
        """Apply the swarm settings (SETTINGS) that differ from the swarm's, in one update with the cluster's
        version (in check mode, only predict it). A swarm created by this run got them with its init."""
        wanted = self.wanted_settings()
        if not wanted or created:
            return
        swarm = self.call("GET", "/v1/swarm")
        spec = swarm.get("spec") or {}
        before, after, body = {}, {}, {}
        for option, api_key, default in SETTINGS:
            if api_key not in wanted:
                continue
            current = spec.get(api_key, default)
            if current is not None and float(current) == float(wanted[api_key]):
                continue
            before[option], after[option] = current, wanted[api_key]
            body[api_key] = wanted[api_key]
        if not body:
            return
        self.settings_diff = (before, after)
        action = "Swarm settings updated: %s" % ", ".join(sorted(after))
        if self.module.check_mode:
            self.changed = True
            self.actions.append(action)
            return
        # with the cluster's version; retried on "update out of sequence" while the settings are as first read
        reads = [swarm]
        try:
            update_with_retry(lambda: reads.pop() if reads else self.client.get("/v1/swarm"),
                              lambda _swarm: (dict(body), [("spec", key) for key in body]),
                              lambda record, b: self.client.post(with_version("/v1/swarm/update", record), b))
        except SwarmctlError as exc:
            self.fail(exc.message, status=exc.status)
        self.changed = True
        self.actions.append(action)

    def rotate(self):
        for role in ("worker", "manager"):
            if not self.params["rotate_%s_token" % role]:
                continue
            if not self.module.check_mode:
                self.call("POST", "/v1/swarm/join-token/rotate", {"role": role})
            self.changed = True
            self.rotated.append(role)
            self.actions.append("%s join token rotated" % role.capitalize())

    def join(self, info):
        if info["local_node_state"] == "active":
            return info
        problem = token_problem(self.params["join_token"])
        if problem:
            self.fail(problem)
        remotes = [a.strip() for a in self.params["remote_addrs"] or [] if a and a.strip()]
        if not remotes:
            self.fail("remote_addrs must name at least one manager (HOST:PORT) with state=join")
        for addr in remotes:
            problem = addr_problem(addr)
            if problem:
                self.fail(problem)
        if self.module.check_mode:
            self.changed = True
            self.actions.append("New node is added to swarm cluster")
            return dict(info, local_node_state="active", node_id=None)
        errors = []
        for addr in remotes:
            body = {"token": self.params["join_token"].strip(), "remote_addr": addr}
            for key in ("advertise_addr", "listen_addr", "data_path_addr", "data_path_port"):
                if self.params[key] is not None and self.params[key] != "":
                    body[key] = self.params[key]
            try:
                self.client.post("/v1/swarm/join", body)
            except SwarmctlError as exc:
                if not is_unreachable(exc):
                    self.fail(exc.message, status=exc.status, remote_addr=addr)
                errors.append(exc.message)
                continue
            self.changed = True
            self.actions.append("New node is added to swarm cluster")
            return self.info()
        self.fail("could not reach any manager of remote_addrs: %s" % "; ".join(errors))

    def absent(self, info):
        if info["local_node_state"] != "active":
            return info
        if info.get("role") == "manager" and not self.params["force"]:
            self.fail("This node is a manager of its swarm: leaving could lose quorum, and leaving as the last "
                      "manager erases the swarm's state. Set force=true to leave anyway.")
        if not self.module.check_mode:
            self.call("POST", "/v1/swarm/leave", {"force": bool(self.params["force"])})
        self.changed = True
        self.actions.append("Node has left the swarm cluster")
        if not self.module.check_mode:
            return self.info()
        return dict(info, local_node_state="inactive", role=None, node_id=None, cluster_id=None, is_manager=False)

    def remove(self, info):
        ref = (self.params["node_id"] or "").strip()
        if not ref:
            self.fail("node_id is required with state=remove")
        if info["local_node_state"] != "active":
            self.fail("This node is not part of a swarm: state=remove must run on a manager of the swarm.")
        try:
            node = self.client.get("/v1/nodes/%s" % ref)
        except SwarmctlError as exc:
            if exc.status == 404:
                return info  # already gone
            self.fail(exc.message, status=exc.status)
        if node["id"] == info.get("node_id"):
            self.fail("node %s is this node: use state=absent to leave the swarm" % ref)
        if node["spec"]["role"] == "manager":
            self.fail("node %s is a manager of the swarm: demote it (swarmctl.cluster.node role=worker) "
                      "before removing it" % ref)
        if node["status"]["state"] != "down" and not self.params["force"]:
            self.fail("Can not remove node %s: its status is %s, not down. Set force=true to remove it anyway."
                      % (ref, node["status"]["state"]))
        if not self.module.check_mode:
            self.call("DELETE", "/v1/nodes/%s%s" % (node["id"], "?force=1" if self.params["force"] else ""))
        self.changed = True
        self.actions.append("Node is removed from swarm cluster.")
        return info

    def run(self):
        expiry = self.params["node_cert_expiry"]
        if expiry is not None and expiry < 60:
            self.fail("node_cert_expiry must be at least 60 seconds, got %d" % expiry)
        limit = self.params["task_history_retention_limit"]
        if limit is not None and not 0 <= limit <= 1000:
            self.fail("task_history_retention_limit must be between 0 and 1000, got %d" % limit)
        problem = settings_problem(self.params)
        if problem:
            self.fail(problem)
        info = self.info()
        before = membership(info)
        state = self.params["state"]
        after_info = getattr(self, state)(info)
        after = membership(after_info)
        diff_before, diff_after = dict(before), dict(after)
        if self.rotated:
            diff_before["join_tokens"] = {r: "current" for r in self.rotated}
            diff_after["join_tokens"] = {r: "rotated" for r in self.rotated}
        if self.settings_diff:
            diff_before.update(self.settings_diff[0])
            diff_after.update(self.settings_diff[1])
        facts = {}
        if not self.module.check_mode or not self.changed:
            facts = self.swarm_facts(after_info)
        elif state == "present" and info["local_node_state"] == "active":
            facts = self.swarm_facts(info)  # rotation predicted: the tokens shown are the current ones
        result = dict(changed=self.changed, actions=self.actions, swarm_facts=facts,
                      node_id=after_info.get("node_id"))
        if self.changed:
            result["diff"] = dict(before=diff_before, after=diff_after)
        self.module.exit_json(**result)


def main():
    argument_spec = swarmctl_argument_spec(
        state=dict(type="str", default="present", choices=["present", "join", "absent", "remove"]),
        advertise_addr=dict(type="str"),
        listen_addr=dict(type="str"),
        remote_addrs=dict(type="list", elements="str"),
        join_token=dict(type="str", no_log=True),
        force=dict(type="bool", default=False),
        node_id=dict(type="str"),
        rotate_worker_token=dict(type="bool", default=False, no_log=False),
        rotate_manager_token=dict(type="bool", default=False, no_log=False),
        node_cert_expiry=dict(type="int"),
        task_history_retention_limit=dict(type="int"),
        election_tick=dict(type="int"),
        heartbeat_tick=dict(type="int"),
        snapshot_interval=dict(type="int"),
        keep_old_snapshots=dict(type="int"),
        log_entries_for_slow_followers=dict(type="int"),
        dispatcher_heartbeat_period=dict(type="float"),
        data_path_addr=dict(type="str"),
        data_path_port=dict(type="int"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[
            ("state", "join", ("remote_addrs", "join_token")),
            ("state", "remove", ("node_id",)),
        ],
    )
    SwarmModule(module).run()


if __name__ == "__main__":
    main()

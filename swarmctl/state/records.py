"""Records of the cluster state and their JSON form, defined once for store, API and CLI.

Records are plain JSON-compatible dicts so they pickle into Raft snapshots cheaply and
travel through the API unchanged. The store treats them as immutable values: every change
replaces a record with a new dict, so readers may hold references without locking.
The field layout is documented in docs/api.md.
"""

from __future__ import annotations

import secrets

KINDS = ("cluster", "node", "service", "task", "secret", "config")

ROLES = ("manager", "worker")
AVAILABILITIES = ("active", "pause", "drain")
NODE_STATES = ("unknown", "ready", "down")

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id(length: int = 25) -> str:
    """A random lowercase base-36 identifier, like Swarm's object ids: 128 random bits (one read of the OS's
    random source, where a choice per character made 25) written in base 36, zero-padded to 25 characters."""
    n = int.from_bytes(secrets.token_bytes(16 if length >= 25 else (length * 5 + 7) // 8 + 1), "big")
    out = []
    for _ in range(length):
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(out)


def new_node(node_id: str, role: str, hostname: str, addr: str, *, engine_labels: dict | None = None,
             resources: dict | None = None, manager_addr: str | None = None, raft_addr: str | None = None,
             availability: str = "active") -> dict:
    """A node record as written when a node is created by init or join."""
    record = {
        "id": node_id,
        "spec": {"role": role, "availability": availability, "labels": {}},
        "description": {
            "hostname": hostname,
            "engine_labels": dict(engine_labels or {}),
            "resources": dict(resources or {}),
            "addrs": {"manager": manager_addr, "raft": raft_addr},
        },
        "status": {"state": "unknown", "addr": addr, "message": ""},
        "manager_status": None,
    }
    if role == "manager":
        record["manager_status"] = {"addr": manager_addr, "raft_addr": raft_addr}
    return record


NODE_CERT_EXPIRY = 90 * 24 * 3600  # seconds; Swarm's default (`swarm update --cert-expiry`)
TASK_HISTORY_LIMIT = 5  # ended tasks kept per slot; Swarm's default (`swarm update --task-history-limit`)


def new_cluster(cluster_id: str, *, ca_cert: str, ca_key: str, ca_digest: str, worker_secret: str,
                manager_secret: str, raft_secret: str | None, heartbeat_period: float,
                unlock_key: str | None = None, autolock: bool = False) -> dict:
    """The single cluster record: CA material and token secrets live here so any leader can sign.

    The key fields (ca_key, the join secrets, raft_secret, unlock_key) are given sealed
    (swarmctl/manager/keys.py builds this record); nothing but that module reads them."""
    record = {
        "id": cluster_id,
        "spec": {"name": "default", "default_strategy": "spread", "heartbeat_period": heartbeat_period,
                 "node_cert_expiry": NODE_CERT_EXPIRY, "encryption_config": {"auto_lock_managers": autolock},
                 "task_history_limit": TASK_HISTORY_LIMIT},
        "root_ca": {"cert": ca_cert, "key": ca_key, "digest": ca_digest},
        "join_secrets": {"worker": worker_secret, "manager": manager_secret},
    }
    if raft_secret is not None:
        record["raft_secret"] = raft_secret
    if unlock_key is not None:
        record["unlock_key"] = unlock_key
    return record


def public_cluster(cluster: dict) -> dict:
    """The cluster record without its secrets, as `swarm inspect` shows it."""
    return {
        "id": cluster["id"],
        "version": cluster.get("version"),
        "created_at": cluster.get("created_at"),
        "updated_at": cluster.get("updated_at"),
        "spec": cluster["spec"],
        "root_ca": {"cert": cluster["root_ca"]["cert"], "digest": cluster["root_ca"]["digest"]},
    }


# ---- services and tasks ---------------------------------------------------------------------
MODES = ("replicated", "global")
STRATEGIES = ("spread", "binpack", "random")
RESTART_CONDITIONS = ("none", "on-failure", "any")

# Task states only move forward; everything from "complete" on is final.
TASK_STATES = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running",
               "complete", "shutdown", "failed", "rejected", "orphaned")
_STATE_INDEX = {state: i for i, state in enumerate(TASK_STATES)}
TERMINAL_FROM = _STATE_INDEX["complete"]


def state_index(state: str) -> int:
    return _STATE_INDEX[state]


def is_terminal(state: str) -> bool:
    return _STATE_INDEX[state] >= TERMINAL_FROM


def can_move(current: str, new: str) -> bool:
    """Forward only, and nothing leaves a final state."""
    return not is_terminal(current) and _STATE_INDEX[new] > _STATE_INDEX[current]


def default_task_spec() -> dict:
    return {
        "image": None, "command": None, "args": None, "env": {}, "network_mode": "host",
        "resources": {"reservations": {"cpus": 0.0, "memory": 0}, "limits": {"cpus": 0.0, "memory": 0}},
        "restart_policy": {"condition": "any", "delay": 5.0, "max_attempts": 0, "window": 0.0},
        "placement": {"constraints": [], "preferences": [], "max_replicas_per_node": 0, "strategy": None},
        "stop_grace_period": 10.0, "healthcheck": None, "force_update": 0,
    }


UPDATE_ORDERS = ("stop-first", "start-first")
UPDATE_FAILURE_ACTIONS = ("pause", "continue", "rollback")
ROLLBACK_FAILURE_ACTIONS = ("pause", "continue")
# how many earlier specs a service keeps for `service rollback` (Docker keeps one)
PREVIOUS_SPECS = 5


def default_update_config(rollback: bool = False) -> dict:
    """Docker's defaults for --update-* (and --rollback-*), plus swarmctl's two deadlines: a new task must be
    running (healthy) within `healthy_deadline` seconds, and the whole update must end within
    `progress_deadline`; when either passes, the failure action runs."""
    return {"parallelism": 1, "delay": 0.0, "order": "stop-first", "failure_action": "pause", "monitor": 5.0,
            "max_failure_ratio": 0.0, "healthy_deadline": 300.0, "progress_deadline": 600.0}


# A healthcheck's settings when a spec leaves them out: Docker's defaults (`--health-interval` etc.), in seconds.
HEALTHCHECK_DEFAULTS = {"interval": 30.0, "timeout": 30.0, "retries": 3, "start_period": 0.0, "start_interval": 5.0}


def new_task(service: dict, slot: int | None, node_id: str | None, ts: float) -> dict:
    """A task for one slot (replicated) or one node (global), created pending for the scheduler."""
    spec = service["spec"]
    return {
        "id": new_id(),
        "service_id": service["id"],
        "service_name": spec["name"],
        "slot": slot,
        "node_id": node_id,
        "spec": spec["task"],
        "spec_version": service["spec_version"],
        "desired_state": "running",
        "status": {"state": "pending", "message": "pending task scheduling", "err": "", "timestamp": ts,
                   "container_id": None, "exit_code": None},
    }


def task_name(task: dict) -> str:
    suffix = task["slot"] if task["slot"] is not None else task["node_id"]
    return f"{task['service_name']}.{suffix}"

"""Records of the cluster state and their JSON form, defined once for store, API and CLI.

Records are plain JSON-compatible dicts so they pickle into Raft snapshots cheaply and
travel through the API unchanged. The store treats them as immutable values: every change
replaces a record with a new dict, so readers may hold references without locking.
The field layout is documented in docs/api.md.
"""

from __future__ import annotations

import secrets

KINDS = ("cluster", "node", "service", "task")

ROLES = ("manager", "worker")
AVAILABILITIES = ("active", "pause", "drain")
NODE_STATES = ("unknown", "ready", "down")

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id(length: int = 25) -> str:
    """A random lowercase base-36 identifier, like Swarm's object ids."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


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


def new_cluster(cluster_id: str, *, ca_cert: str, ca_key: str, ca_digest: str, worker_secret: str,
                manager_secret: str, raft_secret: str, heartbeat_period: float) -> dict:
    """The single cluster record: CA material and token secrets live here so any leader can sign."""
    return {
        "id": cluster_id,
        "spec": {"name": "default", "default_strategy": "spread", "heartbeat_period": heartbeat_period},
        "root_ca": {"cert": ca_cert, "key": ca_key, "digest": ca_digest},
        "join_secrets": {"worker": worker_secret, "manager": manager_secret},
        "raft_secret": raft_secret,
    }


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

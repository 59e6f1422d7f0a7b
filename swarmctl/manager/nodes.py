"""Node views and node updates: resolving names, manager status, availability and labels."""

from __future__ import annotations

from swarmctl.errors import BadRequest, NotFound
from swarmctl.manager.writes import commit
from swarmctl.state.raft import RaftStore
from swarmctl.state.records import AVAILABILITIES


def resolve_node(store: RaftStore, ref: str) -> dict:
    """Find a node by id, unique id prefix, or unique hostname, as Docker does."""
    nodes = store.list("node")
    for node in nodes:
        if node["id"] == ref:
            return node
    by_name = [n for n in nodes if n["description"]["hostname"] == ref]
    if len(by_name) == 1:
        return by_name[0]
    by_prefix = [n for n in nodes if n["id"].startswith(ref)] if ref else []
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_name) > 1 or len(by_prefix) > 1:
        raise BadRequest(f"node {ref} is ambiguous ({len(by_name) or len(by_prefix)} matches)")
    raise NotFound(f"No such node: {ref}")


def node_view(store: RaftStore, node: dict) -> dict:
    """A node record as the API shows it: manager status filled in from this replica's Raft view."""
    view = dict(node)
    status = node.get("manager_status")
    if node["spec"]["role"] == "manager" and status:
        raft_addr = status.get("raft_addr")
        is_member = raft_addr in store.members()
        view["manager_status"] = {
            "addr": status.get("addr"),
            "raft_addr": raft_addr,
            "leader": bool(raft_addr) and store.leader() == raft_addr and is_member,
            "reachability": "reachable" if is_member and store.connected(raft_addr) else "unreachable",
        }
    else:
        view["manager_status"] = None
    return view


def list_nodes(store: RaftStore) -> list[dict]:
    nodes = sorted(store.list("node"), key=lambda n: (n["description"]["hostname"], n["id"]))
    return [node_view(store, n) for n in nodes]


async def update_node(store: RaftStore, ref: str, availability: str | None, labels_add: dict[str, str],
                      labels_rm: list[str], labels_replace: dict[str, str] | None = None,
                      request_id: str | None = None) -> dict:
    """Change a node's availability and labels; returns the updated view."""
    node = resolve_node(store, ref)
    sets: list = []
    unsets: list = []
    if availability is not None:
        if availability not in AVAILABILITIES:
            raise BadRequest(f"invalid availability {availability!r}: must be one of {', '.join(AVAILABILITIES)}")
        sets.append((["spec", "availability"], availability))
    if labels_replace is not None:
        sets.append((["spec", "labels"], dict(labels_replace)))
    for key, value in labels_add.items():
        sets.append((["spec", "labels", key], value))
    for key in labels_rm:
        if key not in node["spec"]["labels"] and key not in labels_add:
            raise NotFound(f"label {key} does not exist on node {node['id']}")
        unsets.append(["spec", "labels", key])
    if sets or unsets:
        await commit(store, [{"op": "patch", "kind": "node", "id": node["id"], "set": sets, "unset": unsets}],
                     request_id=request_id)
    return node_view(store, store.get("node", node["id"]))

"""Node views and node updates: resolving names, manager status, availability and labels."""

from __future__ import annotations

from swarmctl.errors import BadRequest, NotFound, OutOfSequence
from swarmctl.manager.idempotent import run_once
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


# A request without a version is planned again this often when a concurrent write (a heartbeat's status
# change, another update) changed the node between planning and commit.
UNVERSIONED_RETRIES = 20


async def update_node(store: RaftStore, ref: str, availability: str | None, labels_add: dict[str, str],
                      labels_rm: list[str], labels_replace: dict[str, str] | None = None,
                      request_id: str | None = None, version: int | None = None) -> dict:
    """Change a node's availability and labels; returns the updated view.

    With `version`, the node must still be at that version (else 409 "update out of sequence"); without it the
    change applies to the node as it is. The write commits only on the record it was planned from."""
    if availability is not None and availability not in AVAILABILITIES:
        raise BadRequest(f"invalid availability {availability!r}: must be one of {', '.join(AVAILABILITIES)}")

    def plan():
        node = resolve_node(store, ref)
        if version is not None and node.get("version") != version:
            raise OutOfSequence()
        sets: list = []
        unsets: list = []
        if availability is not None:
            sets.append((["spec", "availability"], availability))
        if labels_replace is not None:
            sets.append((["spec", "labels"], dict(labels_replace)))
        for key, value in labels_add.items():
            sets.append((["spec", "labels", key], value))
        for key in labels_rm:
            if key not in node["spec"]["labels"] and key not in labels_add:
                raise NotFound(f"label {key} does not exist on node {node['id']}")
            unsets.append(["spec", "labels", key])
        reply = {"node_id": node["id"]}
        if not (sets or unsets):
            return None, reply
        return [{"op": "patch", "kind": "node", "id": node["id"], "if_version": node["version"], "set": sets,
                 "unset": unsets}], reply

    def answer(reply):
        node = store.get("node", reply["node_id"])
        if node is None:
            raise NotFound(f"No such node: {ref}")
        return node_view(store, node)

    return await run_once(store, "node.update", request_id, plan, answer,
                          retries=0 if version is not None else UNVERSIONED_RETRIES)

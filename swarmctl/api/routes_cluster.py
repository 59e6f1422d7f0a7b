"""Cluster-state routes (managers only): swarm inspect, join tokens, nodes.

Reads are served from this manager's replica; writes are marked leader=True and run on the leader.
"""

from swarmctl.api import listing
from swarmctl.api.schemas import Empty, ForceQuery, NodeUpdateRequest, RotateRequest, VersionQuery
from swarmctl.api.server import route
from swarmctl.errors import BadRequest
from swarmctl.manager import nodes
from swarmctl.manager.writes import barrier
from swarmctl.state.records import public_cluster


@route("GET", "/v1/swarm", "cluster")
async def inspect_swarm(ctx):
    """The swarm (no secrets)."""
    cluster = ctx.manager.membership.cluster()
    view = public_cluster(cluster)
    view["managers"] = ctx.store.members()
    view["leader"] = ctx.store.leader()
    return view


@route("GET", "/v1/swarm/join-token/{role}", "cluster")
async def join_token(ctx):
    """A join token and the managers' addresses."""
    role = ctx.request.match_info["role"]
    if role not in ("worker", "manager"):
        raise BadRequest(f"unknown role {role!r}: must be worker or manager")
    return {"role": role, "token": ctx.manager.membership.token(role),
            "managers": ctx.manager.membership.manager_addrs()}


@route("POST", "/v1/swarm/join-token/rotate", "cluster", leader=True, body=RotateRequest)
async def rotate_token(ctx):
    """Replace a join token."""
    token = await ctx.manager.membership.rotate_token(ctx.body.role, ctx.request_id)
    return {"role": ctx.body.role, "token": token, "managers": ctx.manager.membership.manager_addrs()}


@route("GET", "/v1/nodes", "cluster")
async def list_nodes(ctx):
    """List nodes, sorted by hostname; ?filter=KEY=VALUE (id, label, node.label, membership, name, role) as
    Docker's `node ls -f`."""
    filters = listing.parse_filters(ctx.request, NODE_FILTERS)
    listing.check_values(filters, "role", ("manager", "worker"))
    listing.check_values(filters, "membership", ("accepted", "pending"))

    def keep(node: dict) -> bool:
        spec = node["spec"]
        return (("id" not in filters or listing.prefix_any(node["id"], filters["id"]))
                and ("name" not in filters or listing.prefix_any(node["description"]["hostname"], filters["name"]))
                and ("role" not in filters or spec["role"] in filters["role"])
                and ("membership" not in filters or "accepted" in filters["membership"])
                and ("label" not in filters or listing.match_labels(node["description"].get("labels"),
                                                                    filters["label"]))
                and ("node.label" not in filters or listing.match_labels(spec.get("labels"), filters["node.label"])))
    items = sorted((n for n in ctx.store.list("node") if keep(n)), key=lambda n: (n["description"]["hostname"], n["id"]))
    return await listing.respond(ctx.request, items, lambda n: nodes.node_view(ctx.store, n))


NODE_FILTERS = ("id", "label", "node.label", "membership", "name", "role")


@route("GET", "/v1/nodes/{ref}", "cluster")
async def inspect_node(ctx):
    """One node."""
    return nodes.node_view(ctx.store, nodes.resolve_node(ctx.store, ctx.request.match_info["ref"]))


@route("POST", "/v1/nodes/{ref}/update", "cluster", leader=True, body=NodeUpdateRequest, query=VersionQuery)
async def update_node(ctx):
    """Change a node's availability and labels; ?version=N refuses a stale read with 409."""
    b = ctx.body
    for key in list(b.labels_add) + list(b.labels or {}):
        if not key or any(c.isspace() for c in key):
            raise BadRequest(f"invalid label key {key!r}")
    return await nodes.update_node(ctx.store, ctx.request.match_info["ref"], b.availability, b.labels_add,
                                   b.labels_rm, b.labels, request_id=ctx.request_id,
                                   version=ctx.query.version)


@route("POST", "/v1/nodes/{ref}/promote", "cluster", leader=True, body=Empty, timeout=40.0)
async def promote(ctx):
    """Make a node a manager."""
    return await ctx.manager.membership.promote(ctx.request.match_info["ref"])


@route("POST", "/v1/nodes/{ref}/demote", "cluster", leader=True, body=Empty, timeout=20.0)
async def demote(ctx):
    """Make a manager a worker (quorum-guarded)."""
    return await ctx.manager.membership.demote(ctx.request.match_info["ref"])


@route("DELETE", "/v1/nodes/{ref}", "cluster", leader=True, query=ForceQuery)
async def remove_node(ctx):
    """Remove a node (?force=1: one that is not down)."""
    await ctx.manager.membership.remove(ctx.request.match_info["ref"], ctx.query_flag("force"), ctx.request_id)
    return {}


@route("GET", "/v1/raft/read-index", "cluster", leader=True)
async def read_index(ctx):
    """The leader's read index for a follower's linearizable read: the index applied with a barrier."""
    return {"index": await barrier(ctx.store)}

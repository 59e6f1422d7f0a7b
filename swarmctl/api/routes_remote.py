"""Routes of the management port used by other nodes: CA, join, Raft membership, sessions."""

from swarmctl.api.schemas import (AssignmentsRequest, CertificateRequest, Empty, EndpointsRequest, HeartbeatRequest,
                                  ImageQuery, RaftJoinRequest, RemoteJoinRequest, AgentLogsQuery, TaskStatusRequest)
from swarmctl.api.server import route
from swarmctl.errors import NotFound, Unauthorized, Unavailable
from swarmctl.runtime.base import RuntimeFailure


@route("GET", "/v1/ca", "public")
async def root_ca(ctx):
    """The root CA certificate, fetched unverified by joiners and pinned by the token digest."""
    with open(ctx.node.data.ca_file) as f:
        return {"ca": f.read()}


@route("POST", "/v1/join", "public", leader=True, body=RemoteJoinRequest)
async def join(ctx):
    """Join the swarm with a token and a CSR (public)."""
    info = ctx.body.model_dump()
    return await ctx.manager.membership.join(info.pop("token"), info.pop("csr"), info, ctx.request_id)


@route("GET", "/v1/raft/members", "node", leader=True)
async def raft_members(ctx):
    """The committed Raft member list, for a manager about to start its replica and join."""
    return await ctx.manager.membership.raft_members(ctx.caller)


@route("POST", "/v1/raft/join", "node", leader=True, body=RaftJoinRequest, timeout=15.0)
async def raft_join(ctx):
    """Add the calling manager (whose replica runs with `members`) to Raft; answers once committed."""
    return await ctx.manager.membership.raft_join(ctx.caller, ctx.body.members)


@route("POST", "/v1/raft/leave", "node", leader=True, body=Empty, timeout=15.0)
async def raft_leave(ctx):
    """Remove the calling manager from Raft."""
    return await ctx.manager.membership.raft_leave(ctx.caller)


@route("POST", "/v1/session/heartbeat", "node", leader=True, body=HeartbeatRequest)
async def heartbeat(ctx):
    """A node's session heartbeat."""
    manager = ctx.manager
    swarm_period = manager.dispatcher.swarm_heartbeat_period()  # the swarm's dispatcher_heartbeat_period, or None
    node = await manager.dispatcher.heartbeat(ctx.caller, ctx.body.model_dump(), swarm_period)
    return {"node": {"id": node["id"], "spec": node["spec"]}, "managers": manager.dispatcher.manager_addrs(),
            "leader": ctx.node.addrs.manager, "period": swarm_period or node["description"].get("heartbeat_period")}


@route("POST", "/v1/session/certificate", "node", leader=True, body=CertificateRequest)
async def certificate(ctx):
    """A fresh certificate for the caller's current role."""
    return await ctx.manager.membership.renew_certificate(ctx.caller, ctx.body.csr)


@route("POST", "/v1/session/assignments", "node", leader=True, body=AssignmentsRequest)
async def assignments(ctx):
    """The caller's tasks; long-polls for a change."""
    return await ctx.manager.dispatcher.assignments(ctx.caller, ctx.body.since, ctx.body.wait,
                                                   deltas=bool(ctx.body.deltas))


@route("POST", "/v1/session/endpoints", "node", leader=True, body=EndpointsRequest)
async def endpoints(ctx):
    """Every service's endpoints (running tasks, their addresses and ports), or the changes since `since`;
    long-polls for a change. The routing mesh and DNS of every node follow it."""
    if ctx.store.get("node", ctx.caller) is None:
        raise Unauthorized(f"node {ctx.caller} is not part of this swarm")
    return await ctx.manager.endpoints.watch(ctx.caller, ctx.body.since, ctx.body.wait)


@route("POST", "/v1/session/status", "node", leader=True, body=TaskStatusRequest)
async def task_status(ctx):
    """Status reports of the caller's tasks."""
    updates = [u.model_dump() for u in ctx.body.updates]
    return {"applied": await ctx.manager.dispatcher.update_status(ctx.caller, updates)}


@route("GET", "/v1/agent/logs/{task_id}", "agent", query=AgentLogsQuery)
async def task_logs(ctx):
    """This node's container output for one of its tasks (asked by a manager for `service logs`):
    `lines`, or with ?timestamps=1 `entries` [[engine timestamp in ns, line], ...] written since ?since=."""
    worker = ctx.node.worker
    if worker is None:
        raise NotFound("this node runs no tasks")
    task_id = ctx.request.match_info["task_id"]
    try:
        if ctx.query.timestamps:
            entries = await worker.log_entries(task_id, ctx.query.tail, ctx.query.since)
            return {"entries": [[ns, line] for ns, line in entries]}
        return {"lines": await worker.logs(task_id, ctx.query.tail)}
    except RuntimeFailure as exc:
        raise Unavailable(f"container engine unavailable: {exc}") from None


@route("GET", "/v1/agent/images", "agent", query=ImageQuery)
async def has_image(ctx):
    """Whether this node's engine has an image (managers check before accepting a service)."""
    worker = ctx.node.worker
    if worker is None:
        raise NotFound("this node runs no tasks")
    try:
        return {"present": await worker.has_image(ctx.query.name)}
    except RuntimeFailure as exc:  # no engine here: the manager counts this node as unknown, not as a "no"
        raise Unavailable(f"container engine unavailable: {exc}") from None

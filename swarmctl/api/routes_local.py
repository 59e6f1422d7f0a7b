"""Routes of the local socket that act on this node itself: info, init, join, leave."""

from swarmctl.api.schemas import InitRequest, JoinRequest, LeaveRequest
from swarmctl.api.server import route


@route("GET", "/v1/info", "local")
async def info(ctx):
    """This node: id, role, addresses, Raft view."""
    return ctx.node.info()


@route("POST", "/v1/swarm/init", "local", body=InitRequest)
async def init(ctx):
    """Create a swarm with this node as its first manager."""
    b = ctx.body
    return await ctx.node.init(b.advertise_addr, b.listen_addr, b.force_new_cluster, autolock=b.autolock)


@route("POST", "/v1/swarm/join", "local", body=JoinRequest)
async def join(ctx):
    """Join a swarm through a manager."""
    b = ctx.body
    return await ctx.node.join(b.token, b.remote_addr, b.advertise_addr, b.listen_addr)


@route("POST", "/v1/swarm/leave", "local", body=LeaveRequest)
async def leave(ctx):
    """Leave the swarm."""
    return await ctx.node.leave(ctx.body.force)

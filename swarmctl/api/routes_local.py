"""Routes of the local socket that act on this node itself: info, init, join, leave."""

from swarmctl.api.schemas import InitRequest, JoinRequest, LeaveRequest
from swarmctl.api.server import route
from swarmctl.errors import BadRequest
from swarmctl.state import raftsettings

# Docker's data path (VXLAN) settings: swarmctl's tasks run on the host network (or none) and other nodes reach them
# at the node's advertise address, so there is no separate data path to configure.
DATA_PATH_ADDR_MESSAGE = ("data_path_addr is not supported: swarmctl has no overlay data path; other nodes reach "
                          "a node's tasks at its advertise address")
DATA_PATH_PORT_MESSAGE = ("data_path_port is not supported: swarmctl has no VXLAN overlay; task traffic goes over "
                          "the host network")


def check_data_path(body) -> None:
    if body.data_path_addr:
        raise BadRequest(DATA_PATH_ADDR_MESSAGE)
    if body.data_path_port is not None:
        raise BadRequest(DATA_PATH_PORT_MESSAGE)


def init_settings(body) -> dict:
    """The swarm settings of an init request, checked (one line naming the setting when out of range)."""
    settings = {key: getattr(body, key) for key in raftsettings.KEYS}
    try:
        out = raftsettings.check(settings)
    except raftsettings.SettingError as exc:
        raise BadRequest(str(exc)) from None
    for key in ("node_cert_expiry", "task_history_limit"):
        if getattr(body, key) is not None:
            out[key] = getattr(body, key)
    return out


@route("GET", "/v1/info", "local")
async def info(ctx):
    """This node: id, role, addresses, Raft view."""
    return ctx.node.info()


@route("POST", "/v1/swarm/init", "local", body=InitRequest)
async def init(ctx):
    """Create a swarm with this node as its first manager."""
    b = ctx.body
    check_data_path(b)
    settings = init_settings(b)
    return await ctx.node.init(b.advertise_addr, b.listen_addr, b.force_new_cluster, autolock=b.autolock,
                               settings=settings)


@route("POST", "/v1/swarm/join", "local", body=JoinRequest)
async def join(ctx):
    """Join a swarm through a manager."""
    b = ctx.body
    check_data_path(b)
    return await ctx.node.join(b.token, b.remote_addr, b.advertise_addr, b.listen_addr)


@route("POST", "/v1/swarm/leave", "local", body=LeaveRequest)
async def leave(ctx):
    """Leave the swarm."""
    return await ctx.node.leave(ctx.body.force)

"""Fault-injection hooks for the fault tests, on the local socket only, and only when the daemon was
started with SWARMCTL_FAULT_HOOKS=1 in its environment (otherwise every route here answers 404).

They change the system behind the store's back, as a crash or an operator's mistake would, so that the
tests can check that swarmctl repairs it (for example the Raft membership reconciler)."""

import os

from swarmctl.api.schemas import Body
from swarmctl.api.server import route
from swarmctl.errors import BadRequest, NotFound, PreconditionFailed


def _enabled() -> None:
    if os.environ.get("SWARMCTL_FAULT_HOOKS") != "1":
        raise NotFound("Not Found")


class RaftMemberRequest(Body):
    addr: str


@route("POST", "/v1/debug/raft/remove-member", "local", body=RaftMemberRequest)
async def remove_member_behind_the_store(ctx):
    """Remove a member from the Raft configuration directly, leaving its node record a manager."""
    _enabled()
    store = ctx.store
    if not store.is_leader():
        raise PreconditionFailed("run this on the leader")
    if ctx.body.addr == store.self_addr or ctx.body.addr not in store.members():
        raise BadRequest(f"{ctx.body.addr} is not another member of this Raft cluster")
    await store.remove_member(ctx.body.addr)
    return {"members": store.members()}


@route("GET", "/v1/debug/raft/status", "local")
async def raft_status(ctx):
    """pysyncobj's own status of this replica (term, commit and applied indexes, per-peer match indexes)."""
    _enabled()
    store = ctx.store
    status = store._sync.getStatus()
    return {str(k): (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in status.items()}

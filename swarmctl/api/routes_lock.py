"""Autolock and the swarm's data encryption key: unlock, the unlock key, turning autolock on and off, and
handing the DEK to another manager (docs/design.md, "Security").

A manager restarted while autolock is on is locked (swarmctl/node/node.py): it runs nothing but its local
socket, where every cluster route answers the "Swarm is encrypted" error until `swarm unlock`.
"""

from __future__ import annotations

from pydantic import Field

from swarmctl.api.schemas import Body, Empty
from swarmctl.api.server import FORWARDED, route
from swarmctl.errors import Forbidden, PreconditionFailed, Unavailable
from swarmctl.manager.keys import NO_DEK_MESSAGE, autolock
from swarmctl.manager.writes import commit
from swarmctl.security import seal
from swarmctl.security.tls import peer_identity


class UnlockRequest(Body):
    key: str = Field(max_length=256)


class AutolockRequest(Body):
    enabled: bool


def _unlock_key_view(ctx) -> dict:
    membership = ctx.manager.membership
    cluster = membership.cluster()
    kek = membership.keys.unlock_key(cluster)
    return {"autolock": autolock(cluster), "unlock_key": seal.format_unlock_key(kek) if kek else ""}


@route("POST", "/v1/swarm/unlock", "local", body=UnlockRequest)
async def unlock(ctx):
    """Unlock this manager with the unlock key (it then starts its parts and rejoins Raft)."""
    return await ctx.node.unlock(ctx.body.key)


@route("GET", "/v1/swarm/unlock-key", "cluster")
async def unlock_key(ctx):
    """The unlock key (empty while autolock is off)."""
    return _unlock_key_view(ctx)


@route("POST", "/v1/swarm/unlock-key/rotate", "cluster", leader=True, body=Empty)
async def rotate_unlock_key(ctx):
    """Replace the unlock key; every manager re-wraps its key file with the new one."""
    membership = ctx.manager.membership
    cluster = membership.cluster()
    if not autolock(cluster):
        raise PreconditionFailed("cannot rotate because autolock is not turned on")
    await commit(ctx.store, membership.keys.autolock_ops(cluster, seal.new_unlock_key()),
                 request_id=ctx.request_id)
    return _unlock_key_view(ctx)  # what was committed (a retried request applies once)


@route("POST", "/v1/swarm/autolock", "cluster", leader=True, body=AutolockRequest)
async def set_autolock(ctx):
    """Turn autolock on (a new unlock key) or off; `changed` says whether it was off (on) before."""
    membership = ctx.manager.membership
    cluster = membership.cluster()
    changed = autolock(cluster) != ctx.body.enabled
    if changed:
        kek = seal.new_unlock_key() if ctx.body.enabled else None
        await commit(ctx.store, membership.keys.autolock_ops(cluster, kek), request_id=ctx.request_id)
    return dict(_unlock_key_view(ctx), changed=changed)


@route("POST", "/v1/raft/dek", "node", body=Empty)
async def data_key(ctx):
    """The swarm's data encryption key, for a manager that lacks it (one that joined before sealing
    existed). Only over mutual TLS, to a manager certificate whose node record is a manager."""
    identity = peer_identity(ctx.request.transport.get_extra_info("ssl_object"))
    record = ctx.manager.store.get("node", identity.node_id) if identity is not None else None
    if (ctx.request.headers.get(FORWARDED) or identity is None or identity.role != "manager"
            or record is None or record["spec"]["role"] != "manager"):
        raise Forbidden("only a manager of this swarm may fetch the data encryption key")
    keys = ctx.manager.membership.keys.export_dek()
    if keys is None:
        raise Unavailable(NO_DEK_MESSAGE)
    return {"dek": keys}

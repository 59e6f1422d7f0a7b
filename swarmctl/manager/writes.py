"""The one way manager components commit changes: through the store, with errors the API understands."""

from __future__ import annotations

from swarmctl.errors import Conflict, Misdirected, NoLeaderError, OutOfSequence
from swarmctl.state.raft import NoLeader, NotLeader, RaftStore


async def commit(store: RaftStore, ops: list[dict], request_id: str | None = None, timeout: float = 3.0) -> int:
    """Commit ops on the leader; returns the new store index. Raises Conflict on a failed precondition."""
    try:
        result = await store.write(ops, request_id=request_id, timeout=timeout)
    except NotLeader:
        raise Misdirected("this manager is no longer the leader") from None
    except NoLeader:
        raise NoLeaderError() from None
    if not result["ok"]:
        if result.get("code") == "out_of_sequence":
            raise OutOfSequence()
        raise Conflict(result["error"])
    return result["index"]


async def barrier(store: RaftStore, timeout: float = 3.0) -> int:
    """A barrier through the log on the leader (RaftStore.barrier), with the API's errors."""
    try:
        return await store.barrier(timeout=timeout)
    except NotLeader:
        raise Misdirected("this manager is no longer the leader") from None
    except NoLeader:
        raise NoLeaderError() from None

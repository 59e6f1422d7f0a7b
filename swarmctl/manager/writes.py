"""The one way manager components commit changes: through the store, with errors the API understands."""

from __future__ import annotations

from swarmctl.errors import Conflict, InsufficientStorage, Misdirected, NoLeaderError, OutOfSequence
from swarmctl.state.raft import NoLeader, NotLeader, RaftStore, StorageUnavailable


async def commit(store: RaftStore, ops: list[dict], request_id: str | None = None, timeout: float = 3.0) -> int:
    """Commit ops on the leader; returns the new store index. Raises Conflict on a failed precondition."""
    try:
        result = await store.write(ops, request_id=request_id, timeout=timeout)
    except NotLeader:
        raise Misdirected("this manager is no longer the leader") from None
    except StorageUnavailable as exc:
        raise InsufficientStorage(str(exc)) from None
    except NoLeader:
        if getattr(store, "storage_error", None):  # timed out because this journal could not be written meanwhile
            raise InsufficientStorage(store.storage_error) from None
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
    except StorageUnavailable as exc:
        raise InsufficientStorage(str(exc)) from None
    except NoLeader:
        if getattr(store, "storage_error", None):
            raise InsufficientStorage(store.storage_error) from None
        raise NoLeaderError() from None

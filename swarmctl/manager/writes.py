"""The one way manager components commit changes: through the store, with errors the API understands."""

from __future__ import annotations

import asyncio

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


COMMIT_WINDOW = 5  # 200-op chunks queued at once: the store's entry in flight plus the next (2 x 500 ops)


async def commit_chunks(store: RaftStore, ops: list[dict], size: int = 200, window: int = COMMIT_WINDOW) -> None:
    """Commit a pass's decisions in writes of `size` ops, `window` of them queued at once, so the store fills
    each Raft entry up to its cap (RaftStore: MAX_ENTRY_OPS) instead of one round trip per 200 ops. Every write
    is awaited; the first failure is raised once all have ended (the caller plans again)."""
    gate = asyncio.Semaphore(window)
    failure: list[BaseException] = []

    async def one(batch):
        async with gate:
            if failure:  # leadership lost or a conflict: what is left is planned again
                return
            try:
                await commit(store, batch)
            except Exception as exc:
                failure.append(exc)
    await asyncio.gather(*(one(ops[i:i + size]) for i in range(0, len(ops), size)))
    if failure:
        raise failure[0]

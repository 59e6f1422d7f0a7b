"""Writes a client may retry after an unknown outcome (a timeout, a leader change): applied once, and
answered as the first attempt would have been.

A retry carries the same request id (X-Request-Id; the CLI and forwarding managers keep it across their
retries). `run_once` keys the write by scope and request id, and the write stores a small reply (`reply`
op) with its result in the state machine's request memory, which is replicated, so every manager knows
it. Then:

- result in memory: the request was applied; answer from its reply, without planning again;
- not in memory: plan against the current state and commit under the key. If an earlier attempt is
  committed but not yet applied here, the state machine applies the earlier one and returns its stored
  result for this one: still applied once, and answered from the first attempt's reply;
- planning fails with an error that the first attempt itself could have caused (the service it removed
  is not found, the version it bumped is stale, the name it created is taken): absence from memory is
  trusted only after a barrier (an empty write through the log). Everything committed before it,
  by any earlier leader, is then applied here, so absence means the request never committed, and the
  error stands. A newly elected leader may not yet have applied entries of earlier terms; this is why.

Record ids that a write creates are derived from its request id (`derived_id`), so a retry names the same
record. A request without a stated version may meet a concurrent change between planning and commit
(`if_version`); `retries` re-plans it on the fresh state under a sub-key (key#1, key#2...), which a retry
of the whole request walks through in the same order.

Used by service create, update, scale and rm, node update and swarm update; membership changes can use it
the same way.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any, Awaitable, Callable

from swarmctl.errors import APIError, Conflict, Misdirected, NoLeaderError, NotFound, OutOfSequence, \
    PreconditionFailed
from swarmctl.state.raft import NoLeader, NotLeader, RaftStore

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"

# Errors a first attempt that was applied could cause for its retry; only these are checked against memory.
_RETRY_CAUSED = (NotFound, Conflict, PreconditionFailed)

Plan = tuple[list[dict] | None, Any]   # (ops, or None for "nothing to change"; reply)


def derived_id(request_id: str, scope: str, length: int = 25) -> str:
    """A record id (lowercase base 36, like records.new_id) fixed by the request id: a retry names the same record."""
    number = int.from_bytes(hashlib.sha256(f"{scope}\0{request_id}".encode()).digest(), "big")
    out = []
    for _ in range(length):
        number, digit = divmod(number, 36)
        out.append(_ALPHABET[digit])
    return "".join(out)


async def _maybe_await(value):
    return await value if inspect.isawaitable(value) else value


async def _write(store: RaftStore, ops: list[dict], key: str | None, timeout: float) -> dict:
    try:
        return await store.write(ops, request_id=key, timeout=timeout)
    except NotLeader:
        raise Misdirected("this manager is no longer the leader") from None
    except NoLeader:
        raise NoLeaderError() from None


async def trusted_result(store: RaftStore, key: str) -> dict | None:
    """The stored result of `key`, with absence confirmed: a barrier first makes every write committed before
    it (by this leader or an earlier one) applied here."""
    result = store.applied(key)
    if result is not None:
        return result
    try:
        await store.barrier()
    except NotLeader:
        raise Misdirected("this manager is no longer the leader") from None
    except NoLeader:
        raise NoLeaderError() from None
    return store.applied(key)


def default_error(result: dict) -> APIError:
    if result.get("code") == "out_of_sequence":
        return OutOfSequence()
    return Conflict(result.get("error") or "the write was refused")


async def run_once(store: RaftStore, scope: str, request_id: str | None,
                   plan: Callable[[], Plan | Awaitable[Plan]], answer: Callable[[Any], Any], *,
                   retries: int = 0, on_error: Callable[[dict], APIError] = default_error,
                   timeout: float = 3.0):
    """Plan and commit a write at most once per (scope, request id); return answer(reply).

    plan() reads the current state and returns (ops, reply), or (None, reply) when nothing needs to change;
    it raises an APIError for a request that cannot be applied. reply must be JSON-able and small: it is kept
    in the replicated request memory. answer(reply) builds the response from the reply and the current state.
    retries: how often a write refused with "update out of sequence" is planned again (for requests that did
    not state a version). on_error(result) turns any other refused write into the error to raise."""
    base = f"{scope}:{request_id}" if request_id else None
    for attempt in range(retries + 1):
        key = None if base is None else (base if attempt == 0 else f"{base}#{attempt}")
        result = store.applied(key) if key else None
        if result is None:
            try:
                ops, reply = await _maybe_await(plan())
            except _RETRY_CAUSED:
                result = await trusted_result(store, key) if key else None
                if result is None:
                    raise
            else:
                if ops is None:
                    return await _maybe_await(answer(reply))
                result = await _write(store, list(ops) + [{"op": "reply", "value": reply}], key, timeout)
        if result["ok"]:
            return await _maybe_await(answer(result.get("reply")))
        if result.get("code") == "out_of_sequence" and attempt < retries:
            continue
        raise on_error(result)
    raise OutOfSequence()  # not reached: the last attempt returns or raises

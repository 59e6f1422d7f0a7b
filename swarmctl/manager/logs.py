"""`service logs`: every task's container output, fetched from the agents of the nodes that run them and
merged in the order of the engines' timestamps.

A manager asks each task's node (GET /v1/agent/logs/TASK over mutual TLS, `?timestamps=1`) with a timeout of
its own, so one node that is down or slow never holds back the lines of the others: its tasks are reported
as missing, with the reason, and the rest is still shown (Docker fails as a whole, moby#37336). The answer is
streamed as newline-delimited JSON, one record per line:

    {"ts": NS, "task": {...context...}, "line": "..."}     a line of a task's output
    {"warning": "...", "task": {...context...}}            a task whose logs are missing, and why

Without follow, each task's lines (its last `tail`) are merged with a heap: in timestamp order, never all in
memory at once beyond what the agents answered. With follow, one follower per task polls its node for what
was written since its last line (so a restarted manager connection or a node coming back loses nothing),
new tasks of the service are picked up from the store as they appear (moby#33183), and lines are held for
REORDER_WINDOW seconds before they are written, so that lines of different nodes that arrive a little apart
still come out in time order (moby#33866).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Awaitable, Callable, Iterable, Iterator

from swarmctl.logformat import prefix  # noqa: F401 - re-exported: the routes use it from here

NODE_TIMEOUT = 5.0     # seconds a node's agent has to answer one request for a task's logs
POLL_INTERVAL = 0.5    # seconds between a follower's requests
REORDER_WINDOW = 0.5   # seconds a followed line is held so that later-arriving earlier lines go before it

ENDED = ("complete", "failed", "shutdown", "rejected", "orphaned", "remove")


def context(task: dict, node: dict | None) -> dict:
    """What a line's prefix is made of: service name, slot (the node id for a global task), task id, node."""
    slot = task.get("slot")
    return {"service": task.get("service_name", ""), "slot": str(slot if slot is not None else task.get("node_id")),
            "id": task["id"], "node": (node or {}).get("description", {}).get("hostname") or task.get("node_id") or ""}


def merge(streams: Iterable[Iterable[tuple[int, int, str]]]) -> Iterator[tuple[int, int, str]]:
    """Merge per-task (ts, seq, line) streams, each already in order, into one in timestamp order; lines of
    equal timestamps keep their task's order (seq)."""
    return heapq.merge(*streams)


class ReorderBuffer:
    """Holds followed lines for `window` seconds after they arrive and releases them in timestamp order."""

    def __init__(self, window: float = REORDER_WINDOW, clock: Callable[[], float] = time.monotonic):
        self.window, self.clock = window, clock
        self._heap: list = []
        self._seq = itertools.count()

    def push(self, ts: int, item) -> None:
        heapq.heappush(self._heap, (ts, next(self._seq), self.clock(), item))

    def pop_ready(self, flush: bool = False) -> list:
        """The lines whose time in the buffer is over, oldest timestamp first; a line still held keeps every
        later-stamped line back (flush: everything)."""
        now, out = self.clock(), []
        while self._heap and (flush or self._heap[0][2] + self.window <= now):
            out.append(heapq.heappop(self._heap)[3])
        return out

    def __len__(self) -> int:
        return len(self._heap)


Fetch = Callable[[dict, int | None, float | None], Awaitable[list[tuple[int, str]]]]


async def fetch_once(tasks: list[dict], fetch: Fetch, tail: int | None, since: float | None):
    """Each task's lines, fetched concurrently (a timeout per node is the fetcher's), as
    (entries per task, errors per task): entries [(ts, seq, line)]."""
    async def one(task):
        try:
            return task, await fetch(task, tail, since), None
        except Exception as exc:  # noqa: BLE001 - whatever stops one node stops only its tasks' lines
            return task, [], str(exc) or type(exc).__name__
    results = await asyncio.gather(*(one(t) for t in tasks))
    entries, errors = {}, {}
    for task, lines, error in results:
        entries[task["id"]] = [(ts, n, line) for n, (ts, line) in enumerate(lines)]
        if error is not None:
            errors[task["id"]] = error
    return entries, errors


class Follower:
    """Polls one task's node for its new lines until the task has ended and its last lines are in."""

    def __init__(self, task: dict, fetch: Fetch, out: Callable[[dict, int, str], None],
                 warn: Callable[[dict, str], None], is_ended: Callable[[str], bool], last_ns: int | None,
                 tail: int | None, since: float | None, interval: float = POLL_INTERVAL):
        self.task, self.fetch, self.out, self.warn, self.is_ended = task, fetch, out, warn, is_ended
        self.last_ns, self.tail, self.since, self.interval = last_ns, tail, since, interval
        self.failing: str | None = None

    async def run(self) -> None:
        while True:
            ended = self.is_ended(self.task["id"])  # asked before the fetch: the fetch then sees the last lines
            try:
                if self.last_ns is None:  # first request: the last `tail` lines (since the user's --since)
                    lines = await self.fetch(self.task, self.tail, self.since)
                else:  # after: what was written since the last line (1 ms back: since is in float seconds)
                    lines = await self.fetch(self.task, None, max(0.0, (self.last_ns - 1_000_000) / 1e9))
                if self.failing is not None:
                    self.failing = None
            except Exception as exc:  # noqa: BLE001
                reason = str(exc) or type(exc).__name__
                if reason != self.failing:
                    self.failing = reason
                    self.warn(self.task, reason)
                if ended:
                    return
                await asyncio.sleep(self.interval)
                continue
            for ts, line in lines:
                if self.last_ns is not None and ts <= self.last_ns:
                    continue  # seen already (the since overlap)
                self.out(self.task, ts, line)
                if self.last_ns is not None or ts:
                    self.last_ns = ts if self.last_ns is None else max(self.last_ns, ts)
            if self.last_ns is None:
                if any(ts == 0 for ts, _ in lines):
                    return  # a runtime without timestamps (the simulated one): nothing to follow by
                # nothing written yet: every later line is new (with --tail 0: every line from now)
                self.last_ns = int(time.time() * 1e9) if self.tail == 0 else 0
            if ended:
                return
            await asyncio.sleep(self.interval)

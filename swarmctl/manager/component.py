"""The shape shared by leader-only reconcilers: woken by store events, or by a timer, run a pass."""

from __future__ import annotations

import asyncio
import logging

from swarmctl.state.raft import RaftStore
from swarmctl.asyncutil import cancel

log = logging.getLogger(__name__)


class Reconciler:
    """Subclasses implement `reconcile()`; `kinds` are the record kinds whose changes wake it."""

    kinds: tuple[str, ...] = ()
    interval = 1.0       # a pass at least this often (restart delays, timeouts)
    settle = 0.005       # gather a burst of events into one pass

    def __init__(self, store: RaftStore):
        self.store = store
        self._dirty = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._cancel_watch = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()

        def on_events(_index, events):
            if any(e[0] == "reset" or e[1] in self.kinds for e in events):
                loop.call_soon_threadsafe(self._dirty.set)
        self._cancel_watch = self.store.watch(on_events)
        self._dirty.set()
        self._task = asyncio.create_task(self._run(), name=type(self).__name__)

    async def stop(self) -> None:
        if self._cancel_watch:
            self._cancel_watch()
            self._cancel_watch = None
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._dirty.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            await asyncio.sleep(self.settle)
            self._dirty.clear()
            try:
                await self.reconcile()
            except Exception as exc:  # lost leadership, no quorum, a bug: log and try again later
                log.warning("%s pass failed: %s", type(self).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
                await asyncio.sleep(0.2)

    async def reconcile(self) -> None:
        raise NotImplementedError


def chunks(ops: list[dict], size: int = 200):
    """Commit decisions in batches, as swarmkit does (up to 200 changes per Raft entry)."""
    for i in range(0, len(ops), size):
        yield ops[i:i + size]

"""The shape shared by leader-only reconcilers: woken by store events, or by a timer, run a pass.

Each pass may look at what woke it: `self.changed` maps a record kind to {id: record} for the records
that changed since the last pass (the new record, or the old one for a delete), and `self.full` says the
pass must look at everything: the first pass, a pass after a snapshot restore ("reset"), after a failed
pass, and one every `full_interval` seconds as a safety net. Reconcilers that replan everything on every
pass simply ignore both.
"""

from __future__ import annotations

import asyncio
import logging
import time

from swarmctl.node import looplag
from swarmctl.state.raft import RaftStore
from swarmctl.asyncutil import cancel, wait_event

log = logging.getLogger(__name__)


class Reconciler:
    """Subclasses implement `reconcile()`; `kinds` are the record kinds whose changes wake it."""

    kinds: tuple[str, ...] = ()
    interval = 1.0       # a pass at least this often (restart delays, timeouts)
    settle = 0.005       # gather a burst of events into one pass
    full_interval: float | None = None  # a full pass at least this often; None: every pass is full

    def __init__(self, store: RaftStore):
        self.store = store
        self._dirty = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._cancel_watch = None
        self._pending: dict[str, dict[str, dict]] = {}
        self._pending_full = True
        self._last_full = 0.0
        self.changed: dict[str, dict[str, dict]] = {}
        self.full = True

    def relevant(self, event) -> bool:
        """Does this store event concern this reconciler? Runs on the Raft thread: keep it cheap."""
        return event[1] in self.kinds

    def start(self) -> None:
        loop = asyncio.get_running_loop()

        def on_events(_index, events):
            mine = [e for e in events if e[0] == "reset" or self.relevant(e)]
            if mine:
                try:
                    loop.call_soon_threadsafe(self._note, mine)
                except RuntimeError:  # the loop has closed
                    pass
        self._pending_full = True
        self._cancel_watch = self.store.watch(on_events)
        self._dirty.set()
        self._task = asyncio.create_task(self._run(), name=type(self).__name__)

    def _note(self, events) -> None:
        """Accumulate changes for the next pass (on the event loop)."""
        for action, kind, record_id, record in events:
            if action == "reset":
                self._pending_full = True
            else:
                self._pending.setdefault(kind, {})[record_id] = record
        self._dirty.set()

    async def stop(self) -> None:
        if self._cancel_watch:
            self._cancel_watch()
            self._cancel_watch = None
        await cancel(self._task)
        self._task = None

    def _take_changes(self) -> None:
        """Move what accumulated since the last pass into `changed` and `full`."""
        self.changed, self._pending = self._pending, {}
        now = time.monotonic()
        self.full = self._pending_full or self.full_interval is None or now - self._last_full >= self.full_interval
        self._pending_full = False
        if self.full:
            self._last_full = now

    async def _run(self) -> None:
        while True:
            await wait_event(self._dirty, self.interval)
            await asyncio.sleep(self.settle)
            self._dirty.clear()
            self._take_changes()
            try:
                await looplag.timed(self.reconcile(), type(self).__name__)  # each step's hold of the loop
            except Exception as exc:  # lost leadership, no quorum, a bug: log and try again later
                log.warning("%s pass failed: %s", type(self).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
                self._pending_full = True  # what this pass saw is not lost: the next one looks at everything
                await asyncio.sleep(0.2)

    async def reconcile(self) -> None:
        raise NotImplementedError


def chunks(ops: list[dict], size: int = 200):
    """Commit decisions in batches, as swarmkit does (up to 200 changes per Raft entry)."""
    for i in range(0, len(ops), size):
        yield ops[i:i + size]

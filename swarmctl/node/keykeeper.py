"""On every manager: keep this node's key file in line with the cluster record.

- autolock turned on, its key rotated, or autolock turned off: re-wrap the TLS key and the DEK under the
  new unlock key, or unwrap them (keyfile.NodeKeys.set_kek);
- the record's sealed fields name a DEK this manager lacks (it joined before sealing existed, or its file
  lost the key): fetch it from another manager over mutual TLS;
- the record's plaintext fields of an earlier version were sealed (the leader's SealMigration): compact the
  local Raft log, so the entries that held them in plaintext are dropped.

It runs beside the manager components on followers and on the leader alike, woken by cluster-record events
(Raft thread, handed over to the event loop) and at least every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from swarmctl.asyncutil import cancel
from swarmctl.manager.keys import ClusterKeys, autolock
from swarmctl.node.keyfile import NodeKeys
from swarmctl.security import seal

log = logging.getLogger(__name__)


class KeyKeeper:
    interval = 2.0

    def __init__(self, store, keys: ClusterKeys, node_keys: NodeKeys,
                 fetch_dek: Callable[[set[str]], Awaitable[bool]] | None):
        self.store = store
        self.keys = keys
        self.node_keys = node_keys
        self.fetch_dek = fetch_dek
        self._dirty = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._cancel_watch = None
        self._saw_plaintext = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()

        def on_events(_index, events):
            if any(e[0] == "reset" or e[1] == "cluster" for e in events):
                loop.call_soon_threadsafe(self._dirty.set)
        self._cancel_watch = self.store.watch(on_events)
        self._dirty.set()
        self._task = asyncio.create_task(self._run(), name="key-keeper")

    async def stop(self) -> None:
        if self._cancel_watch is not None:
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
            self._dirty.clear()
            try:
                await self.check()
            except Exception as exc:  # a peer unreachable, a full disk: log, and try again on the next pass
                log.warning("key file check failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))

    async def check(self) -> None:
        clusters = self.store.list("cluster")
        if not clusters:
            return
        cluster = clusters[0]
        if self.keys.plaintext_fields(cluster):
            self._saw_plaintext = True
        elif self._saw_plaintext:
            self._saw_plaintext = False
            self.store.compact()
        missing = self.keys.missing_key_ids(cluster)
        if missing:
            if self.fetch_dek is None or not await self.fetch_dek(missing):
                return
        want = self.keys.unlock_key(cluster) if autolock(cluster) else None
        if want is None and autolock(cluster):
            return  # autolock on but its key not (yet) in the record: keep what we have
        if self.node_keys.set_kek(want):
            if want is None:
                log.info("autolock is off: this manager's key file is no longer encrypted")
            else:
                log.info("autolock: this manager's key file is now encrypted with unlock key %s", seal.key_id(want))

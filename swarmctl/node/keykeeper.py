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

import logging
from typing import Awaitable, Callable

from swarmctl.manager.component import Reconciler
from swarmctl.manager.keys import ClusterKeys, autolock
from swarmctl.node.keyfile import NodeKeys
from swarmctl.security import seal

log = logging.getLogger(__name__)


class KeyKeeper(Reconciler):
    """A reconciler of the key file (manager/component.Reconciler), on every manager, not only the leader."""

    kinds = ("cluster",)
    interval = 2.0

    def __init__(self, store, keys: ClusterKeys, node_keys: NodeKeys,
                 fetch_dek: Callable[[set[str]], Awaitable[bool]] | None):
        super().__init__(store)
        self.keys = keys
        self.node_keys = node_keys
        self.fetch_dek = fetch_dek
        self._saw_plaintext = False

    async def reconcile(self) -> None:
        await self.check()

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

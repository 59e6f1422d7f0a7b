"""A manager: its Raft replica plus the components that run while it leads.

Leader-only components (dispatcher, orchestrator, scheduler, Raft membership reconciler) are started
when this replica becomes leader and stopped when it loses leadership, so exactly one set of
reconcilers writes to the store at a time.
"""

from __future__ import annotations

import asyncio
import logging

from swarmctl.asyncutil import cancel
from swarmctl.manager.dispatcher import Dispatcher
from swarmctl.manager.endpoints import EndpointTable
from swarmctl.manager.events import EventHub
from swarmctl.manager.keys import ClusterKeys, SealMigration
from swarmctl.manager.membership import Membership
from swarmctl.manager.orchestrator import Orchestrator
from swarmctl.manager.raftmembers import RaftMembers
from swarmctl.manager.scheduler.scheduler import Scheduler
from swarmctl.state.raft import RaftStore

log = logging.getLogger(__name__)


class Manager:
    def __init__(self, store: RaftStore, heartbeat_period: float, keys: ClusterKeys):
        self.store = store
        self.keys = keys  # sealed fields, and secrets' data (manager/secrets.py)
        self.membership = Membership(store, keys)
        self.seal_migration = SealMigration(store, keys, on_sealed=store.compact)
        self.dispatcher = Dispatcher(store, heartbeat_period)
        self.endpoints = EndpointTable(store, self.dispatcher.answer_interval)
        self.orchestrator = Orchestrator(store)
        self.scheduler = Scheduler(store)
        self.raft_members = RaftMembers(store, self.membership, self.dispatcher, heartbeat_period)
        self.events = EventHub(store)  # `swarmctl events`: on every manager, leader or not
        self._leading = False
        self._watch: asyncio.Task | None = None

    async def start(self) -> None:
        self.events.start()
        self._watch = asyncio.create_task(self._watch_leadership(), name="leadership")

    async def stop(self) -> None:
        await cancel(self._watch)
        self._watch = None
        await self._stop_leading()
        self.events.stop()

    @property
    def is_leader(self) -> bool:
        return self.store.is_leader()

    async def _watch_leadership(self) -> None:
        while True:
            leader = self.store.is_leader()
            if leader and not self._leading:
                log.info("became leader: starting leader components")
                self._leading = True
                self.dispatcher.start()
                self.endpoints.start()
                self.orchestrator.start()
                self.scheduler.start()
                self.raft_members.start()
                self.seal_migration.start()
            elif not leader and self._leading:
                log.info("lost leadership: stopping leader components")
                await self._stop_leading()
            await asyncio.sleep(0.05)

    async def _stop_leading(self) -> None:
        if self._leading:
            self._leading = False
            await self.raft_members.stop()
            await self.seal_migration.stop()
            await self.scheduler.stop()
            await self.orchestrator.stop()
            await self.endpoints.stop()
            await self.dispatcher.stop()

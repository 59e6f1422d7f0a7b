"""The manager part of a node: its Raft replica, the manager components, and the file of Raft members.

A node runs this part only while its stored role is manager. Starting it opens the replica with the
member list from the data dir (or the one given by a join); stopping it destroys the replica and the
components, so the node can become a worker or leave without a restart. The replica speaks Raft over
mutual TLS with the node's certificate (state/transport.py); its TLS contexts live here so that a
renewed certificate reaches them too (tls_contexts()).
"""

from __future__ import annotations

import asyncio
import logging

from swarmctl.asyncutil import cancel
from swarmctl.manager.keys import ClusterKeys
from swarmctl.manager.manager import Manager
from swarmctl.node.datadir import DataDir
from swarmctl.node.keykeeper import KeyKeeper
from swarmctl.security import tls
from swarmctl.security.certs import cert_identity
from swarmctl.state.raft import RaftStore

log = logging.getLogger(__name__)


class ManagerPart:
    def __init__(self, data: DataDir, raft_addr: str, heartbeat_period: float, fetch_dek=None):
        self.data = data
        self.keys = ClusterKeys(data.keys)  # sealed record fields, with the DEK of this node's key file
        self._fetch_dek = fetch_dek
        self.key_keeper: KeyKeeper | None = None
        self.raft_addr = raft_addr
        self.heartbeat_period = heartbeat_period
        self.store: RaftStore | None = None
        self.manager: Manager | None = None
        self._members_saver: asyncio.Task | None = None
        self._server_ctx = None
        self._client_ctx = None

    def open_store(self, members: list[str], peers: dict[str, str] | None = None, machine=None) -> RaftStore:
        """Start the replica (before the components: init and force-new-cluster write through it first).
        peers: {raft addr: node id} of the managers, which authorise Raft peers until the replica holds
        the cluster state (a manager that has just joined)."""
        d = self.data
        password = d.keys.tls_password()  # the key file is encrypted under autolock
        self._server_ctx = tls.raft_server_context(d.cert_file, d.key_file, d.ca_file, key_password=password)
        self._client_ctx = tls.client_context(d.ca_file, d.cert_file, d.key_file, key_password=password)
        cluster_id = cert_identity(d.read(d.cert_file)).cluster_id
        self.store = RaftStore(self.raft_addr, members, d.raft_dir, cluster_id=cluster_id, peers=peers,
                               server_context=self._server_ctx, client_context=self._client_ctx, machine=machine)
        return self.store

    def tls_contexts(self) -> list:
        """The Raft TLS contexts, for Node to load a renewed certificate into."""
        return [self._server_ctx, self._client_ctx]

    async def start(self) -> None:
        """Start the components on the replica (opened here from the data dir if it is not open yet)."""
        if self.store is None:
            raft = self.data.load_raft()
            self.open_store(raft["members"], raft["peers"])
        self.manager = Manager(self.store, self.heartbeat_period, self.keys)
        await self.manager.start()
        self.key_keeper = KeyKeeper(self.store, self.keys, self.data.keys, self._fetch_dek)
        self.key_keeper.start()
        self._members_saver = asyncio.create_task(self._save_members(), name="raft-members")

    async def stop(self) -> None:
        await cancel(self._members_saver)
        self._members_saver = None
        if self.key_keeper is not None:
            await self.key_keeper.stop()
            self.key_keeper = None
        if self.manager is not None:
            await self.manager.stop()
            self.manager = None
        if self.store is not None:
            store, self.store = self.store, None
            await asyncio.get_running_loop().run_in_executor(None, store.destroy)
            await asyncio.sleep(0.2)  # let pysyncobj's thread close its sockets

    async def wait_leader(self, timeout: float) -> bool:
        for _ in range(int(timeout / 0.05)):
            if self.store is not None and self.store.is_leader():
                return True
            await asyncio.sleep(0.05)
        return False

    async def _save_members(self) -> None:
        """Keep raft/members.json current, so a restart starts with today's membership. The peers map
        is kept only until the replica holds the cluster state: from then on the node records decide."""
        saved = None
        while self.store is not None:
            current = (self.store.members(), None if self.store.has_state() else self.store.peers)
            if current != saved:
                self.data.save_raft(*current)
                saved = current
            await asyncio.sleep(1.0)

"""The agent part of a node, run on every node in a swarm: the session to the managers, the worker that
runs the node's tasks, the mesh agent (routing mesh and DNS, mesh/agent.py), and the renewal of the node's
certificate.

It knows the managers only through the PeerClient, as any remote node does; on a manager it talks to its
own management port.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from swarmctl.agent.session import Session
from swarmctl.agent.taskfiles import TaskFiles
from swarmctl.agent.worker import Worker
from swarmctl.mesh.agent import MeshAgent
from swarmctl.node.certrenewal import CertRenewer

log = logging.getLogger(__name__)


class AgentPart:
    def __init__(self, node_id: str, peer: Callable, managers: list[str], period: float,
                 describe: Callable[[], dict], on_answer: Callable[[dict], Awaitable[None]],
                 on_removed: Callable[[str], Awaitable[None]], make_runtime: Callable,
                 read_cert: Callable[[], bytes], renew_cert: Callable[[], Awaitable[None]],
                 node_addr: str | None = None, hostname: str = "", dns_addr: tuple[str, int] | None = None,
                 mesh: bool = True, dataplane: str = "auto", files_dir: str | None = None):
        self.session = Session(peer, managers, period, describe, on_answer, on_removed)
        # containers are given this node's DNS server only where resolv.conf can name it (port 53)
        dns = [dns_addr[0]] if dns_addr is not None and dns_addr[1] == 53 else None
        # secrets and configs: a tmpfs of this node's own in its run dir (files_dir), none for hollow nodes
        files = TaskFiles(files_dir, fallback_name=f"swarmctl-{node_id[:12]}") if files_dir else None
        self.worker = Worker(node_id, make_runtime, self.session.call, node_addr=node_addr, node_hostname=hostname,
                             dns=dns, files=files)
        self.mesh = MeshAgent(self.session.call, node_addr, dns_addr, dataplane=dataplane) if mesh and node_addr else None
        self._renewer = CertRenewer(read_cert, renew_cert)

    async def start(self) -> None:
        self.session.start()
        if self.mesh is not None:
            await self.mesh.start()
            if not self.mesh.dns_serving:
                self.worker.dns = None
        self.worker.start()
        self._renewer.start()

    async def stop(self) -> None:
        await self._renewer.stop()
        await self.worker.stop()
        if self.mesh is not None:
            await self.mesh.stop()
        await self.session.stop()

    async def first_heartbeat(self, timeout: float = 5.0) -> None:
        """Return once a manager has seen this node (init and join answer then, so it is Ready)."""
        try:
            await asyncio.wait_for(self.session.answered.wait(), timeout)
        except asyncio.TimeoutError:
            log.warning("no manager answered a heartbeat within %.0f s of joining", timeout)

"""The fault suite's cluster: the harness's Cluster with a gid per daemon, formed in one call.

Each daemon runs with a gid of its own (GID_BASE + index, still as root), so that nemesis.Network can
tell the daemons' connections apart on loopback. An index offset and a port let bench/fault_soak.py use
addresses apart from the tests'.
"""

from __future__ import annotations

from tests.faults.nemesis import Network, nft_available
from tests.integration.harness import BASE_PORT, Cluster, Daemon

GID_BASE = 61000


class FaultCluster(Cluster):
    """The harness's Cluster, with a gid per daemon, and optionally its own addresses and port (for bench)."""

    def __init__(self, root: str, heartbeat: float = 0.5, docker_host: str | None = None, offset: int = 0,
                 port: int = BASE_PORT):
        super().__init__(root, heartbeat=heartbeat, docker_host=docker_host)
        self.offset = offset
        self.port = port
        self.managers: list[Daemon] = []
        self.workers: list[Daemon] = []
        self.network: Network | None = None

    def daemon(self, index: int, start: bool = True, **kwargs) -> Daemon:
        kwargs.setdefault("port", self.port)
        kwargs.setdefault("group", GID_BASE + self.offset + index)
        return super().daemon(index + self.offset, start=start, **kwargs)

    def planned(self, count: int) -> list[Daemon]:
        """Daemons 1..count as they will be (address, gid), none started: for the Network's table."""
        return [Daemon(self.offset + i, self.root, port=self.port, group=GID_BASE + self.offset + i)
                for i in range(1, count + 1)]

    def form_faults(self, managers: int = 3, workers: int = 0, network: bool = False) -> "FaultCluster":
        if network:
            reason = nft_available()
            if reason:
                raise RuntimeError(f"network faults need nftables: {reason}")
            self.network = Network(self.planned(managers + workers), [self.port, self.port + 1])
        self.managers, self.workers = self.form(managers, workers)
        return self

    def close(self) -> None:
        """Kill every daemon by pid (SIGKILL also ends a stopped process) and delete the nftables table."""
        try:
            self.stop_all()
        finally:
            if self.network is not None:
                self.network.close()

"""The mesh agent of a node: follows the leader's endpoint table and drives this node's data plane and DNS.

- Ingress: for every published ingress port of every service, connections to the node's advertise address at
  the published port go to a running task of the service, on any node. The data plane is the kernel's
  (nft.py: nftables DNAT, when the daemon is root and `nft` exists), or else the userspace proxy (proxy.py);
  `swarmctl daemon --mesh-dataplane auto|nft|proxy` chooses.
- Virtual IPs: a service with published ingress ports has a virtual IP on this node, 127.<N>.<i/256>.<i%256>
  where N is the last byte of the node's advertise address and i the service's `vip_index`: the VIP listens
  on the service's target ports, so a program that resolves `web` reaches it on port 80. All of 127.0.0.0/8 is
  the loopback interface on Linux, so these addresses need no configuration, and nodes on one machine (the
  test clusters) get different ones.
- DNS (dns.py) on the advertise address, port 53 by default: `web`, `tasks.web`, SRV `_80._tcp.web`.

The table comes by long-poll (`POST /v1/session/endpoints`) through the node's session, with deltas. When no
manager answers, the last table stays in force: the data plane keeps serving with the endpoints it knew.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from swarmctl.asyncutil import cancel

log = logging.getLogger(__name__)

Call = Callable[..., Awaitable[dict]]
POLL_WAIT = 10.0


def vip_for(node_addr: str, index: int | None) -> str | None:
    """This node's virtual IP of a service (see the module docstring); None without an index."""
    if not index or not 0 < index < 65536:
        return None
    try:
        last = int(node_addr.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return None
    return f"127.{last or 255}.{index >> 8}.{index & 255}"


def has_ingress(service: dict) -> bool:
    return any(p.get("publish_mode") == "ingress" for p in service.get("ports") or [])


def backends(service: dict, target: int, protocol: str) -> list[list]:
    out = []
    for task in service.get("tasks") or []:
        for port in task.get("ports") or []:
            if port["target"] == target and port["protocol"] == protocol and port["mode"] == "ingress" and task.get("ip"):
                out.append([task["ip"], port["port"]])
                break
    return out


def routes(services: list[dict], node_addr: str) -> list[dict]:
    """The proxy's route table for this node: ingress ports on the advertise address, VIPs on target ports."""
    table = []
    for service in sorted(services, key=lambda s: s["name"]):
        if not has_ingress(service):
            continue
        vip = vip_for(node_addr, service.get("vip_index")) if service.get("mode") == "vip" else None
        for port in service["ports"]:
            if port.get("publish_mode") != "ingress" or not port.get("published_port"):
                continue
            pool = backends(service, port["target_port"], port["protocol"])
            table.append({"listen": [node_addr, port["published_port"]], "proto": port["protocol"],
                          "backends": pool, "source": node_addr})
            if vip:
                table.append({"listen": [vip, port["target_port"]], "proto": port["protocol"],
                              "backends": pool, "source": node_addr})
    return table


def zone_services(services: list[dict], node_addr: str) -> list[dict]:
    """The DNS zone's view: a VIP only for services the mesh forwards (ingress ports), else the tasks' IPs."""
    out = []
    for service in services:
        vip = vip_for(node_addr, service.get("vip_index")) if has_ingress(service) else None
        mode = "vip" if vip and service.get("mode") == "vip" else "dnsrr"
        out.append({"name": service["name"], "id": service["id"], "mode": mode, "vip": vip,
                    **({"stack": service["stack"]} if service.get("stack") else {}),
                    "tasks": [{"name": t["name"], "id": t["id"], "ip": t["ip"],
                               "ports": [{"target": p["target"], "protocol": p["protocol"], "port": p["port"]}
                                         for p in t.get("ports") or []]}
                              for t in service.get("tasks") or [] if t.get("ip")]})
    return out


class RecordingDataPlane:
    """A stand-in for the data plane, used only by hollow nodes (swarmctl/hollow, `--endpoints`): it keeps the
    route table it is given and forwards nothing, because a hollow node's tasks are simulated and have no port
    to forward to. What reaches it is real: the node's session, the endpoint long-poll and its deltas."""

    kind = "recording"

    def __init__(self):
        self.routes: list[dict] = []
        self.applied_at: float | None = None  # time.time() of the last table
        self.running = False

    async def start(self) -> None:
        self.running = True

    async def set_routes(self, routes: list[dict]) -> dict:
        self.routes = routes
        self.applied_at = time.time()
        return {}

    async def stats(self) -> dict:
        return {f"{r['listen'][0]}:{r['listen'][1]}/{r['proto']}": {"backends": len(r["backends"])}
                for r in self.routes}

    async def stop(self) -> None:
        self.running = False


async def start_dataplane(choice: str, node_addr: str):
    """The data plane asked for: "nft", "proxy", "auto" (nft where it can run, else the proxy), or "recording"
    (hollow nodes only: RecordingDataPlane)."""
    from swarmctl.mesh import nft
    from swarmctl.mesh.proxy import ProxyProcess
    if choice == "recording":
        plane = RecordingDataPlane()
        await plane.start()
        return plane
    if choice in ("auto", "nft"):
        why = nft.unavailable()
        if why is None:
            plane = nft.NftDataPlane(node_addr)
            try:
                await plane.start()
                return plane
            except RuntimeError as exc:
                why = str(exc)
        if choice == "nft":
            raise RuntimeError(f"the nftables data plane cannot run: {why}")
        log.info("mesh: nftables not used (%s): the userspace proxy forwards", why)
    plane = ProxyProcess()
    await plane.start()
    return plane


class MeshAgent:
    def __init__(self, call: Call, node_addr: str, dns_addr: tuple[str, int] | None, poll_wait: float = POLL_WAIT,
                 dataplane: str = "auto"):
        self._call = call
        self.dataplane = dataplane
        self.node_addr = node_addr
        self.dns_addr = dns_addr
        self._poll_wait = poll_wait
        self.services: dict[str, dict] = {}
        self.version: str | None = None
        self.proxy = None
        self.dns = None
        self.zone = None
        self.errors: dict = {}
        self.applied = asyncio.Event()  # set after each table applied (tests wait on it)
        self._task: asyncio.Task | None = None

    @property
    def dns_serving(self) -> bool:
        return self.dns is not None

    async def start(self) -> None:
        from swarmctl.mesh.dns import DnsServer, Zone, upstreams_from_resolv_conf
        self.proxy = await start_dataplane(self.dataplane, self.node_addr)
        self.zone = Zone()
        if self.dns_addr is not None:
            host, port = self.dns_addr
            server = DnsServer(host, port, self.zone, upstreams_from_resolv_conf(exclude={host}))
            try:
                await server.start()
                self.dns = server
            except OSError as exc:
                log.warning("DNS not served on %s:%d: %s", host, port, exc)
        self._task = asyncio.create_task(self._poll_loop(), name="mesh-endpoints")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        if self.dns is not None:
            await self.dns.stop()
            self.dns = None
        if self.proxy is not None:
            await self.proxy.stop()
            self.proxy = None

    async def _poll_loop(self) -> None:
        from swarmctl.manager.endpoints import apply
        while True:
            try:
                wait = 1.0 if self.errors else self._poll_wait  # a port that could not be bound: try again soon
                answer = await self._call("POST", "/v1/session/endpoints",
                                          {"since": self.version, "wait": wait},
                                          timeout=self._poll_wait + 8)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no manager: keep serving with the last table
                log.debug("fetching endpoints failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            changed = answer.get("full", True) or answer.get("services") or answer.get("removed")
            self.version = answer.get("version")
            self.services = apply(self.services, answer)
            if changed or self.errors:
                await self._apply()

    async def _apply(self) -> None:
        services = list(self.services.values())
        self.zone.set(zone_services(services, self.node_addr))
        try:
            reply = await self.proxy.set_routes(routes(services, self.node_addr))
            self.errors = reply or {}
            for where, error in self.errors.items():
                log.warning("mesh: cannot listen on %s: %s", where, error)
        except Exception:
            log.exception("mesh: updating the data plane failed")
        self.applied.set()
        self.applied = asyncio.Event()

"""The kernel data plane of the routing mesh: nftables DNAT, the way kube-proxy's nftables mode does it.

One table per node, `ip swarmctl_mesh_<advertise address>`, that matches only this node's own addresses (its
advertise address and its services' virtual IPs) and the service ports on them:

    map routes  { ipv4_addr . inet_proto . inet_service : verdict }   one element per (address, proto, port)
    chain svc_N { meta l4proto tcp dnat ip to numgen inc mod K map { 0 : task-ip . task-port, ... } }
    chain nat_prerouting / nat_output     ip daddr . meta l4proto . th dport vmap @routes
    chain nat_postrouting                 masquerade what came from another host and leaves DNATed
    chain retry_input / _output / _forward   drop the RST that refuses a DNATed SYN (see below)

New connections go round-robin over the service's running tasks (`numgen inc`); conntrack keeps each
established connection on its task, so a table update (an atomic replace of the whole table) never cuts a
connection that is open, and a task that leaves the pool keeps its in-flight requests until it stops.

Retry on a dead task, in the kernel: a task that dies between two endpoint updates still has its entry in the
map for up to ~0.1 s, and a SYN sent to it is answered by a RST (its port is closed). The retry chains drop
exactly that RST: RST+ACK with sequence number 0 (RFC 793: the answer to a SYN, which carries no ACK) on a
connection this table DNATed (`ct status dnat`, original destination one of this node's addresses). The
client's kernel then sends its SYN again after 1 s; conntrack drops the closed entry on a new SYN, so the SYN
is NATed afresh, by then to a task that runs. The request costs 1 s instead of failing. A RST on an
established connection (sequence number not 0) passes, and so does every RST of a connection we did not NAT.

A service with no running task has no element: its port on this node's address then refuses connections.
The table is deleted when the mesh agent stops, and a stale one of the same name (a daemon that was killed)
is replaced at start. UDP is NATed the same way, with no retry (UDP has no handshake to repeat).

Chosen over the userspace proxy (proxy.py) by measuring, see docs/design.md ("Service networking"): on this
2-CPU machine the proxy reached 0.53-0.62x the direct request rate and HAProxy 0.68x, DNAT 0.94-1.09x.
The proxy stays as the data plane where nftables cannot be used (not root, no `nft`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import shutil
import zlib

log = logging.getLogger(__name__)

NFT_TIMEOUT = 10.0


def table_name(node_addr: str) -> str:
    return "swarmctl_mesh_" + node_addr.replace(".", "_").replace(":", "_")


def unavailable() -> str | None:
    """Why nftables cannot be this node's data plane, or None when it can."""
    if os.geteuid() != 0:
        return "not running as root"
    if shutil.which("nft") is None:
        return "the nft command is not installed"
    return None


def _addr(text: str) -> str:
    return str(ipaddress.IPv4Address(text))  # raises ValueError on anything else: nothing odd reaches nft


def render(table: str, routes: list[dict]) -> str:
    """The nft script that replaces `table` with the routes, in one transaction (add, delete, define)."""
    own: set[str] = set()
    elements: list[str] = []
    chains: list[str] = []
    pools: dict[tuple, str] = {}
    for route in routes:
        host, port = route["listen"]
        proto = route["proto"]
        if proto not in ("tcp", "udp"):
            continue
        own.add(_addr(host))
        backends = [(_addr(h), int(p)) for h, p in route["backends"]]
        if not backends:
            continue  # no running task: nothing is NATed, the port refuses
        # numgen counts from 0 in every new table: each node starts its round at another task, so that the
        # first connections through different nodes do not all go to the same one
        start = zlib.crc32(table.encode()) % len(backends)
        backends = backends[start:] + backends[:start]
        key = (proto, tuple(backends))
        name = pools.get(key)
        if name is None:
            name = pools[key] = f"svc_{len(pools)}"
            items = ", ".join(f"{i} : {h} . {p}" for i, (h, p) in enumerate(backends))
            if len(backends) == 1:
                target = f"{backends[0][0]}:{backends[0][1]}"
            else:
                target = f"numgen inc mod {len(backends)} map {{ {items} }}"
            chains.append(f"  chain {name} {{\n    meta l4proto {proto} dnat ip to {target}\n  }}")
        elements.append(f"{_addr(host)} . {proto} . {int(port)} : goto {name}")
    addrs = ", ".join(sorted(own)) if own else "127.255.255.254"  # a set may not be empty in a definition
    lines = [f"add table ip {table}", f"delete table ip {table}", f"table ip {table} {{",
             f"  set addrs {{\n    type ipv4_addr\n    elements = {{ {addrs} }}\n  }}",
             "  map routes {\n    type ipv4_addr . inet_proto . inet_service : verdict"
             + (f"\n    elements = {{ {', '.join(elements)} }}" if elements else "") + "\n  }",
             *chains]
    for hook in ("prerouting", "output"):
        lines.append(f"  chain nat_{hook} {{\n    type nat hook {hook} priority -100; policy accept;\n"
                     "    ip daddr . meta l4proto . th dport vmap @routes\n  }")
    # from another host, DNATed to a task elsewhere: masquerade, so that the answer comes back this way
    lines.append("  chain nat_postrouting {\n    type nat hook postrouting priority 100; policy accept;\n"
                 "    ct status dnat ct original ip daddr @addrs ct original ip saddr != @addrs"
                 " ct original ip saddr != 127.0.0.0/8 masquerade\n  }")
    for hook in ("input", "output", "forward"):
        lines.append(f"  chain retry_{hook} {{\n    type filter hook {hook} priority 0; policy accept;\n"
                     "    tcp flags & (syn | rst | ack) == rst | ack tcp sequence 0 ct status dnat"
                     " ct original ip daddr @addrs counter drop\n  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


async def _nft(script: str | None, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "nft", *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(script.encode() if script is not None else None),
                                          NFT_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"nft {' '.join(args)}: no answer in {NFT_TIMEOUT:.0f} s")
    if proc.returncode != 0:
        raise RuntimeError(f"nft {' '.join(args)}: {err.decode(errors='replace').strip()}")
    return out.decode()


class NftDataPlane:
    """The same interface as ProxyProcess (start, set_routes, stats, stop), in the kernel."""

    kind = "nftables"

    def __init__(self, node_addr: str):
        self.table = table_name(node_addr)
        self.running = False
        self._routes: list[dict] = []
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            await _nft(render(self.table, []), "-f", "-")  # replaces a stale table of a killed daemon
            self.running = True

    async def set_routes(self, routes: list[dict]) -> dict:
        """Replace the table with these routes. Returns {where: error}, as the proxy does ({} when applied)."""
        async with self._lock:
            if not self.running:
                return {"nftables": "the data plane is stopped"}
            try:
                script = render(self.table, routes)
            except (ValueError, KeyError, TypeError) as exc:
                return {"nftables": f"bad route: {exc}"}
            try:
                await _nft(script, "-f", "-")
            except RuntimeError as exc:
                return {"nftables": str(exc)}
            self._routes = routes
            return {}

    async def stats(self) -> dict:
        """{"listen:port/proto": {"backends": n}} for the routes in force, and "retried": the RSTs dropped so far
        (each one a SYN that the client sends again)."""
        out = {f"{r['listen'][0]}:{r['listen'][1]}/{r['proto']}": {"backends": len(r["backends"])}
               for r in self._routes}
        retried = 0
        try:
            data = json.loads(await _nft(None, "-j", "list", "table", "ip", self.table))
            for item in data.get("nftables", []):
                for expr in (item.get("rule") or {}).get("expr", []):
                    if "counter" in expr and item["rule"]["chain"].startswith("retry_"):
                        retried += expr["counter"].get("packets", 0)
        except (RuntimeError, ValueError):
            pass
        out["retried"] = retried
        return out

    async def stop(self) -> None:
        async with self._lock:
            if not self.running:
                return
            self.running = False
            try:
                await _nft(None, "delete", "table", "ip", self.table)
            except RuntimeError as exc:
                if "No such file" not in str(exc):
                    log.warning("mesh: deleting table %s failed: %s", self.table, exc)

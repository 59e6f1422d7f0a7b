"""The kernel data plane (swarmctl/mesh/nft.py): the rendered table, and real nftables DNAT on loopback.

The kernel tests need root and nft (they are skipped otherwise) and use only 127.0.0.221-229, ports 42000-42999,
in a table of their own (swarmctl_mesh_127_0_0_221) that every test deletes again.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time

import pytest

from swarmctl.mesh import nft
from swarmctl.mesh.agent import start_dataplane

pytestmark = pytest.mark.timeout(60)

LISTEN = "127.0.0.221"
VIP = "127.221.0.1"
LIVE = ("127.0.0.222", "127.0.0.223")
DEAD = "127.0.0.224"
kernel = pytest.mark.skipif(nft.unavailable() is not None, reason=f"nftables: {nft.unavailable()}")


def route(port, backends, proto="tcp", host=LISTEN):
    return {"listen": [host, port], "proto": proto, "backends": [list(b) for b in backends], "source": None}


# ------------------------------------------------------------------------------------------------ render


def test_the_table_matches_only_the_nodes_own_addresses_and_ports():
    text = nft.render("swarmctl_mesh_127_0_0_221", [route(8080, [("127.0.0.12", 20001), ("127.0.0.13", 20002)]),
                                                    route(80, [("127.0.0.12", 20001), ("127.0.0.13", 20002)],
                                                          host=VIP)])
    assert "127.0.0.221 . tcp . 8080 : goto svc_0" in text and f"{VIP} . tcp . 80 : goto svc_0" in text
    assert text.count("chain svc_") == 1  # one pool chain for the two routes to the same tasks
    assert ("numgen inc mod 2 map { 0 : 127.0.0.12 . 20001, 1 : 127.0.0.13 . 20002 }" in text
            or "numgen inc mod 2 map { 0 : 127.0.0.13 . 20002, 1 : 127.0.0.12 . 20001 }" in text)
    assert f"elements = {{ 127.0.0.221, {VIP} }}" in text
    # every hook rule is keyed on the table's own routes or its own addresses
    for line in text.splitlines():
        if " dnat ip to" in line:
            assert "meta l4proto" in line
        if "drop" in line or "masquerade" in line:
            assert "ct original ip daddr @addrs" in line
    assert text.startswith("add table ip swarmctl_mesh_127_0_0_221\ndelete table ip swarmctl_mesh_127_0_0_221\n")


def test_a_service_without_running_tasks_is_not_natted_and_one_task_needs_no_numgen():
    text = nft.render("t", [route(8080, []), route(8081, [("127.0.0.12", 20001)], proto="udp")])
    assert "8080" not in text.split("map routes")[1].split("}")[0]
    assert "meta l4proto udp dnat ip to 127.0.0.12:20001" in text and "numgen" not in text


def test_anything_that_is_not_an_ipv4_address_never_reaches_nft():
    for bad in ("127.0.0.1; flush ruleset", "eth0", "::1"):
        with pytest.raises(ValueError):
            nft.render("t", [route(80, [(bad, 20001)])])
    assert asyncio.run(_bad_route_is_an_error())


async def _bad_route_is_an_error():
    plane = nft.NftDataPlane(LISTEN)
    plane.running = True  # not started: render fails before nft is called
    errors = await plane.set_routes([route(80, [("x; flush ruleset", 1)])])
    return "bad route" in errors["nftables"]


def test_each_node_starts_its_round_robin_at_another_task():
    pool = [("127.0.0.12", 20001), ("127.0.0.13", 20002), ("127.0.0.14", 20003), ("127.0.0.15", 20004)]
    firsts = set()
    for i in range(11, 16):
        text = nft.render(nft.table_name(f"127.0.0.{i}"), [route(8080, pool, host=f"127.0.0.{i}")])
        firsts.add(text.split("map { 0 : ")[1].split(",")[0])
        assert all(f"{h} . {p}" in text for h, p in pool)
    assert len(firsts) >= 2


def test_table_names_are_per_node():
    assert nft.table_name("127.0.0.11") == "swarmctl_mesh_127_0_0_11"
    assert nft.table_name("127.0.0.11") != nft.table_name("127.0.0.12")


# ------------------------------------------------------------------------------------------------ kernel


class Servers:
    def __init__(self):
        self.servers = []

    async def tcp(self, host, port):
        async def handle(reader, writer):
            await reader.readline()
            writer.write(host.encode() + b"\n")
            await writer.drain()
            writer.close()
        self.servers.append(await asyncio.start_server(handle, host, port, reuse_address=True))

    def close(self):
        for s in self.servers:
            s.close()


async def ask(host, port, timeout=5.0):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(b"hi\n")
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), timeout)).decode().strip()
    finally:
        writer.close()


def tables():
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


@kernel
def test_connections_spread_round_robin_and_the_table_goes_at_stop():
    async def main():
        servers = Servers()
        plane = nft.NftDataPlane(LISTEN)
        try:
            for host in LIVE:
                await servers.tcp(host, 42001)
            await plane.start()
            assert await plane.set_routes([route(42000, [(h, 42001) for h in LIVE]),
                                           route(42080, [(h, 42001) for h in LIVE], host=VIP)]) == {}
            answers = [await ask(LISTEN, 42000) for _ in range(10)] + [await ask(VIP, 42080) for _ in range(4)]
            present = plane.table in tables()
        finally:
            await plane.stop()
            servers.close()
        return answers, present
    answers, present = asyncio.run(main())
    assert present and sorted(set(answers)) == sorted(LIVE)
    assert answers[:10].count(LIVE[0]) == 5  # numgen inc: strictly alternating
    assert nft.table_name(LISTEN) not in tables()


@kernel
def test_a_dead_task_still_in_the_table_costs_a_retry_not_a_failure():
    """Without the retry chains, every third connection here is refused (the dead task's port is closed)."""
    async def main():
        servers = Servers()
        plane = nft.NftDataPlane(LISTEN)
        try:
            await servers.tcp(LIVE[0], 42101)
            await servers.tcp(LIVE[1], 42101)
            await plane.start()
            assert await plane.set_routes([route(42100, [(LIVE[0], 42101), (DEAD, 42101), (LIVE[1], 42101)])]) == {}
            times, answers = [], []
            for _ in range(6):
                start = time.monotonic()
                answers.append(await ask(LISTEN, 42100, timeout=8.0))
                times.append(time.monotonic() - start)
            stats = await plane.stats()
        finally:
            await plane.stop()
            servers.close()
        return answers, times, stats
    answers, times, stats = asyncio.run(main())
    assert set(answers) <= set(LIVE) and len(answers) == 6
    assert sum(t > 0.8 for t in times) >= 1  # the ones that met the dead task waited for the SYN again
    assert stats["retried"] >= 1


@kernel
def test_an_open_connection_survives_a_table_change_and_udp_is_natted():
    async def main():
        plane = nft.NftDataPlane(LISTEN)
        held = {}

        async def hold(reader, writer):
            held["w"] = writer
            while line := await reader.readline():
                writer.write(b"still " + line)
                await writer.drain()
        server = await asyncio.start_server(hold, LIVE[0], 42201, reuse_address=True)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((LIVE[1], 42301))
        udp.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await plane.start()
            await plane.set_routes([route(42200, [(LIVE[0], 42201)]), route(42300, [(LIVE[1], 42301)], "udp")])
            reader, writer = await asyncio.open_connection(LISTEN, 42200)
            writer.write(b"one\n")
            first = await reader.readline()
            await plane.set_routes([route(42300, [(LIVE[1], 42301)], "udp")])  # the task left the pool
            writer.write(b"two\n")
            second = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            client.sendto(b"ping", (LISTEN, 42300))
            data, peer = await asyncio.wait_for(loop.sock_recvfrom(udp, 100), 5)
            udp.sendto(b"pong", peer)
            client.settimeout(5)
            back = client.recvfrom(100)
            client.close()
        finally:
            await plane.stop()
            server.close()
            udp.close()
        return first, second, data, back
    first, second, data, back = asyncio.run(main())
    assert (first, second) == (b"still one\n", b"still two\n")
    assert data == b"ping" and back[0] == b"pong" and back[1] == (LISTEN, 42300)


@kernel
def test_auto_takes_nftables_when_it_can_and_a_stale_table_is_replaced():
    subprocess.run(["nft", "-f", "-"], check=True,
                   input=f"table ip {nft.table_name(LISTEN)} {{\n chain stale {{\n }}\n}}\n".encode())

    async def main():
        plane = await start_dataplane("auto", LISTEN)
        try:
            listing = subprocess.run(["nft", "list", "table", "ip", plane.table], capture_output=True,
                                     text=True).stdout
        finally:
            await plane.stop()
        return plane.kind, listing
    kind, listing = asyncio.run(main())
    assert kind == "nftables" and "stale" not in listing and "map routes" in listing
    assert nft.table_name(LISTEN) not in tables()


def test_asking_for_nft_where_it_cannot_run_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(nft, "unavailable", lambda: "not running as root")
    with pytest.raises(RuntimeError, match="the nftables data plane cannot run: not running as root"):
        asyncio.run(start_dataplane("nft", LISTEN))

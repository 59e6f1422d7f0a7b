"""The service-discovery DNS server on real sockets (127.0.0.211-219, ports 41000-41999), queried with dnspython."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import struct
import time

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from swarmctl.mesh.dns import DnsServer, Zone, upstreams_from_resolv_conf

HOST = "127.0.0.211"
SERVICES = [
    {"name": "web", "id": "svcweb123", "mode": "vip", "vip": "127.11.0.1",
     "tasks": [{"name": "web.1", "id": "t1", "ip": "127.0.0.12", "ports": [{"target": 80, "protocol": "tcp", "port": 20001}]},
               {"name": "web.2", "id": "t2", "ip": "127.0.0.13", "ports": [{"target": 80, "protocol": "tcp", "port": 20002}]},
               {"name": "web.3", "id": "t3", "ip": "127.0.0.13", "ports": [{"target": 80, "protocol": "tcp", "port": 20003}]}]},
    {"name": "db", "id": "svcdb456", "mode": "dnsrr", "vip": None,
     "tasks": [{"name": "db.1", "id": "t4", "ip": "127.0.0.14", "ports": []}]},
    {"name": "idle", "id": "svcidle", "mode": "vip", "vip": "127.11.0.3", "tasks": []},
]


def run_async(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))
    return wrapper


def ask(name, rdtype="A", port=41001, tcp=False, host=HOST):
    query = dns.message.make_query(name, rdtype)
    return (dns.query.tcp if tcp else dns.query.udp)(query, host, port=port, timeout=3)


def addresses(reply):
    return sorted(item.address for rrset in reply.answer for item in rrset if rrset.rdtype == dns.rdatatype.A)


async def serving(port=41001, upstreams=None, timeout=2.0, services=SERVICES, host=HOST):
    zone = Zone()
    zone.set(services)
    server = DnsServer(host, port, zone, upstreams, forward_timeout=timeout)
    await server.start()
    return server, zone


async def in_thread(fn, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


@run_async
async def test_service_task_and_srv_names():
    server, zone = await serving()
    try:
        assert addresses(await in_thread(ask, "web")) == ["127.11.0.1"]
        assert addresses(await in_thread(ask, "WEB.")) == ["127.11.0.1"]  # case and trailing dot
        assert addresses(await in_thread(ask, "svcweb123")) == ["127.11.0.1"]  # by id
        assert addresses(await in_thread(ask, "tasks.web")) == ["127.0.0.12", "127.0.0.13"]  # de-duplicated
        assert addresses(await in_thread(ask, "db")) == ["127.0.0.14"]  # dnsrr: the tasks themselves
        assert addresses(await in_thread(ask, "web.2")) == ["127.0.0.13"]
        assert addresses(await in_thread(ask, "web.2.t2")) == ["127.0.0.13"]
        reply = await in_thread(ask, "_80._tcp.web", "SRV")
        srv = sorted((r.port, str(r.target)) for rrset in reply.answer for r in rrset)
        assert srv == [(20001, "web.1.t1."), (20002, "web.2.t2."), (20003, "web.3.t3.")]
        assert sorted(str(rrset.name) for rrset in reply.additional) == ["web.1.t1.", "web.2.t2.", "web.3.t3."]
        empty = await in_thread(ask, "web", "AAAA")
        assert empty.rcode() == dns.rcode.NOERROR and not empty.answer
        idle = await in_thread(ask, "tasks.idle")
        assert idle.rcode() == dns.rcode.NOERROR and not idle.answer
        assert addresses(await in_thread(ask, "idle")) == ["127.11.0.3"]
        # the zone replaced: the next answer has it
        zone.set([dict(SERVICES[0], tasks=SERVICES[0]["tasks"][:1])])
        assert addresses(await in_thread(ask, "tasks.web")) == ["127.0.0.12"]
        assert (await in_thread(ask, "db")).rcode() == dns.rcode.REFUSED
    finally:
        await server.stop()


@run_async
async def test_tcp_with_two_queries_on_one_connection():
    server, _ = await serving(port=41002)
    try:
        def two():
            with socket.create_connection((HOST, 41002), timeout=3) as sock:
                out = []
                for name in ("web", "tasks.web"):
                    wire = dns.message.make_query(name, "A").to_wire()
                    sock.sendall(struct.pack("!H", len(wire)) + wire)
                    size = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
                    out.append(addresses(dns.message.from_wire(sock.recv(size, socket.MSG_WAITALL))))
                return out
        assert await in_thread(two) == [["127.11.0.1"], ["127.0.0.12", "127.0.0.13"]]
        assert addresses(await in_thread(ask, "web", port=41002, tcp=True)) == ["127.11.0.1"]
    finally:
        await server.stop()


@run_async
async def test_other_names_are_refused_at_once_without_upstreams_and_forwarded_with_one():
    server, _ = await serving(port=41003)
    upstream, _ = await serving(port=41004, host="127.0.0.212",
                                services=[{"name": "example", "id": "x", "mode": "vip", "vip": "127.9.9.9", "tasks": []}])
    forwarding, _ = await serving(port=41005, upstreams=["127.0.0.212#41004"])
    try:
        started = time.monotonic()
        assert (await in_thread(ask, "example", port=41003)).rcode() == dns.rcode.REFUSED
        assert time.monotonic() - started < 1
        assert addresses(await in_thread(ask, "example", port=41005)) == ["127.9.9.9"]
        assert addresses(await in_thread(ask, "example", port=41005, tcp=True)) == ["127.9.9.9"]
        assert addresses(await in_thread(ask, "web", port=41005)) == ["127.11.0.1"]  # ours: not forwarded
    finally:
        for s in (server, upstream, forwarding):
            await s.stop()


@run_async
async def test_a_silent_upstream_gives_servfail_within_the_timeout():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.213", 41006))  # receives, never answers
    server, _ = await serving(port=41007, upstreams=["127.0.0.213#41006"], timeout=0.5)
    try:
        started = time.monotonic()
        assert (await in_thread(ask, "example.org", port=41007)).rcode() == dns.rcode.SERVFAIL
        assert time.monotonic() - started < 2
    finally:
        await server.stop()
        silent.close()


@run_async
async def test_malformed_packets_are_dropped_and_the_server_still_answers():
    server, _ = await serving(port=41008)
    try:
        def junk():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for packet in (b"", b"\x00", os.urandom(7), b"\xff" * 40):
                    sock.sendto(packet, (HOST, 41008))
            with socket.create_connection((HOST, 41008), timeout=3) as sock:
                sock.sendall(struct.pack("!H", 5) + b"\x01\x02\x03\x04\x05")
        await in_thread(junk)
        assert addresses(await in_thread(ask, "web", port=41008)) == ["127.11.0.1"]
    finally:
        await server.stop()


@run_async
async def test_a_taken_address_is_a_clear_error():
    server, _ = await serving(port=41009)
    try:
        with pytest.raises(OSError, match="cannot serve DNS on 127.0.0.211:41009"):
            await serving(port=41009)
    finally:
        await server.stop()


def test_upstreams_from_resolv_conf(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example.org\nnameserver 10.0.0.2\nnameserver 127.0.0.11\noptions ndots:1\n")
    assert upstreams_from_resolv_conf(str(conf)) == ["10.0.0.2", "127.0.0.11"]
    assert upstreams_from_resolv_conf(str(conf), exclude={"127.0.0.11"}) == ["10.0.0.2"]
    assert upstreams_from_resolv_conf(str(tmp_path / "missing")) == []


@run_async
async def test_two_nodes_whose_resolvers_name_each_other_do_not_bounce_a_query():
    """Without the loop option, each forward waits for the other's, until the 2 s timeouts end in SERVFAIL."""
    a, _ = await serving(port=41010, upstreams=["127.0.0.213#41011"], host="127.0.0.212")
    b, _ = await serving(port=41011, upstreams=["127.0.0.212#41010"], host="127.0.0.213")
    try:
        for tcp in (False, True):
            started = time.monotonic()
            reply = await in_thread(ask, "nowhere.example", port=41010, host="127.0.0.212", tcp=tcp)
            assert reply.rcode() == dns.rcode.REFUSED and time.monotonic() - started < 1
        # names of the zone are answered as before
        assert addresses(await in_thread(ask, "web", port=41011, host="127.0.0.213")) == ["127.11.0.1"]
    finally:
        for s in (a, b):
            await s.stop()

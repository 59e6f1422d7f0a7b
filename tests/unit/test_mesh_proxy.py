"""The routing mesh's data plane (swarmctl/mesh/proxy.py) over real loopback sockets.

The proxy runs as its child process (ProxyProcess); backends are asyncio servers in the test's loop.
Addresses 127.0.0.201-209 only, ports 40000-40999; every test stops the servers and processes it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from swarmctl.mesh.proxy import ProxyProcess

pytestmark = pytest.mark.timeout(60)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LISTEN = "127.0.0.201"
BACKEND_HOSTS = ("127.0.0.202", "127.0.0.203", "127.0.0.204")


class Backends:
    """Backend servers; each answers a request line with its name (and, for b"peer", the client's address).
    b"hold" answers at once and keeps the connection until the client closes it; b"echo" echoes to EOF."""

    def __init__(self):
        self.servers: dict[str, asyncio.AbstractServer] = {}
        self.writers: set = set()

    async def start(self, port: int, hosts=BACKEND_HOSTS) -> list:
        for host in hosts:
            self.servers[host] = await asyncio.start_server(
                lambda r, w, host=host: self._handle(host, r, w), host, port, reuse_address=True)
        return [[host, port] for host in hosts]

    async def _handle(self, name, reader, writer):
        self.writers.add(writer)
        try:
            line = await reader.readline()
            if line.startswith(b"echo"):
                writer.write(name.encode() + b"\n")
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            elif line.startswith(b"hold"):
                writer.write(name.encode() + b"\n")
                await writer.drain()
                await reader.read()
            elif line.startswith(b"peer"):
                writer.write(writer.get_extra_info("peername")[0].encode() + b"\n")
            else:
                writer.write(name.encode() + b"\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    def stop(self, host: str) -> None:
        server = self.servers.pop(host, None)
        if server is not None:
            server.close()

    async def close(self) -> None:
        for host in list(self.servers):
            self.stop(host)
        for writer in list(self.writers):
            writer.close()
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def mesh():
    proxy = ProxyProcess()
    backends = Backends()
    await proxy.start()
    try:
        yield proxy, backends
    finally:
        await proxy.stop()
        await backends.close()


def tcp_route(port: int, backends, source=None) -> dict:
    return {"listen": [LISTEN, port], "proto": "tcp", "backends": backends, "source": source}


async def request(port: int, payload: bytes = b"get\n", host: str = LISTEN) -> str:
    """One request on a fresh connection: '' if the proxy closed it without an answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload)
        writer.write_eof()
        return (await asyncio.wait_for(reader.read(), 10)).decode().strip()
    except OSError:  # reset, or already shut down by the proxy
        return ""
    finally:
        writer.close()


def counts(answers) -> dict:
    out: dict = {}
    for answer in answers:
        out[answer] = out.get(answer, 0) + 1
    return out


def test_sequential_requests_spread_evenly_and_are_counted():
    async def main():
        async with mesh() as (proxy, backends):
            route = tcp_route(40010, await backends.start(40011))
            assert await proxy.set_routes([route]) == {}
            answers = [await request(40010) for _ in range(60)]
            return answers, await proxy.stats()
    answers, stats = asyncio.run(main())
    assert counts(answers) == {host: 20 for host in BACKEND_HOSTS}
    listener = stats[f"{LISTEN}:40010/tcp"]
    assert listener["listening"] and listener["proto"] == "tcp"
    assert (listener["total"], listener["active"], listener["failed"], listener["retried"]) == (60, 0, 0, 0)
    assert {b: s["total"] for b, s in listener["backends"].items()} == {f"{h}:40011": 20 for h in BACKEND_HOSTS}


def test_least_connections_a_held_connection_sends_the_next_ones_elsewhere():
    async def main():
        async with mesh() as (proxy, backends):
            await proxy.set_routes([tcp_route(40020, await backends.start(40021))])
            reader, writer = await asyncio.open_connection(LISTEN, 40020)
            writer.write(b"hold\n")
            held = (await reader.readline()).decode().strip()
            answers = [await request(40020) for _ in range(6)]
            stats = await proxy.stats()
            writer.close()
            return held, answers, stats
    held, answers, stats = asyncio.run(main())
    assert held in BACKEND_HOSTS and held not in answers
    assert counts(answers) == {host: 3 for host in BACKEND_HOSTS if host != held}
    listener = stats[f"{LISTEN}:40020/tcp"]
    assert listener["active"] == 1 and listener["backends"][f"{held}:40021"]["active"] == 1


def test_no_request_fails_while_a_backend_goes_down():
    async def main():
        async with mesh() as (proxy, backends):
            await proxy.set_routes([tcp_route(40030, await backends.start(40031))])
            answers = []
            for i in range(200):
                if i == 50:
                    backends.stop(BACKEND_HOSTS[1])  # connection refused from now on
                answers.append(await request(40030))
            return answers, await proxy.stats()
    answers, stats = asyncio.run(main())
    assert "" not in answers, "a request failed"
    by_backend = counts(answers)
    assert set(by_backend) == set(BACKEND_HOSTS) and by_backend[BACKEND_HOSTS[1]] <= 17
    listener = stats[f"{LISTEN}:40030/tcp"]
    assert listener["failed"] == 0 and listener["retried"] >= 1 and listener["total"] == 200
    assert listener["backends"][f"{BACKEND_HOSTS[1]}:40031"]["failed"] >= 1


def test_all_backends_down_or_none_closes_the_client():
    async def main():
        async with mesh() as (proxy, backends):
            down = [[host, 40041] for host in BACKEND_HOSTS]  # nothing listens there
            await proxy.set_routes([tcp_route(40040, down), tcp_route(40042, [])])
            started = time.monotonic()
            none = await request(40042)
            none_time = time.monotonic() - started
            dead = await request(40040)
            return none, none_time, dead, await proxy.stats()
    none, none_time, dead, stats = asyncio.run(main())
    assert none == "" and none_time < 1.0 and dead == ""
    assert stats[f"{LISTEN}:40042/tcp"]["failed"] == 1
    down = stats[f"{LISTEN}:40040/tcp"]
    assert down["failed"] == 1 and down["retried"] == 2 and down["active"] == 0
    assert all(b["failed"] == 1 and b["ejected"] for b in down["backends"].values())


def test_a_route_swap_or_removal_keeps_established_connections():
    async def main():
        async with mesh() as (proxy, backends):
            first = await backends.start(40051, hosts=BACKEND_HOSTS[:1])
            second = await backends.start(40052, hosts=BACKEND_HOSTS[1:2])
            await proxy.set_routes([tcp_route(40050, first)])
            reader, writer = await asyncio.open_connection(LISTEN, 40050)
            writer.write(b"echo\n")
            assert (await reader.readline()).strip().decode() == BACKEND_HOSTS[0]

            assert await proxy.set_routes([tcp_route(40050, second)]) == {}
            writer.write(b"after swap\n")
            assert await reader.readline() == b"after swap\n"
            swapped = await request(40050)

            assert await proxy.set_routes([]) == {}
            writer.write(b"after removal\n")
            assert await reader.readline() == b"after removal\n"
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(LISTEN, 40050)
            writer.write_eof()  # half-close: the backend sees EOF, ends, and the client sees EOF
            rest = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return swapped, rest
    swapped, rest = asyncio.run(main())
    assert swapped == BACKEND_HOSTS[1] and rest == b""


def test_listener_removal_frees_the_port_and_a_bind_error_is_reported_then_retried():
    async def main():
        async with mesh() as (proxy, backends):
            route = tcp_route(40060, await backends.start(40061))
            await proxy.set_routes([route])
            assert await request(40060) in BACKEND_HOSTS
            await proxy.set_routes([])
            sock = socket.socket()
            sock.bind((LISTEN, 40060))  # free again (no SO_REUSEADDR: a listener would be in the way)
            sock.listen()
            try:
                errors = await proxy.set_routes([route])
                pending = (await proxy.stats())[f"{LISTEN}:40060/tcp"]["listening"]
            finally:
                sock.close()
            retried = await proxy.set_routes([route])
            return errors, pending, retried, await request(40060)
    errors, pending, retried, answer = asyncio.run(main())
    assert errors == {f"{LISTEN}:40060/tcp": "address already in use"} and pending is False
    assert retried == {} and answer in BACKEND_HOSTS


def test_a_source_address_is_used_for_backend_connections():
    async def main():
        async with mesh() as (proxy, backends):
            await proxy.set_routes([tcp_route(40070, await backends.start(40071, hosts=BACKEND_HOSTS[:1]),
                                              source="127.0.0.205")])
            return await request(40070, b"peer\n")
    assert asyncio.run(main()) == "127.0.0.205"


def test_a_large_transfer_with_half_close():
    async def main():
        async with mesh() as (proxy, backends):
            await proxy.set_routes([tcp_route(40080, await backends.start(40081, hosts=BACKEND_HOSTS[:1]))])
            reader, writer = await asyncio.open_connection(LISTEN, 40080)
            payload = os.urandom(1 << 20) * 8
            writer.write(b"echo\n")

            async def send():
                writer.write(payload)
                await writer.drain()
                writer.write_eof()
            sender = asyncio.create_task(send())
            data = await asyncio.wait_for(reader.read(-1), 20)
            await sender
            writer.close()
            return data == BACKEND_HOSTS[0].encode() + b"\n" + payload
    assert asyncio.run(main())


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class _Client(asyncio.DatagramProtocol):
    def __init__(self):
        self.replies: asyncio.Queue = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.replies.put_nowait((data, addr))


def test_udp_echo_through_the_proxy():
    async def main():
        loop = asyncio.get_running_loop()
        echo, _ = await loop.create_datagram_endpoint(_Echo, local_addr=(BACKEND_HOSTS[0], 40091))
        clients = []
        try:
            async with mesh() as (proxy, _backends):
                route = {"listen": [LISTEN, 40090], "proto": "udp", "backends": [[BACKEND_HOSTS[0], 40091]],
                         "source": None}
                assert await proxy.set_routes([route]) == {}
                got = []
                for payload in (b"one", b"x" * 60000, b"three"):
                    transport, client = await loop.create_datagram_endpoint(
                        _Client, local_addr=("127.0.0.206", 0), remote_addr=(LISTEN, 40090))
                    clients.append(transport)
                    transport.sendto(payload)
                    transport.sendto(payload)
                    for _ in range(2):
                        got.append(await asyncio.wait_for(client.replies.get(), 5))
                    got[-1] = (got[-1][0] == payload, got[-1][1])
                    got[-2] = (got[-2][0] == payload, got[-2][1])
                return got, await proxy.stats()
        finally:
            for transport in clients:
                transport.close()
            echo.close()
    got, stats = asyncio.run(main())
    assert all(ok and addr == (LISTEN, 40090) for ok, addr in got)
    listener = stats[f"{LISTEN}:40090/udp"]
    assert listener["total"] == 3 and listener["active"] == 3 and listener["datagrams"] == 12


def test_the_child_exits_on_stdin_eof_and_closes_its_listeners():
    env = dict(os.environ, PYTHONPATH=REPO)
    child = subprocess.Popen([sys.executable, "-m", "swarmctl.mesh.proxy"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env)
    try:
        assert json.loads(child.stdout.readline())["event"] == "ready"
        child.stdin.write(json.dumps({"op": "routes", "id": 1, "routes": [tcp_route(40100, [])]}).encode() + b"\n")
        child.stdin.flush()
        reply = json.loads(child.stdout.readline())
        assert reply == {"op": "routes", "ok": True, "id": 1, "errors": {}}
        with socket.create_connection((LISTEN, 40100), timeout=2):
            pass
        child.stdin.close()
        assert child.wait(timeout=5) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((LISTEN, 40100), timeout=2)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_handle_stops_its_child_and_restarts_a_dead_one():
    async def main():
        async with mesh() as (proxy, backends):
            route = tcp_route(40110, await backends.start(40111))
            await proxy.set_routes([route])
            first = proxy.pid
            os.kill(first, signal.SIGKILL)
            for _ in range(100):
                if not proxy.running:
                    break
                await asyncio.sleep(0.02)
            assert not proxy.running and await proxy.stats() == {}
            assert await proxy.set_routes([route]) == {}
            second = proxy.pid
            answer = await request(40110)
            await proxy.stop()
            return first, second, answer, proxy.running
    first, second, answer, running = asyncio.run(main())
    assert first != second and answer in BACKEND_HOSTS and not running
    assert not _alive(first) and not _alive(second)


def test_a_backend_that_closes_before_answering_is_replaced_and_the_request_replayed():
    """A task killed with connections in its accept queue or mid-request: the kernel accepted the connection,
    the process never answers. The proxy sends what the client sent to another backend."""
    async def main():
        async with mesh() as (proxy, backends):
            good = await backends.start(40071, hosts=("127.0.0.202", "127.0.0.203"))

            async def dying(reader, writer):  # reads the request, closes without a byte
                await reader.read(10)
                writer.transport.abort()
            bad = await asyncio.start_server(dying, "127.0.0.204", 40071, reuse_address=True)
            try:
                await proxy.set_routes([tcp_route(40070, good + [["127.0.0.204", 40071]])])
                answers = [await request(40070, b"get " + b"x" * 5000 + b"\n") for _ in range(30)]
                assert "" not in answers, counts(answers)
                assert set(answers) == {"127.0.0.202", "127.0.0.203"}
                stats = (await proxy.stats())[f"{LISTEN}:40070/tcp"]
                assert stats["failed"] == 0 and stats["retried"] >= 1
            finally:
                bad.close()
    asyncio.run(main())

"""Service discovery by name: the DNS server every node runs on its advertise address (port 53 by default).

Docker Swarm's embedded DNS, adapted to a cluster whose tasks share the host's network (see docs/design.md):
- `<service>` (or its id) A: the service's virtual IP on this node (mode vip), else its running tasks' addresses;
- `tasks.<service>` A: the addresses of its running tasks;
- a stack's service (`<stack>_<short>`, labelled com.docker.stack.namespace=<stack>) also as `<short>.<stack>` and
  `tasks.<short>.<stack>`: its tasks have the search domain `<stack>`, so `nslookup <short>` finds it from them;
- `<task name>` (web.1) and `<task name>.<task id>` A: that task's address;
- SRV `_<target>._<proto>.<service>`: one record per task with its real host port, the targets' A records in
  the additional section;
- another type for a known name: an empty NOERROR answer; a name of no service: forwarded to the upstream
  resolvers (/etc/resolv.conf), REFUSED at once when there are none, SERVFAIL when they all fail.
Names are case-insensitive, with or without the trailing dot. Answers have a TTL of 1 s: they follow tasks.

No forwarding loops: a query this server forwards carries an EDNS0 option of its own (LOOP_OPTION, from the
local/experimental range of RFC 6891, which other resolvers ignore). A swarmctl DNS server that receives such a
query for a name it does not know answers REFUSED instead of forwarding it again, so two nodes whose
resolv.conf name each other cannot bounce a query between them.

dnslib does the wire format; the server is a small asyncio one (UDP and TCP with 2-byte framing) on the
daemon's loop, because dnslib's own server runs threads per socket and cannot share the zone without locks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct

from dnslib import EDNS0, QTYPE, RCODE, RR, SRV, A, DNSLabel, DNSRecord, EDNSOption

log = logging.getLogger(__name__)

TTL = 1
LOOP_OPTION = 65430  # EDNS0 option code set on the queries this server forwards (see the module docstring)
LOOP_DATA = b"swarmctl"
TCP_IDLE = 10.0
MAX_TCP_CLIENTS = 256


def _key(name) -> str:
    return str(name).rstrip(".").lower()


class Zone:
    """What this node knows about the cluster's services; replaced as a whole on every endpoint change.
    Each service: {"name", "id", "mode": "vip"|"dnsrr", "vip", "tasks": [{"name", "id", "ip", "ports": [{"target",
    "protocol", "port"}]}], and "stack" for a stack's service}."""

    def __init__(self):
        self.addresses: dict[str, list[str]] = {}   # name -> A answers
        self.rotate: set[str] = set()               # names whose answers are shuffled (dnsrr, tasks.)
        self.srv: dict[str, list[tuple[str, int, str]]] = {}  # _80._tcp.web -> [(target name, port, ip)]

    def set(self, services: list[dict]) -> None:
        addresses: dict[str, list[str]] = {}
        rotate: set[str] = set()
        srv: dict[str, list] = {}
        for service in services:
            tasks = [t for t in service.get("tasks") or [] if t.get("ip")]
            ips = list(dict.fromkeys(t["ip"] for t in tasks))
            names = [_key(service["name"]), _key(service["id"])]
            stack = service.get("stack")
            if stack and _key(service["name"]).startswith(_key(stack) + "_"):
                names.append(f"{_key(service['name'])[len(stack) + 1:]}.{_key(stack)}")
            for name in names:
                if service.get("mode") == "vip" and service.get("vip"):
                    addresses[name] = [service["vip"]]
                else:
                    addresses[name] = ips
                    rotate.add(name)
                addresses[f"tasks.{name}"] = ips
                rotate.add(f"tasks.{name}")
            for task in tasks:
                addresses[_key(task["name"])] = [task["ip"]]
                full = _key(f"{task['name']}.{task['id']}")
                addresses[full] = [task["ip"]]
                for port in task.get("ports") or []:
                    key = f"_{port['target']}._{port['protocol']}.{_key(service['name'])}"
                    srv.setdefault(key, []).append((full + ".", port["port"], task["ip"]))
        self.addresses, self.rotate, self.srv = addresses, rotate, srv

    def known(self, name: str) -> bool:
        return name in self.addresses or name in self.srv

    def answer(self, request: DNSRecord) -> DNSRecord | None:
        """The reply for a name of this cluster, or None when the name is not ours."""
        question = request.q
        name = _key(question.qname)
        if not self.known(name):
            return None
        reply = request.reply()
        qtype = QTYPE[question.qtype]
        if qtype in ("A", "ANY") and name in self.addresses:
            ips = list(self.addresses[name])
            if name in self.rotate and len(ips) > 1:
                random.shuffle(ips)
            for ip in ips:
                reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(ip), ttl=TTL))
        elif qtype in ("SRV", "ANY") and name in self.srv:
            for target, port, ip in self.srv[name]:
                reply.add_answer(RR(question.qname, QTYPE.SRV, rdata=SRV(0, 10, port, DNSLabel(target)), ttl=TTL))
                reply.add_ar(RR(target, QTYPE.A, rdata=A(ip), ttl=TTL))
        return reply  # AAAA and other types of a known name: NOERROR, no answers


def upstreams_from_resolv_conf(path: str = "/etc/resolv.conf", exclude: set[str] | frozenset = frozenset()) -> list[str]:
    """The nameservers of resolv.conf, without those in `exclude` (this server's own address)."""
    servers = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver" and parts[1] not in exclude:
                    servers.append(parts[1])
    except OSError:
        return []
    return servers


def _forwarded(request: DNSRecord) -> bool:
    """Whether another swarmctl DNS server forwarded this query (it carries LOOP_OPTION)."""
    return any(rr.rtype == QTYPE.OPT and any(getattr(o, "code", None) == LOOP_OPTION for o in rr.rdata)
               for rr in request.ar)


def _mark_forwarded(request: DNSRecord) -> bytes:
    """The query as forwarded: with LOOP_OPTION in its OPT record (one is added when it has none)."""
    opt = next((rr for rr in request.ar if rr.rtype == QTYPE.OPT), None)
    if opt is None:
        request.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(LOOP_OPTION, LOOP_DATA)]))
    else:
        opt.rdata.append(EDNSOption(LOOP_OPTION, LOOP_DATA))
    return request.pack()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: "DnsServer"):
        self.server = server
        self.transport = None
        self._pending: set[asyncio.Task] = set()  # referenced until done (the loop keeps only weak references)

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        task = asyncio.ensure_future(self._answer(data, addr))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _answer(self, data, addr):
        reply = await self.server.resolve(data, tcp=False)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


class DnsServer:
    def __init__(self, host: str, port: int, zone: Zone, upstreams: list[str] | None = None,
                 forward_timeout: float = 2.0):
        self.host, self.port, self.zone = host, port, zone
        self.upstreams = list(upstreams or [])
        self.forward_timeout = forward_timeout
        self._udp = None
        self._tcp = None
        self._clients: set[asyncio.Task] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(self.host, self.port))
            self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port, reuse_address=True)
        except OSError as exc:
            await self.stop()
            raise OSError(exc.errno, f"cannot serve DNS on {self.host}:{self.port}: {exc.strerror}") from None

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._clients):
                task.cancel()
            await self._tcp.wait_closed()
            self._tcp = None

    async def resolve(self, data: bytes, tcp: bool) -> bytes | None:
        """The reply to one query (wire format), or None to drop a packet that is not a query."""
        try:
            request = DNSRecord.parse(data)
        except Exception:
            log.debug("dropping a malformed DNS packet (%d bytes)", len(data))
            return None
        if request.header.qr or not request.questions:
            return None
        try:
            reply = self.zone.answer(request)
        except Exception:
            log.exception("answering %s failed", request.q.qname)
            reply = None
        if reply is not None:
            return reply.pack()
        if not self.upstreams or _forwarded(request):
            failed = request.reply()
            failed.header.rcode = RCODE.REFUSED
            return failed.pack()
        data = _mark_forwarded(request)
        for upstream in self.upstreams:
            try:
                return await self._forward(data, upstream, tcp)
            except (OSError, asyncio.TimeoutError) as exc:
                log.debug("upstream %s failed: %s", upstream, exc)
        failed = request.reply()
        failed.header.rcode = RCODE.SERVFAIL
        return failed.pack()

    async def _forward(self, data: bytes, upstream: str, tcp: bool) -> bytes:
        host, _, port = upstream.partition("#")
        port_n = int(port) if port else 53
        loop = asyncio.get_running_loop()
        if tcp:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port_n), self.forward_timeout)
            try:
                writer.write(struct.pack("!H", len(data)) + data)
                await writer.drain()
                size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), self.forward_timeout))[0]
                return await asyncio.wait_for(reader.readexactly(size), self.forward_timeout)
            finally:
                writer.close()
        future = loop.create_future()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, reply, _addr):
                if not future.done():
                    future.set_result(reply)

            def error_received(self, exc):
                if not future.done():
                    future.set_exception(exc)

        transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(host, port_n))
        try:
            transport.sendto(data)
            return await asyncio.wait_for(future, self.forward_timeout)
        finally:
            transport.close()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._clients) >= MAX_TCP_CLIENTS:
            writer.close()
            return
        self._clients.add(task)
        try:
            while True:
                try:
                    size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TCP_IDLE))[0]
                    data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                reply = await self.resolve(data, tcp=True)
                if reply is None:
                    return
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.debug("DNS over TCP: connection failed", exc_info=True)
        finally:
            self._clients.discard(task)
            writer.close()

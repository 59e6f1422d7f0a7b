"""One swarmctl node: its identity, its role, and the parts that run for that role.

A node is in one of three shapes: not in a swarm (only the local API), a worker (session to a
manager), or a manager (Raft replica, manager components, session to itself). init, join, leave,
promotion and demotion move it between them; the data dir keeps the shape across restarts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import stat

from swarmctl import __version__
from swarmctl.agent.session import Session
from swarmctl.agent.worker import Worker
from swarmctl.api.peer import PeerClient, PeerUnreachable
from swarmctl.api.server import APIServer
from swarmctl.errors import (ALREADY_IN_SWARM_MESSAGE, APIError, BadRequest, Conflict, Forbidden,
                             NotInSwarm, PreconditionFailed, Unavailable)
from swarmctl.manager.ca import create_root_ca, sign_node_certificate
from swarmctl.manager.manager import Manager
from swarmctl.node.certrenewal import CertRenewer
from swarmctl.node.config import Addresses, ConfigError, DaemonConfig, parse_host_port
from swarmctl.node.datadir import DataDir, DataDirError
from swarmctl.security import tls
from swarmctl.security.certs import generate_key, load_certificate, make_csr
from swarmctl.security.tokens import TokenError, ca_digest, new_secret, parse_token
from swarmctl.state.journal import StorageError
from swarmctl.state.raft import RaftStore
from swarmctl.state.records import new_cluster, new_id, new_node

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The daemon cannot start; the message says why."""


def _bind(addr: Addresses) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in addr.listen_host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((addr.listen_host, addr.listen_port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {addr.listen}: {exc.strerror or exc}") from None
    return sock


def _check_port_free(host: str, port: int, what: str) -> None:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise StartupError(f"cannot use {what} {host}:{port}: {exc.strerror or exc}") from None
    finally:
        sock.close()


class Node:
    def __init__(self, config: DaemonConfig):
        self.config = config
        self.data = DataDir(config.data_dir)
        self.identity: dict = {}
        self.addrs: Addresses | None = None
        self.store: RaftStore | None = None
        self.manager: Manager | None = None
        self.session: Session | None = None
        self.worker: Worker | None = None
        self.peer: PeerClient | None = None
        self._client_ctx = None  # the TLS contexts in use, reloaded in place when the certificate is renewed
        self._server_ctx = None
        self._cert_renewer: CertRenewer | None = None
        self._cert_summary: dict = {}
        self.api = APIServer(self)
        self._listen_sock: socket.socket | None = None
        self._role_change: asyncio.Task | None = None
        self._members_saver: asyncio.Task | None = None
        self._busy = asyncio.Lock()
        self._socket_owned = False
        self.stopping = False  # set when the daemon shuts down: the API then says so instead of "not a manager"

    # ---- identity shortcuts ------------------------------------------------------------------
    @property
    def node_id(self) -> str | None:
        return self.identity.get("node_id")

    @property
    def cluster_id(self) -> str | None:
        return self.identity.get("cluster_id")

    @property
    def role(self) -> str | None:
        return self.identity.get("role")

    # ---- start / stop ------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            self.identity = self.data.open()
        except DataDirError as exc:
            raise StartupError(str(exc)) from None
        try:
            if self.identity:
                self.addrs = Addresses(self.identity["advertise_addr"], self.identity["listen_host"],
                                       self.identity["listen_port"])
            elif self.config.advertise_addr or self.config.listen_addr:
                self.addrs = Addresses.resolve(self.config.advertise_addr, self.config.listen_addr)
        except (ConfigError, KeyError) as exc:
            raise StartupError(f"data dir {self.data.path} is corrupt or settings invalid: {exc}") from None
        if self.addrs is not None:
            self._listen_sock = _bind(self.addrs)
            _check_port_free(self.addrs.advertise, self.addrs.listen_port + 1, "the Raft address")
        self._claim_socket()
        if self.identity:
            await self._activate()
        await self._open_socket()  # only now: until activation, a manager would answer "not a manager"

    def _claim_socket(self) -> None:
        path = self.config.socket
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if os.path.exists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale socket of a daemon that died
            else:
                raise StartupError(f"socket {path} is in use by another swarmctl daemon")
            finally:
                probe.close()

    async def _open_socket(self) -> None:
        path = self.config.socket
        await self.api.start_unix(path)
        self._socket_owned = True
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP)

    async def stop(self) -> None:
        self.stopping = True
        await self._deactivate()
        await self.api.stop()
        if self._listen_sock is not None:
            self._listen_sock.close()
        if self._socket_owned:
            try:
                os.unlink(self.config.socket)
            except OSError:
                pass
        self.data.close()

    async def _activate(self) -> None:
        """Run the parts that this node's stored role needs."""
        self._make_peer()
        if self.role == "manager":
            raft = self.data.load_raft()
            if self.store is None:
                self._start_store(raft["secret"], raft["members"])
            self.manager = Manager(self.store, self.config.heartbeat_period)
            await self.manager.start()
            self._members_saver = asyncio.create_task(self._save_members(raft["secret"]))
        await self._start_tls()
        managers = self.identity.get("managers") or []
        if self.role == "manager":
            managers = [self.addrs.manager] + [m for m in managers if m != self.addrs.manager]
        self.session = Session(lambda: self.peer, managers, self.config.heartbeat_period, self._describe,
                               self._on_heartbeat_answer, self._on_removed)
        self.session.start()
        self.worker = Worker(self.node_id, self._make_runtime, self.session.call)
        self.worker.start()
        self._cert_renewer = CertRenewer(self._read_cert, self._renew_own_certificate)
        self._cert_renewer.start()

    async def _deactivate(self) -> None:
        if self._cert_renewer is not None:
            await self._cert_renewer.stop()
            self._cert_renewer = None
        for task in (self._role_change, self._members_saver):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self._members_saver = None
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None
        if self.session is not None:
            await self.session.stop()
            self.session = None
        await self._stop_manager()
        await self.api.stop_tls()
        if self.peer is not None:
            await self.peer.close()
            self.peer = None

    async def _stop_manager(self) -> None:
        if self.manager is not None:
            await self.manager.stop()
            self.manager = None
        if self.store is not None:
            store, self.store = self.store, None
            await asyncio.get_running_loop().run_in_executor(None, store.destroy)
            await asyncio.sleep(0.2)  # let pysyncobj's thread close its sockets

    def _start_store(self, secret: str, members: list[str], machine=None) -> None:
        try:
            self.store = RaftStore(self.addrs.raft, members, secret, self.data.raft_dir, machine=machine)
        except StorageError as exc:  # damaged journal or snapshot: refuse to start, naming the file
            raise StartupError(str(exc)) from None

    async def _save_members(self, secret: str) -> None:
        """Keep raft/members.json current, so a restart starts with today's membership."""
        saved = None
        while self.store is not None:
            members = self.store.members()
            if members != saved:
                self.data.save_raft(secret, members)
                saved = members
            await asyncio.sleep(1.0)

    def _make_runtime(self):
        from swarmctl.runtime import make_runtime  # the Docker SDK loads only once tasks arrive
        return make_runtime(self.config.docker_host)

    def _make_peer(self) -> None:
        self._client_ctx = tls.client_context(self.data.ca_file, self.data.cert_file, self.data.key_file)
        self.peer = PeerClient(self._client_ctx)

    async def _start_tls(self) -> None:
        if self._listen_sock is None or self._listen_sock.fileno() < 0:
            self._listen_sock = _bind(self.addrs)
        self._server_ctx = tls.server_context(self.data.cert_file, self.data.key_file, self.data.ca_file)
        await self.api.start_tls(self._listen_sock, self._server_ctx)
        self._listen_sock = None  # the site owns it now and closes it on stop

    # ---- leader lookups ----------------------------------------------------------------------
    def leader_manager_addr(self) -> str | None:
        if self.store is None:
            return None
        leader = self.store.leader()
        if leader is None:
            return None
        # Raft always listens on the management port + 1 of the same address (config.Addresses),
        # so the leader's API address follows from its Raft address without a scan of the nodes.
        host, port = parse_host_port(leader)
        return f"{host}:{port - 1}"

    # ---- info --------------------------------------------------------------------------------
    def info(self) -> dict:
        info = {
            "version": __version__,
            "node_id": self.node_id, "cluster_id": self.cluster_id, "role": self.role,
            "local_node_state": "active" if self.identity else "inactive",
            "hostname": self.config.hostname,
            "addr": self.addrs.advertise if self.addrs else None,
            "manager_addr": self.addrs.manager if self.addrs else None,
            "raft_addr": self.addrs.raft if self.addrs and self.role == "manager" else None,
            "managers": self.session.managers if self.session else self.identity.get("managers", []),
            "is_manager": self.manager is not None,
        }
        if self.store is not None:
            info["raft"] = {"leader": self.store.leader(), "is_leader": self.store.is_leader(),
                            "members": self.store.members()}
        return info

    def _describe(self) -> dict:
        info = {"hostname": self.config.hostname, "addr": self.addrs.advertise,
                "heartbeat_period": self.config.heartbeat_period}
        if self._cert_summary:
            info["tls"] = {"serial": self._cert_summary["serial"], "not_after": self._cert_summary["not_after"]}
        return info

    # ---- init --------------------------------------------------------------------------------
    def _adopt_addresses(self, advertise: str | None, listen: str | None) -> None:
        try:
            addrs = Addresses.resolve(advertise or self.config.advertise_addr or (self.addrs and self.addrs.advertise),
                                      listen or self.config.listen_addr)
        except ConfigError as exc:
            raise BadRequest(str(exc)) from None
        if addrs != self.addrs or self._listen_sock is None:
            if self._listen_sock is not None:
                self._listen_sock.close()
                self._listen_sock = None
            try:
                self._listen_sock = _bind(addrs)
                _check_port_free(addrs.advertise, addrs.listen_port + 1, "the Raft address")
            except StartupError as exc:
                raise Conflict(str(exc)) from None
        self.addrs = addrs

    async def init(self, advertise: str | None, listen: str | None, force_new_cluster: bool) -> dict:
        async with self._busy:
            if self.identity:
                if force_new_cluster and self.role == "manager":
                    return await self._force_new_cluster()
                raise Conflict(ALREADY_IN_SWARM_MESSAGE)
            self._adopt_addresses(advertise, listen)
            cluster_id, node_id = new_id(), new_id()
            ca_cert, ca_key = create_root_ca(cluster_id)
            key = generate_key()
            cert = sign_node_certificate(ca_cert, ca_key, make_csr(key), node_id, "manager", cluster_id)
            raft_secret = secrets.token_urlsafe(32)
            self.data.save_certs(ca_cert, cert, key)
            self.data.clear_raft()
            self.data.save_raft(raft_secret, [self.addrs.raft])
            self._start_store(raft_secret, [self.addrs.raft])
            if not await self._wait_leader(10.0):
                raise Unavailable("the new Raft cluster did not elect itself leader")
            cluster = new_cluster(cluster_id, ca_cert=ca_cert.decode(), ca_key=ca_key.decode(),
                                  ca_digest=ca_digest(ca_cert), worker_secret=new_secret(),
                                  manager_secret=new_secret(), raft_secret=raft_secret,
                                  heartbeat_period=self.config.heartbeat_period)
            node = new_node(node_id, "manager", self.config.hostname, self.addrs.advertise,
                            engine_labels=self.config.labels, resources=self.config.resources,
                            manager_addr=self.addrs.manager, raft_addr=self.addrs.raft)
            node["description"]["heartbeat_period"] = self.config.heartbeat_period
            result = await self.store.write([
                {"op": "create", "kind": "cluster", "id": cluster_id, "record": cluster},
                {"op": "create", "kind": "node", "id": node_id, "record": node}])
            if not result["ok"]:
                raise Conflict(result["error"])
            self._save_identity(node_id, cluster_id, "manager", [self.addrs.manager])
            await self._activate()
            await self._first_heartbeat()
            return {"node_id": node_id, "cluster_id": cluster_id}

    async def _first_heartbeat(self, timeout: float = 5.0) -> None:
        """Return from init/join once a manager has seen this node, so it is Ready for scheduling."""
        try:
            await asyncio.wait_for(self.session.answered.wait(), timeout)
        except asyncio.TimeoutError:
            log.warning("no manager answered a heartbeat within %.0f s of joining", timeout)

    async def _wait_leader(self, timeout: float) -> bool:
        for _ in range(int(timeout / 0.05)):
            if self.store.is_leader():
                return True
            await asyncio.sleep(0.05)
        return False

    def _save_identity(self, node_id: str, cluster_id: str, role: str, managers: list[str]) -> None:
        self.identity = {"node_id": node_id, "cluster_id": cluster_id, "role": role, "managers": managers,
                         "advertise_addr": self.addrs.advertise, "listen_host": self.addrs.listen_host,
                         "listen_port": self.addrs.listen_port}
        self.data.save_identity(self.identity)

    async def _force_new_cluster(self) -> dict:
        """Restart Raft as a one-member cluster carrying the current state (docs/operations.md)."""
        snapshot = self.store.snapshot()
        await self._deactivate()
        records = []
        secret = secrets.token_urlsafe(32)  # old managers that come back cannot talk to the new cluster
        for kind, items in snapshot["data"].items():
            for record in items.values():
                if kind == "cluster":
                    record = dict(record, raft_secret=secret)
                if kind == "node" and record["spec"]["role"] == "manager" and record["id"] != self.node_id:
                    record = dict(record, spec=dict(record["spec"], role="worker"), manager_status=None,
                                  status=dict(record["status"], state="down", message="removed by force-new-cluster"))
                records.append({"op": "load", "kind": kind, "id": record["id"], "record": record})
        self.data.clear_raft()
        self.data.save_raft(secret, [self.addrs.raft])
        self._start_store(secret, [self.addrs.raft])
        if not await self._wait_leader(10.0):
            raise Unavailable("the new Raft cluster did not elect itself leader")
        result = await self.store.write(records, timeout=10.0)
        if not result["ok"]:
            raise Conflict(result["error"])
        self._save_identity(self.node_id, self.cluster_id, "manager", [self.addrs.manager])
        await self._activate()
        return {"node_id": self.node_id, "cluster_id": self.cluster_id}

    # ---- join --------------------------------------------------------------------------------
    async def join(self, token: str, remote: str, advertise: str | None, listen: str | None) -> dict:
        async with self._busy:
            if self.identity:
                raise Conflict(ALREADY_IN_SWARM_MESSAGE)
            try:
                parsed = parse_token(token)
                host, port = parse_host_port(remote, "manager address")
            except (TokenError, ConfigError) as exc:
                raise BadRequest(str(exc)) from None
            remote = f"{host}:{port}"
            self._adopt_addresses(advertise, listen)
            bootstrap = PeerClient(tls.unverified_context(), timeout=5.0)
            try:
                ca_pem = (await bootstrap.call(remote, "GET", "/v1/ca"))["ca"]
            except PeerUnreachable as exc:
                raise Unavailable(f"could not connect to the manager at {remote}: {exc}") from None
            finally:
                await bootstrap.close()
            if ca_digest(ca_pem) != parsed.digest:
                raise Forbidden(f"the manager at {remote} presented a root CA that does not match the fingerprint "
                                "in the join token; refusing to join")
            ca_file = self.data.file("certs", "join-ca.pem")
            os.makedirs(os.path.dirname(ca_file), exist_ok=True)
            with open(ca_file, "w") as f:
                f.write(ca_pem)
            key = generate_key()
            joiner = PeerClient(tls.client_context(ca_file), timeout=10.0)
            try:
                answer = await joiner.call(remote, "POST", "/v1/join", {
                    "token": token.strip(), "csr": make_csr(key).decode(), "hostname": self.config.hostname,
                    "addr": self.addrs.advertise, "manager_addr": self.addrs.manager, "raft_addr": self.addrs.raft,
                    "engine_labels": self.config.labels, "resources": self.config.resources,
                    "heartbeat_period": self.config.heartbeat_period})
            except PeerUnreachable as exc:
                raise Unavailable(f"could not connect to the manager at {remote}: {exc}") from None
            finally:
                await joiner.close()
                os.unlink(ca_file)
            self.data.save_certs(answer["ca"].encode(), answer["certificate"].encode(), key)
            managers = answer.get("managers") or [remote]
            if answer["role"] == "manager":
                self._make_peer()
                try:
                    raft = await self._raft_join(managers if remote in managers else [remote] + managers)
                finally:
                    await self.peer.close()
                    self.peer = None
                self.data.clear_raft()
                self.data.save_raft(raft["secret"], raft["members"])
            self._save_identity(answer["node_id"], answer["cluster_id"], answer["role"], managers)
            await self._activate()
            await self._first_heartbeat()
            return {"node_id": self.node_id, "role": self.role}

    async def _raft_join(self, managers: list[str]) -> dict:
        last: Exception | None = None
        for _ in range(3):
            for addr in managers:
                try:
                    return await self.peer.call(addr, "POST", "/v1/raft/join", {}, timeout=10.0)
                except (PeerUnreachable, APIError) as exc:
                    last = exc
            await asyncio.sleep(0.3)
        raise Unavailable(f"could not become a Raft member: {last}")

    # ---- leave -------------------------------------------------------------------------------
    async def leave(self, force: bool) -> dict:
        async with self._busy:
            if not self.identity:
                raise NotInSwarm()
            if self.role == "manager":
                if not force:
                    managers = len(self.store.members()) if self.store else 1
                    raise PreconditionFailed(
                        "You are attempting to leave the swarm on a node that is participating as a manager "
                        f"({managers} managers in the swarm). Removing this node could lose quorum, and removing "
                        "the last manager erases all current state of the swarm. Use `--force` to ignore this message.")
                if self.store is not None and len(self.store.members()) > 1:
                    try:
                        await self.peer.call(self.addrs.manager, "POST", "/v1/raft/leave", {}, timeout=6.0)
                    except (PeerUnreachable, APIError) as exc:
                        log.warning("could not leave Raft cleanly: %s", exc)
            await self._forget_swarm()
            return {}

    async def _forget_swarm(self) -> None:
        await self._deactivate()
        self.data.clear_all()
        self.identity = {}

    async def _on_removed(self, message: str) -> None:
        log.warning("this node was removed from the swarm: %s", message)
        async with self._busy:
            await self._forget_swarm()

    # ---- role changes ------------------------------------------------------------------------
    async def _on_heartbeat_answer(self, answer: dict) -> None:
        managers = answer.get("managers")
        if managers and managers != self.identity.get("managers"):
            self.identity["managers"] = managers
            self.data.save_identity(self.identity)
        wanted = answer["node"]["spec"]["role"]
        if wanted != self.role and (self._role_change is None or self._role_change.done()):
            self._role_change = asyncio.create_task(self._change_role(wanted))

    async def _change_role(self, wanted: str) -> None:
        async with self._busy:
            try:
                if wanted == "manager":
                    await self._become_manager()
                else:
                    await self._become_worker()
            except Exception as exc:
                log.warning("changing role to %s failed (will retry): %s", wanted, exc)

    def _read_cert(self) -> bytes:
        cert = self.data.read(self.data.cert_file)
        if self._cert_summary.get("pem") != cert:
            parsed = load_certificate(cert)
            self._cert_summary = {"pem": cert, "serial": format(parsed.serial_number, "x"),
                                  "not_after": parsed.not_valid_after_utc.isoformat(timespec="seconds")}
        return cert

    async def _renew_own_certificate(self) -> None:
        """Renew this node's certificate before it expires (certrenewal) and load it into the TLS
        contexts in use: new connections present it, open ones carry on."""
        async with self._busy:
            if self.session is None:
                return
            await self._renew_certificate(self.session.managers)
            for ctx in (self._client_ctx, self._server_ctx):
                if ctx is not None:
                    ctx.load_cert_chain(self.data.cert_file, self.data.key_file)
            self._read_cert()
            log.info("node certificate renewed: serial %s, valid until %s",
                     self._cert_summary["serial"], self._cert_summary["not_after"])

    async def _renew_certificate(self, managers: list[str]) -> None:
        key = generate_key()
        last: Exception | None = None
        for addr in managers:
            try:
                answer = await self.peer.call(addr, "POST", "/v1/session/certificate", {"csr": make_csr(key).decode()})
            except (PeerUnreachable, APIError) as exc:
                last = exc
                continue
            self.data.save_certs(self.data.read(self.data.ca_file), answer["certificate"].encode(), key)
            return
        raise Unavailable(f"could not renew the node certificate: {last}")

    async def _become_manager(self) -> None:
        managers = [m for m in self.session.managers if m != self.addrs.manager] or self.session.managers
        await self._renew_certificate(managers)
        await self.peer.close()
        self._make_peer()
        raft = await self._raft_join(managers)
        await self._deactivate()
        self.data.clear_raft()
        self.data.save_raft(raft["secret"], raft["members"])
        self.identity["role"] = "manager"
        self.data.save_identity(self.identity)
        await self._activate()
        log.info("promoted to manager")

    async def _become_worker(self) -> None:
        managers = [m for m in self.session.managers if m != self.addrs.manager]
        await self._deactivate()
        self.data.clear_raft()
        self._make_peer()
        await self._renew_certificate(managers)
        await self.peer.close()
        self.identity["role"] = "worker"
        self.identity["managers"] = managers
        self.data.save_identity(self.identity)
        await self._activate()
        log.info("demoted to worker")

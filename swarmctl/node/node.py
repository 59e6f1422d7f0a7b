"""One swarmctl node: its identity, its addresses, its API, and the parts that run for its role.

A node is in one of three shapes: not in a swarm (only the local API), a worker (the agent part), or a
manager (the manager part: Raft replica and manager components, plus the agent part, which talks to this
manager's own management port). node/transitions.py moves a node between shapes (init, join, leave,
promotion, demotion); node/manager_part.py and node/agent_part.py are the parts. The data dir keeps the
shape across restarts.

A manager restarted while autolock is on is **locked**: its key file (node/keyfile.py) is encrypted with the
unlock key, so it starts no part and no management port, and its local socket answers cluster commands with
the "Swarm is encrypted" error. `swarm unlock` opens the key file and then starts the parts as usual.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat

from swarmctl import __version__
from swarmctl.api.peer import PeerClient
from swarmctl.api.server import APIServer
from swarmctl.errors import BadRequest, Conflict, NotInSwarm, SwarmLocked, Unauthorized, Unavailable
from swarmctl.node import looplag, transitions
from swarmctl.node.agent_part import AgentPart
from swarmctl.node.config import Addresses, ConfigError, DaemonConfig, parse_host_port
from swarmctl.node.datadir import DataDir, DataDirError
from swarmctl.node.keyfile import KeyFileError, WrongUnlockKey
from swarmctl.node.manager_part import ManagerPart
from swarmctl.state.journal import StorageError
from swarmctl.security import seal, tls
from swarmctl.security.certs import load_certificate

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
        self.manager_part: ManagerPart | None = None
        self.agent: AgentPart | None = None
        self.peer: PeerClient | None = None
        self._client_ctx = None  # the TLS contexts in use, reloaded in place when the certificate is renewed
        self._server_ctx = None
        self._cert_summary: dict = {}
        self.api = APIServer(self)
        self._listen_sock: socket.socket | None = None
        self._role_change: asyncio.Task | None = None
        self.busy = asyncio.Lock()  # one transition at a time
        self._socket_owned = False
        self.stopping = False  # set when the daemon shuts down: the API then says so instead of "not a manager"
        self.locked = False  # restarted under autolock, waiting for `swarm unlock` (nothing runs meanwhile)
        self.loop_lag: looplag.LoopLagProbe | None = None  # how long the event loop was held (GET /v1/info)
        self.metrics = None  # swarmctl.node.metrics.Metrics with --metrics-addr, else None (nothing is counted)
        self._metrics_runner = None

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

    @property
    def store(self):
        return self.manager_part.store if self.manager_part else None

    @property
    def manager(self):
        return self.manager_part.manager if self.manager_part else None

    @property
    def session(self):
        return self.agent.session if self.agent else None

    @property
    def worker(self):
        return self.agent.worker if self.agent else None

    # ---- start / stop ------------------------------------------------------------------------
    async def start(self) -> None:
        self.loop_lag = looplag.acquire()
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
        self.locked = bool(self.identity) and self.data.keys.locked
        if self.addrs is not None and not self.locked:
            self._listen_sock = _bind(self.addrs)
            _check_port_free(self.addrs.advertise, self.addrs.listen_port + 1, "the Raft address")
        self._claim_socket()
        await self._start_metrics()
        if self.locked:
            log.warning("this manager is locked (autolock): run `swarmctl swarm unlock` to start it")
        elif self.identity:
            try:
                await self.activate()
            except StorageError as exc:  # a damaged journal or snapshot: refuse to start, naming the file
                await self.deactivate()
                raise StartupError(str(exc)) from None
        await self._open_socket()  # only now: until activation, a manager would answer "not a manager"

    async def _start_metrics(self) -> None:
        """--metrics-addr: Prometheus text at http://IP:PORT/metrics, unauthenticated (as dockerd's)."""
        try:
            where = self.config.metrics_for()
        except ConfigError as exc:
            raise StartupError(str(exc)) from None
        if where is None:
            return
        try:
            from swarmctl.node import metrics
        except ImportError as exc:  # a dependency, but an install without it should say so, not crash
            raise StartupError(f"--metrics-addr needs the prometheus-client package ({exc})") from None
        self.metrics = metrics.Metrics(self)
        self.metrics.refresh = self._mesh_stats
        self.api.metrics = self.metrics
        try:
            self._metrics_runner = await metrics.serve(self.metrics, *where)
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartupError(f"cannot listen on --metrics-addr {where[0]}:{where[1]}: {why}") from None
        log.info("metrics at http://%s:%d/metrics", *where)

    async def _mesh_stats(self) -> dict:
        mesh = self.agent.mesh if self.agent is not None else None
        plane = getattr(mesh, "proxy", None)
        return await plane.stats() if plane is not None else {}

    def _attach_metrics(self) -> None:
        """Give the running parts the daemon's metrics (after every activation)."""
        m = self.metrics
        if m is None:
            return
        part = self.manager_part
        if part is not None and part.store is not None:
            part.store.metrics = m
            part.store.snapshots.on_written = m.raft_snapshot.observe
            if part.manager is not None:
                part.manager.events.metrics = m
                part.manager.dispatcher.metrics = m

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
        await self.deactivate()
        await self.api.stop()
        if self._listen_sock is not None:
            self._listen_sock.close()
        if self._socket_owned:
            try:
                os.unlink(self.config.socket)
            except OSError:
                pass
        self.data.close()
        if self._metrics_runner is not None:
            runner, self._metrics_runner = self._metrics_runner, None
            await runner.cleanup()
        if self.loop_lag is not None:
            probe, self.loop_lag = self.loop_lag, None
            await looplag.release(probe)

    # ---- parts -------------------------------------------------------------------------------
    def new_manager_part(self) -> ManagerPart:
        return ManagerPart(self.data, self.addrs.raft, self.config.heartbeat_period, fetch_dek=self._fetch_dek)

    async def activate(self, manager_part: ManagerPart | None = None) -> None:
        """Run the parts that this node's stored role needs (a manager part already opened may be passed)."""
        self.peer = self.make_peer()
        if self.role == "manager":
            self.manager_part = manager_part or self.new_manager_part()
            await self.manager_part.start()
            self._attach_metrics()
        await self._start_tls()
        managers = self.identity.get("managers") or []
        if self.role == "manager":
            managers = [self.addrs.manager] + [m for m in managers if m != self.addrs.manager]
        self.agent = AgentPart(self.node_id, lambda: self.peer, managers, self.config.heartbeat_period,
                               self._describe, self._on_heartbeat_answer, self._on_removed, self._make_runtime,
                               self._read_cert, self._renew_own_certificate, node_addr=self.addrs.advertise,
                               hostname=self.config.hostname, dns_addr=self.config.dns_for(self.addrs.advertise),
                               dataplane=self.config.mesh_dataplane, files_dir=self.config.files_dir())
        await self.agent.start()

    async def deactivate(self) -> None:
        if self._role_change is not None and self._role_change is not asyncio.current_task():
            self._role_change.cancel()
        if self.agent is not None:
            agent, self.agent = self.agent, None
            await agent.stop()
        if self.manager_part is not None:
            part, self.manager_part = self.manager_part, None
            await part.stop()
        await self.api.stop_tls()
        if self.peer is not None:
            await self.peer.close()
            self.peer = None

    def _make_runtime(self):
        from swarmctl.runtime import make_runtime  # the Docker SDK loads only once tasks arrive
        runtime = make_runtime(self.config.docker_host)
        if self.metrics is not None:
            from swarmctl.node.metrics import InstrumentedRuntime
            runtime = InstrumentedRuntime(runtime, self.metrics)
        return runtime

    def make_peer(self) -> PeerClient:
        """A client for other nodes' management ports, presenting this node's certificate."""
        self._client_ctx = tls.client_context(self.data.ca_file, self.data.cert_file, self.data.key_file,
                                              key_password=self.data.keys.tls_password())
        return PeerClient(self._client_ctx)

    async def reload_peer(self) -> None:
        """Replace the peer client after this node's certificate changed (a new role)."""
        if self.peer is not None:
            await self.peer.close()
        self.peer = self.make_peer()

    async def _start_tls(self) -> None:
        if self._listen_sock is None or self._listen_sock.fileno() < 0:
            self._listen_sock = _bind(self.addrs)
        self._server_ctx = tls.server_context(self.data.cert_file, self.data.key_file, self.data.ca_file,
                                              key_password=self.data.keys.tls_password())
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
            "local_node_state": "locked" if self.locked else "active" if self.identity else "inactive",
            "hostname": self.config.hostname,
            "addr": self.addrs.advertise if self.addrs else None,
            "manager_addr": self.addrs.manager if self.addrs else None,
            "raft_addr": self.addrs.raft if self.addrs and self.role == "manager" else None,
            "managers": self.session.managers if self.session else self.identity.get("managers", []),
            "is_manager": self.manager is not None,
            "loop_lag": self.loop_lag.view() if self.loop_lag else None,
        }
        if self.manager is not None:  # the longest step each leader component ran on the loop (issue 8)
            info["loop_held"] = looplag.held.view()
        if self.session is not None and self.session.managers:
            # where this node's session goes, and how many full assignment lists it received (issue 8)
            info["session"] = {"manager": self.session.managers[self.session._current % len(self.session.managers)],
                               "full_lists": self.worker.full_lists if self.worker else 0}
        if self.store is not None:
            info["raft"] = {"leader": self.store.leader(), "is_leader": self.store.is_leader(),
                            "members": self.store.members(), "applied": self.store.index,
                            "conf": self.store.raft_conf()}
        return info

    def _describe(self) -> dict:
        info = {"hostname": self.config.hostname, "addr": self.addrs.advertise,
                "heartbeat_period": self.heartbeat_period()}
        if self._cert_summary:
            info["tls"] = {"serial": self._cert_summary["serial"], "not_after": self._cert_summary["not_after"]}
        if self.role == "manager":
            info["raft_running"] = self.store is not None
        return info

    def heartbeat_period(self) -> float:
        """The period this node heartbeats at: the swarm's dispatcher_heartbeat_period once a leader has told it,
        else the daemon's --heartbeat-period."""
        session = getattr(self.agent, "session", None) if getattr(self, "agent", None) is not None else None
        return session.period if session is not None else self.config.heartbeat_period

    # ---- addresses and identity --------------------------------------------------------------
    def adopt_addresses(self, advertise: str | None, listen: str | None) -> None:
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

    def save_identity(self, node_id: str, cluster_id: str, role: str, managers: list[str]) -> None:
        self.identity = {"node_id": node_id, "cluster_id": cluster_id, "role": role, "managers": managers,
                         "advertise_addr": self.addrs.advertise, "listen_host": self.addrs.listen_host,
                         "listen_port": self.addrs.listen_port}
        self.data.save_identity(self.identity)

    # ---- transitions (node/transitions.py) ---------------------------------------------------
    async def init(self, advertise: str | None, listen: str | None, force_new_cluster: bool,
                   autolock: bool = False, settings: dict | None = None) -> dict:
        if self.locked and force_new_cluster:
            raise SwarmLocked()
        return await transitions.init(self, advertise, listen, force_new_cluster, autolock, settings=settings)

    async def join(self, token: str, remote: str, advertise: str | None, listen: str | None) -> dict:
        return await transitions.join(self, token, remote, advertise, listen)

    async def leave(self, force: bool) -> dict:
        if self.locked and not force:
            raise Unavailable("Swarm is encrypted and locked. Please unlock it first or use `--force` to ignore "
                              "this message.")
        result = await transitions.leave(self, force)
        self.locked = False
        return result

    # ---- autolock ----------------------------------------------------------------------------
    async def unlock(self, key: str) -> dict:
        """Open the key file with the unlock key, then start the parts (and rejoin Raft) as a restart would."""
        async with self.busy:
            if not self.identity:
                raise NotInSwarm()
            if not self.locked:
                raise Conflict("swarm is not locked")
            try:
                kek = seal.parse_unlock_key(key)
            except seal.InvalidUnlockKey as exc:
                raise BadRequest(str(exc)) from None
            try:
                self.data.keys.unlock(kek)
            except WrongUnlockKey:
                raise Unauthorized("swarm could not be unlocked: invalid key provided") from None
            except KeyFileError as exc:
                raise Unavailable(str(exc)) from None
            try:
                self._listen_sock = _bind(self.addrs)
                _check_port_free(self.addrs.advertise, self.addrs.listen_port + 1, "the Raft address")
            except StartupError as exc:
                if self._listen_sock is not None:
                    self._listen_sock.close()
                    self._listen_sock = None
                self.data.keys.load()  # locked again: the next attempt must present the key again
                raise Conflict(str(exc)) from None
            self.locked = False
            log.info("unlocked: starting this manager")
            await self.activate()
        return {}

    async def _fetch_dek(self, missing: set[str]) -> bool:
        """Ask the other managers for the swarm's DEK (mutual TLS, manager certificate); True once held."""
        peer = self.peer
        if peer is None:
            return False
        managers = [m for m in (self.session.managers if self.session else self.identity.get("managers") or [])
                    if m != self.addrs.manager]
        for addr in managers:
            try:
                answer = await peer.call(addr, "POST", "/v1/raft/dek", {}, timeout=5.0)
                ring = seal.Keyring.from_export(answer.get("dek"))
            except Exception as exc:  # unreachable, refused, or no key there either: try the next one
                log.debug("no data encryption key from %s: %s", addr, exc)
                continue
            if missing & set(ring.ids):
                self.data.keys.install_dek(ring)
                log.info("fetched the swarm's data encryption key from %s", addr)
                return not missing - set(self.data.keys.dek.ids)
        return False

    async def _on_removed(self, message: str) -> None:
        await transitions.on_removed(self, message)

    async def _on_heartbeat_answer(self, answer: dict) -> None:
        if (answer.get("node") or {}).get("id") not in (None, self.node_id):
            log.warning("ignoring a heartbeat answer about node %s", answer["node"]["id"])
            return
        managers = answer.get("managers")
        if managers and managers != self.identity.get("managers"):
            self.identity["managers"] = managers
            self.data.save_identity(self.identity)
        period = answer.get("period")
        session = getattr(self.agent, "session", None) if self.agent is not None else None
        if isinstance(period, (int, float)) and period > 0 and session is not None and session.period != period:
            log.info("heartbeat period %gs (the swarm's dispatcher_heartbeat_period)", period)
            session.period = period
        wanted = answer["node"]["spec"]["role"]
        if wanted != self.role and (self._role_change is None or self._role_change.done()):
            self._role_change = asyncio.create_task(transitions.change_role(self, wanted))

    # ---- certificates ------------------------------------------------------------------------
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
        async with self.busy:
            if self.session is None:
                return
            await transitions.renew_certificate(self, self.session.managers)
            raft = self.manager_part.tls_contexts() if self.manager_part else []
            tls.reload_chain([self._client_ctx, self._server_ctx, *raft], self.data.cert_file, self.data.key_file,
                             self.data.keys.tls_password())
            self._read_cert()
            log.info("node certificate renewed: serial %s, valid until %s",
                     self._cert_summary["serial"], self._cert_summary["not_after"])

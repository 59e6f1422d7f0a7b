"""One hollow node: a real worker node (its own id, certificate, data dir and mutual-TLS session with the
managers) whose runtime is the simulated one (runtime/simulated.py).

It reuses the worker's own parts: the data dir (node/datadir.py), the agent part (session with heartbeats,
the worker that long-polls its assignments and reports task states, certificate renewal), the peer client,
and the certificate renewal call of node/transitions.py. What it leaves out is what a worker does not need
in one process of many: its own management port (the process has one shared agent listener for `service
logs` and the image check, hollow/process.py), the local API socket, and role changes (a hollow node stays
a worker: asked to become a manager it says so in the log and goes on as a worker).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import uuid

from swarmctl.agent.worker import LABEL_TASK
from swarmctl.api.peer import PeerClient, PeerUnreachable
from swarmctl.errors import APIError
from swarmctl.node import transitions
from swarmctl.node.agent_part import AgentPart
from swarmctl.node.datadir import DataDir, DataDirError
from swarmctl.runtime.simulated import SimulatedRuntime
from swarmctl.security import tls
from swarmctl.security.certs import generate_key, load_certificate, make_csr
from swarmctl.security.tokens import ca_digest, parse_token

log = logging.getLogger(__name__)


JOIN_RETRY_DELAY = 0.5  # seconds before the first retry of a join; doubling up to 8 s, with jitter


class HollowError(Exception):
    """A hollow node cannot start; the message says why, on one line."""


class _Unreachable(HollowError):
    """The manager did not answer (or could not serve the join now): worth another attempt."""


class HollowNode:
    def __init__(self, index: int, data_dir: str, hostname: str, advertise: str, agent_addr: str,
                 heartbeat_period: float, resources: dict, labels: dict, runtime: SimulatedRuntime):
        self.index = index
        self.data = DataDir(data_dir)
        self.hostname = hostname
        self.advertise = advertise
        self.agent_addr = agent_addr  # the process's shared agent listener: the node's "manager" address
        self.heartbeat_period = heartbeat_period
        self.resources = dict(resources)
        self.labels = dict(labels)
        self.runtime = runtime
        self.identity: dict = {}
        self.peer: PeerClient | None = None
        self.agent: AgentPart | None = None
        self.busy = asyncio.Lock()
        self.removed = False
        self._client_ctx = None
        self._cert_summary: dict = {}
        self._role_warned = False
        self.follow_endpoints = False  # `swarmctl hollow --endpoints`

    # ---- identity ----------------------------------------------------------------------------
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
    def worker(self):
        return self.agent.worker if self.agent else None

    def open(self) -> dict:
        """Open (and lock) the data dir; the stored identity, {} for a node that has not joined yet."""
        try:
            self.identity = self.data.open()
        except DataDirError as exc:
            raise HollowError(str(exc)) from None
        if self.identity and self.identity.get("role") != "worker":
            raise HollowError(f"data dir {self.data.path} holds a {self.identity.get('role')} node; hollow nodes "
                              "are workers")
        return self.identity

    # ---- join --------------------------------------------------------------------------------
    async def join(self, token: str, remote: str, attempts: int | None = 1, joiner: "Joiner | None" = None) -> None:
        """Join as a worker, as `swarm join` does: fetch the CA, check it against the token's digest, send a
        CSR with the token, keep the certificate. Raises HollowError (one line) on any refusal.

        A manager that does not answer (busy with a thousand joins) is tried again, up to `attempts` times
        (None: until it answers), with the same key and request id: a join it applied but whose answer was
        lost gives the same node.

        `joiner` (the process's): the CA fetched and checked once, and one CA-verified client for the joins of
        all the nodes, so that a join costs no TLS handshake of its own on either side."""
        parsed = parse_token(token)
        key = generate_key()
        request_id = uuid.uuid4().hex
        delay = JOIN_RETRY_DELAY
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = await self._join_once(parsed, token, remote, key, request_id, joiner)
                break
            except _Unreachable as exc:
                if attempts is not None and attempt >= attempts:
                    raise HollowError(str(exc)) from None
                log.log(logging.WARNING if attempt % 5 == 0 else logging.INFO,
                        "%s: join attempt %d: %s; trying again", self.hostname, attempt, exc)
                await asyncio.sleep(delay * random.uniform(1, 2))
                delay = min(delay * 2, 8.0)
        if answer.get("role") != "worker":
            await self._undo_manager_join(remote, answer, key)
            raise HollowError("hollow nodes join as workers, and this is a manager join token: use the worker token "
                              "(`swarmctl swarm join-token -q worker`)")
        # the data dir's writes fsync: off the event loop, which runs every other node meanwhile
        await asyncio.to_thread(self.data.save_certs, answer["ca"].encode(), answer["certificate"].encode(), key)
        host = self.advertise
        identity = {"node_id": answer["node_id"], "cluster_id": answer["cluster_id"], "role": "worker",
                    "managers": answer.get("managers") or [remote], "advertise_addr": host,
                    "listen_host": host, "listen_port": int(self.agent_addr.rsplit(":", 1)[1]), "hollow": True}
        await asyncio.to_thread(self.data.save_identity, identity)
        self.identity = identity

    async def _join_once(self, parsed, token: str, remote: str, key: bytes, request_id: str,
                         shared: "Joiner | None") -> dict:
        joiner = shared or Joiner()
        try:
            client = await joiner.client(parsed, remote)
            return await client.call(remote, "POST", "/v1/join", headers={"X-Request-Id": request_id}, body={
                "token": token.strip(), "csr": make_csr(key).decode(), "hostname": self.hostname,
                "addr": self.advertise, "manager_addr": self.agent_addr, "raft_addr": self.agent_addr,
                "engine_labels": self.labels, "resources": self.resources,
                "heartbeat_period": self.heartbeat_period})
        except PeerUnreachable as exc:
            raise _Unreachable(f"could not connect to the manager at {remote}: {exc}") from None
        except APIError as exc:
            if exc.status >= 500:  # the manager is there but cannot serve now (no leader, overloaded)
                raise _Unreachable(f"the manager at {remote} could not take the join now: {exc.message}") from None
            raise HollowError(f"the manager at {remote} refused the join: {exc.message}") from None
        finally:
            if shared is None:
                await joiner.close()

    async def _undo_manager_join(self, remote: str, answer: dict, key: bytes) -> None:
        """A manager token made a manager record that will never run Raft: leave at once, as `swarm leave
        --force` does, so the record is a Down worker ("node left the swarm") that `node rm` can remove."""
        ctx = tls.client_context(answer["ca"].encode(), answer["certificate"].encode(), key)
        peer = PeerClient(ctx, timeout=10.0)
        try:
            await peer.call(remote, "POST", "/v1/raft/leave", {}, timeout=15.0)
        except (PeerUnreachable, APIError) as exc:
            log.warning("could not undo the manager join of %s: %s", answer.get("node_id"), exc)
        finally:
            await peer.close()

    # ---- the agent ---------------------------------------------------------------------------
    def make_peer(self) -> PeerClient:
        self._client_ctx = tls.client_context(self.data.ca_file, self.data.cert_file, self.data.key_file,
                                              key_password=self.data.keys.tls_password())
        return PeerClient(self._client_ctx)

    async def activate(self, stagger: bool = False) -> None:
        """Start the session, the worker and certificate renewal. `stagger`: wait a random part of a
        heartbeat period first, so nodes restarted together do not heartbeat in step."""
        if stagger:
            await asyncio.sleep(random.uniform(0, self.heartbeat_period))
        self.peer = self.make_peer()
        self._read_cert()
        self.agent = AgentPart(self.node_id, lambda: self.peer, self.identity.get("managers") or [],
                               self.heartbeat_period, self._describe, self._on_answer, self._on_removed,
                               lambda: self.runtime, self._read_cert, self._renew,
                               node_addr=self.advertise if self.follow_endpoints else None,
                               mesh=self.follow_endpoints, dataplane="recording")
        # a hollow node forwards nothing (its runtime is a stand-in); with --endpoints it follows the endpoint
        # stream as a real node does, into RecordingDataPlane, and serves no DNS
        await self.agent.start()

    async def first_heartbeat(self, timeout: float) -> bool:
        if self.agent is None:
            return False
        try:
            await asyncio.wait_for(self.agent.session.answered.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def stop(self) -> None:
        if self.agent is not None:
            agent, self.agent = self.agent, None
            await agent.stop()
        if self.peer is not None:
            await self.peer.close()
            self.peer = None
        self.data.close()

    def _describe(self) -> dict:
        info = {"hostname": self.hostname, "addr": self.advertise, "heartbeat_period": self.heartbeat_period}
        if self._cert_summary:
            info["tls"] = {"serial": self._cert_summary["serial"], "not_after": self._cert_summary["not_after"]}
        return info

    async def _on_answer(self, answer: dict) -> None:
        managers = answer.get("managers")
        if managers and managers != self.identity.get("managers"):
            self.identity["managers"] = managers
            self.data.save_identity(self.identity)
        wanted = answer["node"]["spec"]["role"]
        if wanted != "worker" and not self._role_warned:
            self._role_warned = True
            log.warning("hollow node %s (%s) was promoted, but hollow nodes stay workers", self.hostname, self.node_id)

    async def _on_removed(self, message: str) -> None:
        """The swarm removed this node: forget the swarm, as a worker daemon does."""
        log.warning("hollow node %s was removed from the swarm: %s", self.hostname, message)
        self.removed = True
        async with self.busy:
            agent, self.agent = self.agent, None
            if agent is not None:
                asyncio.create_task(agent.stop())  # we run inside its session task: stop it from outside
            self.data.clear_all()
            self.identity = {}

    # ---- certificates ------------------------------------------------------------------------
    def _read_cert(self) -> bytes:
        cert = self.data.read(self.data.cert_file)
        if self._cert_summary.get("pem") != cert:
            parsed = load_certificate(cert)
            self._cert_summary = {"pem": cert, "serial": format(parsed.serial_number, "x"),
                                  "not_after": parsed.not_valid_after_utc.isoformat(timespec="seconds")}
        return cert

    async def _renew(self) -> None:
        async with self.busy:
            if self.agent is None:
                return
            await transitions.renew_certificate(self, self.agent.session.managers)
            tls.reload_chain([self._client_ctx], self.data.cert_file, self.data.key_file,
                             self.data.keys.tls_password())
            self._read_cert()

    # ---- for the agent listener --------------------------------------------------------------
    def has_task(self, task_id: str) -> bool:
        worker = self.worker
        if worker is not None and task_id in worker.assigned:
            return True
        return bool(self.runtime.list({LABEL_TASK: task_id}))


class Joiner:
    """What joining needs before a node has a certificate: the root CA, fetched unverified and checked against
    the token's digest (as `swarm join` does), and a client that trusts only that CA. One serves many joins."""

    def __init__(self):
        self.ca_pem: str | None = None
        self._client: PeerClient | None = None
        self._lock = asyncio.Lock()

    async def client(self, parsed, remote: str) -> PeerClient:
        async with self._lock:  # the first caller fetches the CA; the others wait for it
            if self._client is None:
                await self._fetch_ca(parsed, remote)
            return self._client

    async def _fetch_ca(self, parsed, remote: str) -> None:
        bootstrap = PeerClient(tls.unverified_context(), timeout=5.0)
        try:
            ca_pem = (await bootstrap.call(remote, "GET", "/v1/ca"))["ca"]
        except PeerUnreachable as exc:
            raise _Unreachable(f"could not connect to the manager at {remote}: {exc}") from None
        except (APIError, KeyError, TypeError) as exc:
            raise HollowError(f"the manager at {remote} did not hand out its CA: {exc}") from None
        finally:
            await bootstrap.close()
        if ca_digest(ca_pem) != parsed.digest:
            raise HollowError(f"the manager at {remote} presented a root CA that does not match the fingerprint in "
                              "the join token; refusing to join")
        self.ca_pem = ca_pem
        self._client = PeerClient(tls.client_context(ca_pem.encode()), timeout=15.0)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def node_dir(root: str, index: int) -> str:
    return os.path.join(root, str(index))

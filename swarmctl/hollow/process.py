"""`swarmctl hollow`: N hollow nodes in one process, on one asyncio loop (Kubemark's hollow nodes).

Each node is a real worker (hollow/node.py) with the simulated runtime (runtime/simulated.py). What a
worker needs a listening port for is the managers asking its agent for task logs (`service logs`) and
whether it has an image (`service create`); the process answers both for all its nodes on ONE agent
listener (mutual TLS, manager certificates of the swarm only), which every node advertises as its address.
No node opens a port of its own, so a thousand nodes cost a thousand sessions, not a thousand servers.

The first node joins alone, so that a wrong token or an unreachable manager stops the process with one
error line before anything else; the others join `join_concurrency` at a time. On a restart with the same
--data-dir the nodes that joined before come back with their identities (and the missing ones join).
Killing the process stops every session: its nodes miss their heartbeats and the managers mark them Down.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import resource
import socket
import time

from aiohttp import web

from swarmctl.api.listener import TLSListener
from swarmctl.hollow.config import HollowConfig, HollowConfigError, route_source
from swarmctl.hollow.node import HollowError, HollowNode, Joiner, node_dir
from swarmctl.runtime.simulated import SimulatedRuntime
from swarmctl.security import tls
from swarmctl.security.tls import peer_identity

log = logging.getLogger(__name__)

STATE_FILE = "hollow.json"
# the nodes after the first retry until the manager takes their join: one busy with many joins may not answer
# at once (the first node's join is tried once, so a wrong address or token fails at once)
JOIN_ATTEMPTS = None


def rss_bytes() -> int:
    """This process's resident set size now (from /proc; the peak from getrusage where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def raise_fd_limit(needed: int) -> None:
    """Each node holds a data-dir lock and up to three connections: lift the soft limit towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise HollowConfigError(f"--count needs about {needed} open files, and this process may open {soft} "
                                "(raise `ulimit -n`)")


class HollowProcess:
    def __init__(self, config: HollowConfig):
        self.config = config
        self.nodes: list[HollowNode] = []
        self._sock: socket.socket | None = None
        self._lock_fd: int | None = None
        self._runner: web.AppRunner | None = None
        self._listener: TLSListener | None = None
        self.agent_addr = ""
        self.advertise = ""
        self.cluster_id: str | None = None
        self.join_seconds = 0.0
        self.ready_seconds = 0.0
        self.joined_now = 0
        self._reporter: asyncio.Task | None = None

    # ---- state kept in DIR/hollow.json -------------------------------------------------------
    def _state_path(self) -> str:
        return os.path.join(self.config.data_dir, STATE_FILE)

    def _load_state(self) -> dict:
        try:
            with open(self._state_path()) as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise HollowError(f"{self._state_path()} is corrupt: {exc}") from None

    def _save_state(self) -> None:
        tmp = self._state_path() + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"advertise": self.advertise, "agent_port": int(self.agent_addr.rsplit(":", 1)[1]),
                       "name_prefix": self.config.name_prefix}, f)
        os.replace(tmp, self._state_path())

    # ---- start -------------------------------------------------------------------------------
    async def start(self) -> None:
        config = self.config
        if os.path.exists(config.data_dir) and not os.path.isdir(config.data_dir):
            raise HollowError(f"--data-dir {config.data_dir} is not a directory")
        os.makedirs(config.data_dir, mode=0o700, exist_ok=True)
        raise_fd_limit(4 * config.count + 256)
        self._lock_dir()
        state = self._load_state()
        self.advertise = config.advertise_addr or state.get("advertise") or route_source(config.join)
        port = config.agent_port or int(state.get("agent_port") or 0)
        self._bind(self.advertise, port)
        self._save_state()
        started = time.monotonic()
        runtime_args = dict(start_latency=config.start_latency, fail_rate=config.fail_rate)
        for i in range(config.count):
            self.nodes.append(HollowNode(
                i, node_dir(config.data_dir, i), f"{config.name_prefix}-{i}", self.advertise, self.agent_addr,
                config.heartbeat_period, config.resources, config.labels,
                SimulatedRuntime(name=f"{config.name_prefix}-{i}", **runtime_args)))
            self.nodes[-1].follow_endpoints = config.endpoints
        if config.endpoints:
            self._reporter = asyncio.create_task(self._report_endpoints(), name="hollow-endpoints")
        opened = await asyncio.gather(*(asyncio.to_thread(n.open) for n in self.nodes), return_exceptions=True)
        failed = [e for e in opened if isinstance(e, BaseException)]
        if failed:
            raise failed[0] if isinstance(failed[0], HollowError) else HollowError(f"opening a data dir: {failed[0]}")
        known = [n for n in self.nodes if n.identity]
        fresh = [n for n in self.nodes if not n.identity]
        if known:
            self.cluster_id = known[0].cluster_id
        if fresh and not known:  # the first join alone: a bad token or manager fails once, at once
            first = fresh.pop(0)
            await first.join(config.token, config.join)
            self.cluster_id = first.cluster_id
            known.append(first)
            self.joined_now += 1
        await self._serve(known[0])
        restarted = self.joined_now == 0  # nodes back from an earlier run: spread their heartbeats over a period
        await asyncio.gather(*(node.activate(stagger=restarted and node.index != 0) for node in known))
        joiner = Joiner()  # one CA check and one connection pool for the joins of all the other nodes
        gate = asyncio.Semaphore(config.join_concurrency)
        errors: list[str] = []

        async def join(node: HollowNode) -> None:
            async with gate:
                try:
                    await node.join(config.token, config.join, attempts=JOIN_ATTEMPTS, joiner=joiner)
                except HollowError as exc:
                    errors.append(f"{node.hostname}: {exc}")
                    return
                self.joined_now += 1
                await node.activate()
        try:
            await asyncio.gather(*(join(n) for n in fresh))
        finally:
            await joiner.close()
        self.join_seconds = time.monotonic() - started
        if errors:
            raise HollowError(f"{len(errors)} of {config.count} hollow nodes could not join; first: {errors[0]}")
        await asyncio.gather(*(n.first_heartbeat(max(10.0, 4 * config.heartbeat_period)) for n in self.nodes))
        self.ready_seconds = time.monotonic() - started

    def _lock_dir(self) -> None:
        fd = os.open(os.path.join(self.config.data_dir, "hollow.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise HollowError(f"--data-dir {self.config.data_dir} is in use by another swarmctl hollow process") \
                from None
        self._lock_fd = fd

    def _bind(self, host: str, port: int) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1024)
        except OSError as exc:
            sock.close()
            raise HollowError(f"cannot listen on {host}:{port} for the hollow agents: {exc.strerror or exc}") \
                from None
        self._sock = sock
        bound = sock.getsockname()[1]
        self.agent_addr = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"

    # ---- the shared agent listener -----------------------------------------------------------
    async def _serve(self, node: HollowNode) -> None:
        """Serve the agent routes for every node on the one socket, presenting `node`'s certificate
        (managers check the CA chain, not which node answers)."""
        ctx = tls.raft_server_context(node.data.cert_file, node.data.key_file, node.data.ca_file,
                                      key_password=node.data.keys.tls_password())
        app = web.Application()
        app.router.add_get("/v1/agent/images", self._images)
        app.router.add_get("/v1/agent/logs/{task_id}", self._logs)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._listener = TLSListener(self._runner.server, ctx)
        await self._listener.start(self._sock)
        self._sock = None

    def _authorise(self, request: web.Request) -> web.Response | None:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        try:
            identity = peer_identity(ssl_object)
        except ValueError:
            identity = None
        if identity is None or identity.role != "manager" or identity.cluster_id != self.cluster_id:
            return web.json_response({"message": "a manager certificate of this swarm is required"}, status=401)
        return None

    async def _images(self, request: web.Request) -> web.Response:
        refused = self._authorise(request)
        if refused is not None:
            return refused
        name = request.query.get("name", "")
        present = bool(self.nodes) and self.nodes[0].runtime.has_image(name)
        return web.json_response({"present": present})

    async def _logs(self, request: web.Request) -> web.Response:
        refused = self._authorise(request)
        if refused is not None:
            return refused
        task_id = request.match_info["task_id"]
        tail_text = request.query.get("tail")
        tail = None
        if tail_text is not None:
            if not tail_text.isdigit():
                return web.json_response({"message": f"invalid query: tail: {tail_text!r} is not a number"},
                                         status=400)
            tail = int(tail_text)
        for node in self.nodes:
            if node.worker is not None and node.has_task(task_id):
                return web.json_response({"lines": await node.worker.logs(task_id, tail)})
        return web.json_response({"lines": []})

    # ---- --endpoints: what the nodes' stand-in data planes hold ----------------------------------
    def endpoint_report(self) -> dict:
        """{"nodes", "following", "routes": {route: {backend count: [nodes, first applied, last applied]}}}:
        for every route, how many nodes hold it with how many backends, and when the first and the last of
        them applied that table (time.time())."""
        routes: dict[str, dict[int, list]] = {}
        following = 0
        for node in self.nodes:
            mesh = node.agent.mesh if node.agent is not None else None
            plane = mesh.proxy if mesh is not None else None
            if plane is None or plane.applied_at is None:
                continue
            following += 1
            for route in plane.routes:
                key = f"{route['proto']}/{route['listen'][1]}" if route["listen"][0] == node.advertise else None
                if key is None:
                    continue  # the VIP routes repeat the ingress ones
                entry = routes.setdefault(key, {}).setdefault(len(route["backends"]), [0, None, None])
                entry[0] += 1
                entry[1] = plane.applied_at if entry[1] is None else min(entry[1], plane.applied_at)
                entry[2] = plane.applied_at if entry[2] is None else max(entry[2], plane.applied_at)
        return {"time": time.time(), "nodes": len(self.nodes), "following": following,
                "routes": {k: {str(n): v for n, v in sorted(counts.items())} for k, counts in routes.items()}}

    async def _report_endpoints(self) -> None:
        """Write DIR/endpoints.json every 0.2 s while it changes (bench/hollow.py --endpoints reads it)."""
        path = os.path.join(self.config.data_dir, "endpoints.json")
        last = None
        while True:
            await asyncio.sleep(0.2)
            report = self.endpoint_report()
            body = json.dumps({k: v for k, v in report.items() if k != "time"}, sort_keys=True)
            if body == last:
                continue
            last = body
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(report, f)
            os.replace(tmp, path)

    # ---- stop --------------------------------------------------------------------------------
    async def stop(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            await asyncio.gather(self._reporter, return_exceptions=True)
            self._reporter = None
        await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def summary(self) -> str:
        rss = rss_bytes()
        count = max(1, len(self.nodes))
        return (f"hollow: {len(self.nodes)} nodes running ({self.joined_now} joined now) on agent listener "
                f"{self.agent_addr}; joined in {self.join_seconds:.1f}s, all heartbeating in "
                f"{self.ready_seconds:.1f}s; RSS {rss / 2**20:.1f} MiB, {rss / count / 2**10:.0f} KiB per node")

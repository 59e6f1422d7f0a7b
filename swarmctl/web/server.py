"""The live web view (`swarmctl daemon --web-addr IP:PORT`): a read-only page of the cluster on a manager.

Served by the daemon's aiohttp on a site of its own. `/` is the page (static files shipped in
swarmctl/web/static), `/api/snapshot` the cluster as JSON, `/api/events` a Server-Sent Events stream of
snapshots. The stream is fed from the store: RaftStore.watch calls back on the Raft thread, which only hands
over to the event loop (call_soon_threadsafe); the loop coalesces and sends a fresh snapshot at most every
250 ms, and once every few seconds anyway (leadership and reachability change without a write).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

from aiohttp import web

from swarmctl.mesh import ports as mesh_ports
from swarmctl.web.auth import BasicAuth

log = logging.getLogger(__name__)

STATIC = os.path.join(os.path.dirname(__file__), "static")
COALESCE = 0.25  # seconds between two snapshots at most once per this
REFRESH = 5.0  # a snapshot at least this often (leader, reachability, state ages)
KEEPALIVE = 15.0


def _node(store, node: dict) -> dict:
    status = node.get("manager_status") or {}
    raft_addr = status.get("raft_addr")
    leader = reachability = None
    if node["spec"]["role"] == "manager" and raft_addr:
        members = store.members()
        leader = store.leader() == raft_addr and raft_addr in members
        reachability = "reachable" if raft_addr in members and store.connected(raft_addr) else "unreachable"
    return {
        "id": node["id"],
        "hostname": node["description"]["hostname"],
        "role": node["spec"]["role"],
        "leader": bool(leader),
        "reachability": reachability,
        "status": (node.get("status") or {}).get("state") or "unknown",
        "addr": (node.get("status") or {}).get("addr"),
        "availability": node["spec"].get("availability") or "active",
        "labels": dict(node["spec"].get("labels") or {}),
        "engine_labels": dict(node["description"].get("engine_labels") or {}),
    }


def _service(service: dict, tasks: list[dict]) -> dict:
    spec = service["spec"]
    mine = [t for t in tasks if t["service_id"] == service["id"]]
    running = sum(1 for t in mine if t["desired_state"] == "running" and t["status"]["state"] == "running")
    if spec.get("mode") == "global":
        desired = sum(1 for t in mine if t["desired_state"] == "running")
    else:
        desired = spec.get("replicas") or 0
    update = service.get("update_status") or {}
    return {
        "id": service["id"],
        "name": spec["name"],
        "mode": spec.get("mode") or "replicated",
        "image": (spec.get("task") or {}).get("image") or "",
        "replicas": {"running": running, "desired": desired},
        "ports": mesh_ports.format_ports(spec.get("endpoint")),
        "update_status": update.get("state") or "",
        "update_message": update.get("message") or "",
    }


def _task(task: dict) -> dict:
    status = task.get("status") or {}
    slot = task.get("slot")
    return {
        "id": task["id"],
        "name": f"{task['service_name']}.{slot if slot is not None else task.get('node_id')}",
        "service_id": task["service_id"],
        "service_name": task["service_name"],
        "slot": slot,
        "node_id": task.get("node_id"),
        "image": (task.get("spec") or {}).get("image") or "",
        "state": status.get("state") or "unknown",
        "desired_state": task.get("desired_state"),
        "timestamp": status.get("timestamp"),
        "message": status.get("message") or "",
        "err": status.get("err") or "",
    }


def snapshot(store, now: float | None = None) -> dict:
    """The cluster as the page shows it (store None: this node is not a manager now)."""
    now = time.time() if now is None else now
    if store is None:
        return {"manager": False, "index": 0, "time": now, "nodes": [], "services": [], "tasks": []}
    nodes = sorted(store.list("node"), key=lambda n: (n["description"]["hostname"], n["id"]))
    tasks = sorted(store.list("task"), key=lambda t: (t["service_name"], t.get("slot") or 0, t.get("node_id") or "",
                                                       -(t.get("created_at") or 0)))
    services = sorted(store.list("service"), key=lambda s: s["spec"]["name"])
    return {
        "manager": True,
        "index": store.index,
        "time": now,
        "nodes": [_node(store, n) for n in nodes],
        "services": [_service(s, tasks) for s in services],
        "tasks": [_task(t) for t in tasks],
    }


class WebView:
    """The web view's aiohttp site. `node.manager.store` is looked up each time: a node becomes a manager
    (init, join, promote) and stops being one while the daemon runs."""

    def __init__(self, node, host: str, port: int, auth: BasicAuth | None = None):
        self.node = node
        self.host, self.port = host, port
        self.auth = auth
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: set[asyncio.Queue] = set()
        self._watched = None
        self._cancel_watch = None
        self._dirty = asyncio.Event()
        self._pump: asyncio.Task | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/snapshot", self._snapshot)
        app.router.add_get("/api/events", self._events)
        return app

    def store(self):
        manager = getattr(self.node, "manager", None)
        return getattr(manager, "store", None) if manager is not None else None

    # ---- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self._pump = asyncio.create_task(self._run(), name="web-view")
        log.info("web view on http://%s:%d/%s", self.host, self.port, " (basic auth)" if self.auth else "")

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            try:
                await self._pump
            except asyncio.CancelledError:
                pass
            self._pump = None
        self._unwatch()
        for queue in list(self._clients):
            queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- the store's changes -----------------------------------------------------------------
    def _unwatch(self) -> None:
        if self._cancel_watch is not None:
            try:
                self._cancel_watch()
            except Exception:  # the store is already closed
                pass
        self._cancel_watch = self._watched = None

    def _on_change(self, _index, _events) -> None:  # on the Raft thread: hand over only
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._dirty.set)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def _follow_store(self) -> None:
        store = self.store()
        if store is not self._watched:
            self._unwatch()
            if store is not None:
                self._cancel_watch = store.watch(self._on_change)
                self._watched = store
            self._dirty.set()

    async def _run(self) -> None:
        last = 0.0
        while True:
            self._follow_store()
            try:
                await asyncio.wait_for(self._dirty.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                if time.monotonic() - last < REFRESH:
                    continue
            wait = COALESCE - (time.monotonic() - last)
            if wait > 0:
                await asyncio.sleep(wait)
            self._dirty.clear()
            last = time.monotonic()
            if not self._clients:
                continue
            try:
                data = self._encode()
            except Exception:
                log.exception("web view: snapshot failed")
                continue
            for queue in list(self._clients):
                if queue.full():  # a slow client only needs the newest snapshot
                    try:
                        queue.get_nowait()
                    except asyncio.QueueEmpty:
                        pass
                queue.put_nowait(data)

    def _encode(self) -> bytes:
        return json.dumps(snapshot(self.store()), separators=(",", ":")).encode()

    # ---- handlers ----------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request, handler):
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="the web view is read-only\n")
        if self.auth is not None and not self.auth.check_header(request.headers.get("Authorization")):
            return web.Response(status=401, text="authentication required\n",
                                headers={"WWW-Authenticate": 'Basic realm="swarmctl", charset="UTF-8"'})
        response = await handler(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
        return response

    async def _index(self, request):
        return web.FileResponse(os.path.join(STATIC, "index.html"))

    async def _static(self, request):
        name = request.match_info["name"]
        if name not in ("app.js", "style.css"):
            raise web.HTTPNotFound()
        return web.FileResponse(os.path.join(STATIC, name))

    async def _snapshot(self, request):
        return web.Response(body=self._encode(), content_type="application/json")

    async def _events(self, request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(maxsize=1)
        self._clients.add(queue)
        try:
            await response.write(b"retry: 1000\ndata: " + self._encode() + b"\n\n")
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE)
                except asyncio.TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if data is None:
                    break
                await response.write(b"data: " + data + b"\n\n")
        except ConnectionResetError:
            pass
        finally:
            self._clients.discard(queue)
        return response

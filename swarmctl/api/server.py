"""The daemon's HTTP API (aiohttp): the local socket and the mutual-TLS management port.

Every route declares who may call it and whether it must run on the leader:
  local    the local socket only (root on this host)
  public   anyone on the management port (CA fetch, join with a token)
  node     a node certificate from this swarm (sessions)
  cluster  cluster-state reads and writes: the local socket of a manager, or another manager
           forwarding over mutual TLS
  agent    a manager asking this node's agent (task logs), over mutual TLS
Writes run on the leader. A follower forwards the request to the leader over mutual TLS and
retries while an election is under way, answering the no-leader error after a bounded wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel, ValidationError

from swarmctl.api.peer import PeerUnreachable
from swarmctl.errors import (APIError, BadRequest, Forbidden, Misdirected, NoLeaderError, NotAManager,
                             SwarmLocked, Unauthorized, Unavailable)
from swarmctl.security.tls import peer_identity

log = logging.getLogger(__name__)

FORWARD_DEADLINE = 4.0
FORWARDED = "X-Swarmctl-Forwarded"
ORIGIN_NODE = "X-Swarmctl-Origin-Node"
REQUEST_ID = "X-Request-Id"


def not_a_manager(node, request) -> APIError:
    """Why a request for a manager cannot be served here.  A manager that is shutting down has already
    stopped its manager parts: it must not claim to be a worker. It tells a forwarding manager to try the
    (next) leader, and a local client to try again."""
    if getattr(node, "locked", False):  # restarted under autolock: nothing runs until `swarm unlock`
        return SwarmLocked()
    if getattr(node, "stopping", False):
        if request.headers.get(FORWARDED):
            return Misdirected("this manager is shutting down")
        return Unavailable("this node is shutting down; try again, or use another manager")
    return NotAManager()


@dataclass
class Route:
    method: str
    path: str
    access: str
    leader: bool
    body: type[BaseModel] | None
    handler: Callable[["Context"], Awaitable[Any]]


ROUTES: list[Route] = []


def route(method: str, path: str, access: str, *, leader: bool = False, body: type[BaseModel] | None = None):
    """Register a handler: async def handler(ctx) -> JSON-able value."""
    def register(handler):
        ROUTES.append(Route(method, path, access, leader, body, handler))
        return handler
    return register


@dataclass
class Context:
    node: Any                 # swarmctl.node.node.Node
    request: web.Request
    body: Any
    caller: str | None        # node id of the calling node (None on the local socket)
    raw_body: Any
    request_id: str           # the same on every forwarding attempt, so a retried write applies once

    @property
    def manager(self):
        manager = self.node.manager
        if manager is None:
            raise not_a_manager(self.node, self.request)
        return manager

    @property
    def store(self):
        return self.manager.store

    def query_flag(self, name: str) -> bool:
        return self.request.query.get(name, "").lower() in ("1", "true", "yes")


def _json(data, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda v: json.dumps(v, default=str))


@web.middleware
async def _json_errors(request, handler):
    """Unknown paths and methods answer in the API's JSON error form too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _json({"message": f"{exc.reason}: {request.method} {request.path}"}, exc.status)


class APIServer:
    def __init__(self, node):
        self.node = node
        self.app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=[_json_errors])
        from swarmctl.api import routes_cluster, routes_local, routes_lock, routes_remote, routes_services  # noqa: F401
        for spec in ROUTES:
            self.app.router.add_route(spec.method, spec.path, self._make_handler(spec))
        self._runner: web.AppRunner | None = None
        self._tls_site: web.BaseSite | None = None

    # ---- listeners ---------------------------------------------------------------------------
    async def setup(self) -> None:
        """Prepare the app; listeners are added by start_unix and start_tls, in any order."""
        if self._runner is None:
            self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
            await self._runner.setup()

    async def start_unix(self, path: str) -> None:
        await self.setup()
        await web.UnixSite(self._runner, path).start()

    async def start_tls(self, sock, ssl_context) -> None:
        await self.setup()
        await self.stop_tls()
        self._tls_site = web.SockSite(self._runner, sock, ssl_context=ssl_context)
        await self._tls_site.start()

    async def stop_tls(self) -> None:
        if self._tls_site is not None:
            await self._tls_site.stop()
            self._tls_site = None

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- dispatch ----------------------------------------------------------------------------
    def _make_handler(self, spec: Route):
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                return await self._handle(spec, request)
            except APIError as exc:
                return _json({"message": exc.message}, exc.status)
            except Exception as exc:  # never a traceback to the client
                log.exception("internal error in %s %s", spec.method, spec.path)
                return _json({"message": f"internal error: {exc.__class__.__name__}: {exc}"}, 500)
        return handle

    async def _handle(self, spec: Route, request: web.Request) -> web.StreamResponse:
        caller = self._authorise(spec, request)
        raw = None
        if request.can_read_body:
            try:
                raw = await request.json()
            except (ValueError, UnicodeDecodeError):
                raise BadRequest("request body is not valid JSON") from None
        body = None
        if spec.body is not None:
            try:
                body = spec.body.model_validate(raw if raw is not None else {})
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ())) or "body"
                raise BadRequest(f"invalid request: {where}: {first.get('msg')}") from None
        ctx = Context(self.node, request, body, caller, raw, request.headers.get(REQUEST_ID) or uuid.uuid4().hex)
        if spec.leader:
            return await self._on_leader(spec, ctx)
        result = await spec.handler(ctx)
        return result if isinstance(result, web.StreamResponse) else _json(result)

    def _authorise(self, spec: Route, request: web.Request) -> str | None:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        if ssl_object is None:  # the local socket
            if spec.access in ("public", "node", "agent"):
                raise Forbidden("this endpoint is served on the management port only")
            return None
        if spec.access == "local":
            raise Forbidden("this endpoint is only available on the local socket")
        if spec.access == "public":
            return None
        identity = peer_identity(ssl_object)
        if spec.access == "agent":  # a manager asking this node's agent (logs): any node may serve it
            if identity is None or identity.role != "manager" or identity.cluster_id != self.node.cluster_id:
                raise Unauthorized("a manager certificate of this swarm is required")
            return identity.node_id
        if identity is None:
            raise Unauthorized("a node certificate of this swarm is required")
        if identity.cluster_id != self.node.cluster_id:
            raise Unauthorized("the certificate belongs to a different swarm")
        if spec.access == "node":
            if request.headers.get(FORWARDED) and self._is_manager_peer(identity):
                return request.headers.get(ORIGIN_NODE) or identity.node_id
            return identity.node_id
        # cluster access: only managers, and only while their record says so
        if self.node.manager is None:
            raise not_a_manager(self.node, request)
        if not self._is_manager_peer(identity):
            raise Forbidden(f"node {identity.node_id} is not a manager of this swarm")
        return request.headers.get(ORIGIN_NODE)

    def _is_manager_peer(self, identity) -> bool:
        if identity.role != "manager" or self.node.manager is None:
            return False
        record = self.node.manager.store.get("node", identity.node_id)
        return record is not None and record["spec"]["role"] == "manager"

    # ---- leader routing ----------------------------------------------------------------------
    async def _on_leader(self, spec: Route, ctx: Context) -> web.StreamResponse:
        forwarded = bool(ctx.request.headers.get(FORWARDED))
        deadline = time.monotonic() + FORWARD_DEADLINE
        while True:
            manager = ctx.manager
            if manager.is_leader:
                try:
                    result = await spec.handler(ctx)
                    return result if isinstance(result, web.StreamResponse) else _json(result)
                except Misdirected:
                    if forwarded:
                        raise
            elif forwarded:
                raise Misdirected("not the leader")
            else:
                answer = await self._forward(ctx)
                if answer is not None:
                    return answer
            if time.monotonic() >= deadline:
                raise NoLeaderError()
            await asyncio.sleep(0.05)

    async def _forward(self, ctx: Context) -> web.Response | None:
        """Send the request to the leader; None means try again (no leader yet, or it moved)."""
        leader_addr = self.node.leader_manager_addr()
        if leader_addr is None:
            return None
        headers = {FORWARDED: "1", REQUEST_ID: ctx.request_id}
        if ctx.caller:
            headers[ORIGIN_NODE] = ctx.caller
        try:
            status, content_type, raw = await self.node.peer.request_raw(
                leader_addr, ctx.request.method, ctx.request.path_qs, ctx.raw_body, headers,
                timeout=FORWARD_DEADLINE + 1)
        except PeerUnreachable as exc:
            log.debug("forward to leader %s failed: %s", leader_addr, exc)
            return None
        if status == 421:
            return None
        if content_type == "application/json":
            return web.Response(body=raw, status=status, content_type="application/json")  # relayed as it is
        return _json({"message": raw.decode("utf-8", errors="replace")}, status)

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
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web, web_protocol, web_server
from pydantic import BaseModel, ValidationError

from swarmctl.api import limits
from swarmctl.api.listener import TLSListener
from swarmctl.api.peer import PeerUnreachable
from swarmctl.errors import (APIError, BadRequest, Forbidden, InsufficientStorage, Misdirected, NoLeaderError, NotAManager,
                             SwarmLocked, Unauthorized, Unavailable)
from swarmctl.security.tls import peer_identity
from swarmctl.state.raft import NoLeader, NotLeader, StorageUnavailable

log = logging.getLogger(__name__)

FORWARD_DEADLINE = 4.0
FORWARDED = "X-Swarmctl-Forwarded"
ORIGIN_NODE = "X-Swarmctl-Origin-Node"
REQUEST_ID = "X-Request-Id"
STALE = "X-Swarmctl-Stale"
CATCH_UP_WAIT = 1.0  # how long a follower waits to apply up to a read index before it forwards the read


_REQUEST_ID = re.compile(limits.REQUEST_ID_PATTERN)


def _on_local_socket(request) -> bool:
    transport = getattr(request, "transport", None)
    return transport is None or transport.get_extra_info("ssl_object") is None


def not_a_manager(node, request) -> APIError:
    """Why a request for a manager cannot be served here.  A manager that is shutting down has already
    stopped its manager parts: it must not claim to be a worker. It tells a forwarding manager to try the
    (next) leader, and a local client to try again.

    A node that is simply not a manager answers 412 on the local socket (this node's state decides it:
    retrying cannot help) and 503 on the management port, where the caller is another node's session
    that then tries the next manager."""
    if getattr(node, "locked", False):  # restarted under autolock: nothing runs until `swarm unlock`
        return SwarmLocked()
    if getattr(node, "stopping", False):
        if request.headers.get(FORWARDED):
            return Misdirected("this manager is shutting down")
        return Unavailable("this node is shutting down; try again, or use another manager")
    error = NotAManager()
    if _on_local_socket(request):
        error.status = 412
    return error


class _JSONErrorHandler(web_protocol.RequestHandler):
    """aiohttp answers a request its parser refuses (a request line or header over 8190 bytes, a bad method,
    broken chunking) in text/plain, before any handler of ours runs. Every error of this API is JSON with a
    one-line message, so these are too; aiohttp still logs them and closes the connection."""

    def handle_error(self, request, status=500, exc=None, message=None):
        plain = super().handle_error(request, status, exc, message)
        if status >= 500:
            text = "internal server error"
        else:
            reason = " ".join(str(message or exc or plain.reason or "").split())
            text = f"bad request: {reason[:200]}" if reason else "bad request"
        resp = web.json_response({"message": text}, status=status)
        resp.force_close()
        return resp


class _JSONErrorServer(web_server.Server):
    """aiohttp's Server, making _JSONErrorHandler connections (it has no hook for its handler class)."""

    def __call__(self):
        return _JSONErrorHandler(self, loop=self._loop, **self._kwargs)


@dataclass
class Route:
    method: str
    path: str
    access: str
    leader: bool
    body: type[BaseModel] | None
    handler: Callable[["Context"], Awaitable[Any]]
    query: type[BaseModel] | None = None
    summary: str = ""
    tags: list[str] = field(default_factory=list)
    timeout: float = 5.0  # how long a forwarded request may take on the leader (membership changes wait for commits)
    status: int = 200     # the status of a successful answer (documented in the OpenAPI description)


ROUTES: list[Route] = []
SESSION_PREFIX = "/v1/session/"  # a node session's routes: a follower redirects them to the leader (421 + "leader")


def route(method: str, path: str, access: str, *, leader: bool = False, body: type[BaseModel] | None = None,
          query: type[BaseModel] | None = None, timeout: float = FORWARD_DEADLINE + 1, status: int = 200):
    """Register a handler: async def handler(ctx) -> JSON-able value. `body` and `query` are the pydantic
    models that validate the request; the OpenAPI description (openapi.py) is built from the same.
    `timeout` bounds a forwarded request on the leader (membership changes wait for their commit). `status` is a
    successful answer's (201 for a create whose handler answers so)."""
    def register(handler):
        summary = (handler.__doc__ or "").strip().split("\n")[0]
        ROUTES.append(Route(method, path, access, leader, body, handler, query, summary, timeout=timeout,
                            status=status))
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
    query: Any = None         # the route's validated query model, if it has one

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


async def _wait_applied(store, index: int, timeout: float) -> bool:
    """Wait until this replica has applied the write at `index` (True), or give up after timeout."""
    deadline = time.monotonic() + timeout
    while store.index < index:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.002)
    return True
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(message: str, status: int) -> web.Response:
    return _json({"message": _one_line(message)}, status)


@web.middleware
async def _json_errors(request, handler):
    """Unknown paths and methods answer in the API's JSON error form too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(f"{exc.reason}: {request.method} {request.path}", exc.status)


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    message = str(first.get("msg") or "invalid value")
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return f"invalid request: {where}: {message}"


def load_routes() -> list[Route]:
    """Every route of the API (importing the route modules registers them)."""
    from swarmctl.api import (openapi, routes_cluster, routes_debug, routes_events, routes_local,  # noqa: F401
                              routes_lock, routes_remote, routes_secrets, routes_services)
    return ROUTES


class APIServer:
    metrics = None  # swarmctl.node.metrics.Metrics: requests by route and code (--metrics-addr)

    def __init__(self, node):
        self.node = node
        self.app = web.Application(client_max_size=limits.MAX_BODY, middlewares=[_json_errors, self._limits])
        for spec in load_routes():
            self.app.router.add_route(spec.method, spec.path, self._make_handler(spec))
        self._runner: web.AppRunner | None = None
        self._tls: TLSListener | None = None

    @web.middleware
    async def _limits(self, request, handler):
        """On the management port: at most MAX_REQUESTS at once, and tell the connection's timers."""
        tls = self._tls
        gate = tls.gate_of(request) if tls is not None else None
        if gate is None:
            return await handler(request)
        if tls.requests >= limits.MAX_REQUESTS:
            response = _error(f"too many requests: this manager is handling {limits.MAX_REQUESTS} already; "
                              "try again shortly", 429)
            response.headers["Retry-After"] = "1"
            return response
        tls.requests += 1
        gate.request_started()
        try:
            return await handler(request)
        finally:
            tls.requests -= 1
            gate.request_finished()

    # ---- listeners ---------------------------------------------------------------------------
    async def setup(self) -> None:
        """Prepare the app; listeners are added by start_unix and start_tls, in any order."""
        if self._runner is None:
            self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
            await self._runner.setup()
            self._runner.server.__class__ = _JSONErrorServer  # errors before any handler runs answer JSON too

    async def start_unix(self, path: str) -> None:
        await self.setup()
        await web.UnixSite(self._runner, path).start()

    async def start_tls(self, sock, ssl_context) -> None:
        """Serve the management port on a bound, listening socket (listener.TLSListener: bounded
        connections, handshake, header, body and idle timeouts)."""
        await self.setup()
        await self.stop_tls()
        self._tls = TLSListener(self._runner.server, ssl_context)
        await self._tls.start(sock)

    async def stop_tls(self) -> None:
        if self._tls is not None:
            await self._tls.stop()
            self._tls = None

    async def stop(self) -> None:
        await self.stop_tls()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- dispatch ----------------------------------------------------------------------------
    def _make_handler(self, spec: Route):
        async def handle(request: web.Request) -> web.StreamResponse:
            response = await answer(request)
            if self.metrics is not None:
                self.metrics.api_requests.labels(spec.method, spec.path, str(response.status)).inc()
            return response

        async def answer(request: web.Request) -> web.StreamResponse:
            try:
                return await self._handle(spec, request)
            except APIError as exc:
                return _error(exc.message, exc.status)
            except NotLeader:  # lost leadership under a handler: the forwarder retries on the next leader
                return _error("this manager is no longer the leader", Misdirected.status)
            except NoLeader as exc:
                return _error(str(exc), NoLeaderError.status)
            except StorageUnavailable as exc:  # this manager's journal cannot be written (disk full)
                return _error(str(exc), InsufficientStorage.status)
            except web.HTTPException as exc:  # aiohttp's own refusals, e.g. 413 for a body over MAX_BODY
                if exc.status < 400:
                    raise
                return _error(exc.text or exc.reason, exc.status)
            except Exception as exc:  # never a traceback to the client
                log.exception("internal error in %s %s", spec.method, spec.path)
                return _error(f"internal error: {exc.__class__.__name__}: {exc}", 500)
        return handle

    async def _read_json(self, request: web.Request):
        """The body as JSON (None without one), within MAX_BODY bytes and BODY_TIMEOUT seconds."""
        if not request.can_read_body:
            return None
        if request.content_length is not None and request.content_length > limits.MAX_BODY:
            raise APIError(f"request body too large: {request.content_length} bytes, at most {limits.MAX_BODY}", 413)
        try:
            data = await asyncio.wait_for(request.read(), limits.BODY_TIMEOUT)
        except asyncio.TimeoutError:
            raise APIError(f"request body not received within {limits.BODY_TIMEOUT:g}s", 408) from None
        except web.HTTPRequestEntityTooLarge:
            raise APIError(f"request body too large: at most {limits.MAX_BODY} bytes", 413) from None
        except ConnectionError:  # the client went away mid-body (a partition, a killed client): nobody to answer
            raise APIError("the client closed the connection before its request body arrived", 400) from None
        if not data:
            return None
        try:
            return json.loads(data.decode(request.charset or "utf-8"))
        except (ValueError, UnicodeDecodeError, LookupError):
            raise BadRequest("request body is not valid JSON") from None
        except RecursionError:
            raise BadRequest("request body is not valid JSON: nested too deeply") from None

    async def _handle(self, spec: Route, request: web.Request) -> web.StreamResponse:
        caller = self._authorise(spec, request)
        request_id = request.headers.get(REQUEST_ID)
        if request_id is not None and not _REQUEST_ID.match(request_id):
            raise BadRequest(f"invalid {REQUEST_ID} header: 1 to {limits.MAX_REQUEST_ID} letters, digits or ._:/+=-")
        query = None
        if spec.query is not None:
            try:
                query = spec.query.model_validate(dict(request.query))
            except ValidationError as exc:
                raise BadRequest(_validation_message(exc).replace("invalid request:", "invalid query:", 1)) from None
        raw = await self._read_json(request)
        body = None
        if spec.body is not None:
            try:
                body = spec.body.model_validate(raw if raw is not None else {})
            except ValidationError as exc:
                raise BadRequest(_validation_message(exc)) from None
            except RecursionError:
                raise BadRequest("invalid request: nested too deeply") from None
        ctx = Context(self.node, request, body, caller, raw, request_id or uuid.uuid4().hex, query)
        if spec.leader:
            return await self._on_leader(spec, ctx)
        stale = False
        if spec.method == "GET" and spec.access == "cluster":
            if ctx.query_flag("stale"):
                stale = True  # the caller asked for this replica's state as it is (say, a manager without quorum)
            else:
                answer = await self._linearize(ctx)
                if answer is not None:  # not caught up: the leader answered instead
                    return answer
        result = await spec.handler(ctx)
        response = result if isinstance(result, web.StreamResponse) else _json(result)
        if stale and not response.prepared:  # a streamed list set the header itself before it started
            response.headers[STALE] = "1"
        return response

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
        try:
            identity = peer_identity(ssl_object)
        except ValueError:  # a certificate of this CA without CN/OU/O: not one of our node certificates
            raise Unauthorized("the certificate is not a swarmctl node certificate") from None
        if spec.access == "agent":  # a manager asking this node's agent (logs): any node may serve it
            if identity is None or identity.role != "manager" or identity.cluster_id != self.node.cluster_id:
                raise Unauthorized("a manager certificate of this swarm is required")
            return identity.node_id
        if identity is None:
            raise Unauthorized("a node certificate of this swarm is required")
        if identity.cluster_id != self.node.cluster_id:
            raise Unauthorized("the certificate belongs to a different swarm")
        if spec.access == "node":
            if request.headers.get(FORWARDED):
                origin = request.headers.get(ORIGIN_NODE) or identity.node_id
                if self._is_manager_peer(identity):
                    return origin
                if origin != identity.node_id:
                    # forwarded for another node by one that is no longer a manager (just demoted): taking
                    # it for the forwarder's own request would answer the origin with the forwarder's record
                    raise Unavailable(f"node {identity.node_id} forwarded a request but is no longer a manager")
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
                except (Misdirected, NotLeader):
                    if forwarded:
                        raise
            elif forwarded:
                raise Misdirected("not the leader")
            elif spec.path.startswith(SESSION_PREFIX) and self.node.leader_manager_addr() is not None:
                # a node's session is not proxied: the follower names the leader and the agent goes there
                # itself (agent/session.py). Proxying a thousand long-polls made the follower the bottleneck:
                # a TLS handshake to the leader per timed-out request, and a wake-up per request every 50 ms
                leader_addr = self.node.leader_manager_addr()
                return _json({"message": f"not the leader: the leader is {leader_addr}", "leader": leader_addr}, 421)
            else:
                answer = await self._forward(ctx, spec.timeout)
                if answer is not None:
                    return answer
            if time.monotonic() >= deadline:
                raise NoLeaderError()
            await asyncio.sleep(0.05)

    async def _linearize(self, ctx: Context) -> web.Response | None:
        """Make a read linearizable: it sees every write acknowledged before it began, on any manager.

        On the leader, a barrier through the log (which also proves it still leads). On a follower, a read
        index from the leader (the leader's barrier), then a wait until this replica has applied that far; a
        replica that does not catch up in time (say, just restarted) forwards the read to the leader, whose
        answer is returned (not None)."""
        store = ctx.store
        forwarded = bool(ctx.request.headers.get(FORWARDED))
        deadline = time.monotonic() + FORWARD_DEADLINE
        while True:
            if store.is_leader():
                try:
                    await store.barrier()
                    return None
                except StorageUnavailable as exc:  # this leader's journal cannot be written: say so
                    raise InsufficientStorage(str(exc)) from None
                except (NotLeader, NoLeader):
                    if getattr(store, "storage_error", None):
                        raise InsufficientStorage(store.storage_error) from None
            elif forwarded:
                raise Misdirected("not the leader")
            else:
                leader_addr = self.node.leader_manager_addr()
                if leader_addr is not None:
                    try:
                        answer = await self._while_leader(leader_addr, self.node.peer.request(
                            leader_addr, "GET", "/v1/raft/read-index", headers={FORWARDED: "1"},
                            timeout=FORWARD_DEADLINE))
                    except PeerUnreachable as exc:
                        log.debug("read index from %s failed: %s", leader_addr, exc)
                    else:
                        status, data = answer if answer is not None else (None, None)
                        if status == 200 and isinstance(data, dict) and isinstance(data.get("index"), int):
                            if await _wait_applied(store, data["index"], CATCH_UP_WAIT):
                                return None
                            answer = await self._forward(ctx)
                            if answer is not None:
                                return answer
            if time.monotonic() >= deadline:
                raise NoLeaderError()
            await asyncio.sleep(0.05)

    async def _while_leader(self, leader_addr: str, call):
        """Await a call to the leader, but give it up (None) once this replica sees another leader: a leader cut
        off by a partition drops packets, and a call to it would otherwise hang to its timeout while the
        majority has long elected and goes on. Giving up is safe: the retry carries the same request id."""
        task = asyncio.ensure_future(call)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=0.05)
                if done:
                    return task.result()
                current = self.node.leader_manager_addr()
                if current is not None and current != leader_addr:
                    return None
        finally:
            if not task.done():
                task.cancel()

    async def _forward(self, ctx: Context, timeout: float = FORWARD_DEADLINE + 1) -> web.Response | None:
        """Send the request to the leader; None means try again (no leader yet, or it moved)."""
        leader_addr = self.node.leader_manager_addr()
        if leader_addr is None:
            return None
        headers = {FORWARDED: "1", REQUEST_ID: ctx.request_id}
        if ctx.caller:
            headers[ORIGIN_NODE] = ctx.caller
        try:
            answer = await self._while_leader(leader_addr, self.node.peer.request_raw(
                leader_addr, ctx.request.method, ctx.request.path_qs, ctx.raw_body, headers, timeout=timeout))
        except PeerUnreachable as exc:
            log.debug("forward to leader %s failed: %s", leader_addr, exc)
            return None
        if answer is None:
            return None
        status, content_type, raw = answer
        if status == 421:
            return None
        if content_type == "application/json":
            return web.Response(body=raw, status=status, content_type="application/json")  # relayed as it is
        return _json({"message": raw.decode("utf-8", errors="replace")}, status)

"""GET /v1/events: the manager's events as JSON lines (chunked), as `docker events` streams them."""

import asyncio
import json
import time

from aiohttp import web

from swarmctl.api.listing import parse_filters
from swarmctl.api.schemas import EventsQuery
from swarmctl.api.server import route
from swarmctl.errors import BadRequest
from swarmctl.manager import events as ev

KEEPALIVE = 5.0  # s between empty writes while nothing happens, so a gone client is noticed


@route("GET", "/v1/events", "local", query=EventsQuery)
async def events(ctx):
    """Stream events (JSON lines) in Raft order: the history from `since`, then live ones until `until`."""
    try:
        filters = ev.parse_filters(parse_filters(ctx.request, ev.FILTERS))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    since, until = ctx.query.since, ctx.query.until
    if since is not None and until is not None and until < since:
        raise BadRequest("`until` is before `since`")
    hub = ctx.manager.events
    store = ctx.store

    def names() -> dict:
        return {n["id"]: (n.get("description") or {}).get("hostname") for n in store.list("node")}

    node_names = names() if "node" in filters else None
    past, queue = hub.subscribe(since)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    try:
        await response.prepare(ctx.request)
        limit_ns = until * 1e9 if until is not None else None

        async def send(batch) -> bool:
            """False once past `until`."""
            lines = []
            for change in batch:
                event = change.event()
                if limit_ns is not None and event["timeNano"] > limit_ns:
                    return False
                if matches(event):
                    lines.append(json.dumps(event, separators=(",", ":")) + "\n")
            if lines:
                await response.write("".join(lines).encode())
            return True

        def matches(event) -> bool:
            nonlocal node_names
            if node_names is not None and event["Type"] == "node":
                node_names = names()
            return ev.matches(event, filters, node_names)

        if not await send(past):
            return response
        while True:
            timeout = KEEPALIVE
            if until is not None:
                left = until - time.time()
                if left <= 0:
                    break
                timeout = min(timeout, left)
            try:
                batch = await asyncio.wait_for(queue.get(), timeout)
            except asyncio.TimeoutError:
                await response.write(b"")
                continue
            if batch is None:
                break  # the manager stops
            if batch == ev.OVERFLOW:
                await response.write(b'{"error":"this client fell too far behind; events were dropped"}\n')
                break
            if not await send(batch):
                break
        await response.write_eof()
    except ConnectionError:  # the client went away (`swarmctl events` stopped): nothing more to send
        pass
    finally:
        hub.unsubscribe(queue)
    return response

"""List endpoints at scale: Docker's filters applied on the server, and JSON arrays streamed in chunks.

Filters come as repeated `?filter=KEY=VALUE` query parameters (the CLI's `--filter KEY=VALUE`, as in Docker).
Values of one key are alternatives (OR); different keys must all match (AND), as in Docker. An unknown key answers
400 with Docker's text `invalid filter 'KEY'`.

A large list (100,000 tasks serialise to about 74 MB) is not built as one string: the array is written in chunks
of CHUNK items, each serialised and sent before the next is built, so the event loop serves heartbeats in between
and the daemon's memory holds one chunk of JSON at a time. The records come from one read of the store (records are
replaced, never mutated), so the stream shows one consistent state.
"""

from __future__ import annotations

import asyncio
import json
from typing import Callable, Iterable

from aiohttp import web

from swarmctl.errors import BadRequest

CHUNK = 500            # items serialised per write
STREAM_ABOVE = 1000    # smaller lists are answered in one piece


def parse_filters(request: web.Request, allowed: Iterable[str]) -> dict[str, list[str]]:
    """{key: [values]} from ?filter=KEY=VALUE (repeatable); 400 for a malformed or unknown filter."""
    allowed = set(allowed)
    filters: dict[str, list[str]] = {}
    for raw in request.query.getall("filter", []):
        key, sep, value = raw.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadRequest(f"bad format of filter (expected name=value): {raw!r}")
        if key not in allowed:
            raise BadRequest(f"invalid filter '{key}'")
        filters.setdefault(key, []).append(value)
    return filters


def check_values(filters: dict[str, list[str]], key: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    for value in filters.get(key, ()):
        if value not in choices:
            raise BadRequest(f"invalid filter '{key}={value}': must be one of {', '.join(choices)}")


def match_labels(labels: dict | None, wanted: list[str]) -> bool:
    """Docker's label filter: every `K` must be present, every `K=V` must hold."""
    labels = labels or {}
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def prefix_any(value: str | None, wanted: list[str]) -> bool:
    return value is not None and any(value.startswith(w) for w in wanted)


async def respond(request: web.Request, items: list, view: Callable[[object], dict] = lambda x: x):
    """The items as a JSON array: one response for a small list, a chunked stream for a large one."""
    if len(items) <= STREAM_ABOVE:
        return [view(item) for item in items]
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    if request.query.get("stale", "").lower() in ("1", "true", "yes"):
        response.headers["X-Swarmctl-Stale"] = "1"  # server.STALE (not imported: server imports the routes)
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(b"[")
    for start in range(0, len(items), CHUNK):
        text = ",".join(json.dumps(view(item), default=str) for item in items[start:start + CHUNK])
        await response.write(((b"," if start else b"") + text.encode()))
        await asyncio.sleep(0)  # let heartbeats and other requests in between chunks
    await response.write(b"]")
    await response.write_eof()
    return response

"""Lists at scale: Docker's filters applied on the server, and large arrays streamed in chunks."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from swarmctl.api import listing
from swarmctl.api.routes_services import service_filter, task_filter
from swarmctl.cli.client import CLIError, filter_query
from swarmctl.errors import BadRequest


def _request(query: str):
    return make_mocked_request("GET", "/v1/tasks" + query)


def test_filters_parse_repeated_keys_and_refuse_unknown_ones():
    assert listing.parse_filters(_request("?filter=name%3Dweb&filter=name%3Dapi&filter=node%3Dn1"),
                                 ("name", "node")) == {"name": ["web", "api"], "node": ["n1"]}
    with pytest.raises(BadRequest, match="invalid filter 'colour'"):
        listing.parse_filters(_request("?filter=colour%3Dred"), ("name",))
    with pytest.raises(BadRequest, match="bad format of filter"):
        listing.parse_filters(_request("?filter=name"), ("name",))


class _Store:
    def __init__(self, nodes, services):
        self._records = {"node": nodes, "service": services}

    def list(self, kind):
        return list(self._records[kind])


def _task(i, service="svc1", name="web", node="node-a", desired="running"):
    return {"id": f"task{i:04d}", "service_id": service, "service_name": name, "slot": i, "node_id": node,
            "desired_state": desired, "status": {"state": "running"}}


def test_task_filters_follow_docker():
    store = _Store([{"id": "node-a", "description": {"hostname": "alpha"}},
                    {"id": "node-b", "description": {"hostname": "beta"}}],
                   [{"id": "svc1", "spec": {"name": "web"}}, {"id": "svc2", "spec": {"name": "api"}}])
    tasks = [_task(1), _task(2, node="node-b"), _task(3, desired="shutdown"), _task(4, "svc2", "api", "node-b")]

    def ids(**filters):
        keep = task_filter(store, {k.replace("_", "-"): v for k, v in filters.items()})
        return [t["id"] for t in tasks if keep(t)]
    assert ids(desired_state=["running"]) == ["task0001", "task0002", "task0004"]
    assert ids(desired_state=["shutdown"]) == ["task0003"]
    assert ids(node=["beta"]) == ids(node=["node-b"]) == ["task0002", "task0004"]
    assert ids(node=["beta"], desired_state=["running"], service=["web"]) == ["task0002"]
    assert ids(name=["web.1"]) == ["task0001"]
    assert ids(id=["task000"], service=["svc2"]) == ["task0004"]
    assert ids(node=["nowhere"]) == []
    tasks[1]["spec"] = {"labels": {"tier": "front", "x": "1"}}  # node ps -f label=: the task's container labels
    assert ids(label=["tier"]) == ids(label=["tier=front", "x"]) == ["task0002"] and ids(label=["tier=back"]) == []
    with pytest.raises(BadRequest, match="invalid filter 'desired-state=dead'"):
        task_filter(store, {"desired-state": ["dead"]})


def test_service_filters_follow_docker():
    services = [{"id": "abc", "spec": {"name": "web", "mode": "replicated", "labels": {"tier": "front"}}},
                {"id": "def", "spec": {"name": "worker", "mode": "global", "labels": {}}}]

    def names(**filters):
        keep = service_filter(filters)
        return [s["spec"]["name"] for s in services if keep(s)]
    assert names(name=["w"]) == ["web", "worker"]
    assert names(mode=["global"]) == ["worker"]
    assert names(label=["tier"]) == names(label=["tier=front"]) == ["web"]
    assert names(label=["tier=back"]) == []
    assert names(id=["de"]) == ["worker"]
    with pytest.raises(BadRequest, match="invalid filter 'mode=both'"):
        service_filter({"mode": ["both"]})


def test_the_cli_sends_filters_to_the_server_and_checks_their_form():
    assert filter_query(["desired-state=running", "node=n 1"]) == \
        "?filter=desired-state%3Drunning&filter=node%3Dn%201"
    assert filter_query([], "&") == "" and filter_query(["a=b"], "&") == "&filter=a%3Db"
    with pytest.raises(CLIError, match="bad format of filter"):
        filter_query(["running"])


def test_a_large_list_is_streamed_in_chunks_and_reads_back_whole():
    items = [{"id": i, "pad": "x" * 50} for i in range(listing.STREAM_ABOVE * 3 + 7)]
    ticks = []

    async def handler(request):
        return await listing.respond(request, items, lambda item: dict(item, seen=True))

    async def ticker():
        while True:
            ticks.append(1)
            await asyncio.sleep(0)

    async def main():
        app = web.Application()
        app.router.add_get("/list", handler)
        app.router.add_get("/small", _small)
        async with TestClient(TestServer(app)) as client:
            tick = asyncio.create_task(ticker())
            response = await client.get("/list")
            assert response.headers.get("Transfer-Encoding") == "chunked"
            body = json.loads(await response.text())
            small = await (await client.get("/small")).json()
            tick.cancel()
            return body, small

    async def _small(request):
        result = await listing.respond(request, items[:3])
        return web.json_response(result)
    body, small = asyncio.run(main())
    assert len(body) == len(items) and body[-1] == dict(items[-1], seen=True)
    assert small == items[:3]
    assert len(ticks) >= len(items) // listing.CHUNK  # the loop ran other work between chunks

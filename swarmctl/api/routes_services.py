"""Service and task routes (managers only), the cluster settings update, and task logs."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from swarmctl.api.peer import PeerUnreachable
from swarmctl.api.schemas import ScaleRequest, ServiceCreateRequest, ServiceUpdateRequest, SwarmUpdateRequest
from swarmctl.api.server import route
from swarmctl.errors import APIError, BadRequest
from swarmctl.manager import services
from swarmctl.manager.writes import commit
from swarmctl.state.records import task_name


def _body(model) -> dict:
    return model.model_dump(exclude_none=True)


async def check_image(ctx, image: str | None) -> None:
    """Refuse an image that no ready node has: swarmctl never pulls, so such a task could never run."""
    if not image:
        return
    nodes = [n for n in ctx.store.list("node") if n["status"]["state"] == "ready"]

    async def ask(node):
        try:
            answer = await ctx.node.peer.call(node["description"]["addrs"]["manager"], "GET",
                                              f"/v1/agent/images?name={quote(image, safe='')}", timeout=3)
            return bool(answer.get("present"))
        except (PeerUnreachable, APIError):
            return None
    answers = await asyncio.gather(*(ask(n) for n in nodes))
    if any(a is True for a in answers):
        return
    if any(a is False for a in answers):
        raise BadRequest(f"image {image} not found on any node: swarmctl does not pull images, "
                         "load it into the nodes' engines first (docker load / docker import)")


@route("GET", "/v1/services", "cluster")
async def list_services(ctx):
    items = sorted(ctx.store.list("service"), key=lambda s: s["spec"]["name"])
    return [services.service_view(ctx.store, s) for s in items]


@route("POST", "/v1/services", "cluster", leader=True, body=ServiceCreateRequest)
async def create_service(ctx):
    await check_image(ctx, ctx.body.task.image)
    return await services.create(ctx.store, _body(ctx.body), request_id=ctx.request_id)


@route("GET", "/v1/services/{ref}", "cluster")
async def inspect_service(ctx):
    return services.service_view(ctx.store, services.resolve_service(ctx.store, ctx.request.match_info["ref"]))


@route("POST", "/v1/services/{ref}/update", "cluster", leader=True, body=ServiceUpdateRequest)
async def update_service(ctx):
    if ctx.body.task is not None and ctx.body.task.image:
        await check_image(ctx, ctx.body.task.image)
    return await services.update(ctx.store, ctx.request.match_info["ref"], _body(ctx.body), request_id=ctx.request_id)


@route("POST", "/v1/services/{ref}/scale", "cluster", leader=True, body=ScaleRequest)
async def scale_service(ctx):
    return await services.update(ctx.store, ctx.request.match_info["ref"], {"replicas": ctx.body.replicas},
                                 request_id=ctx.request_id)


@route("DELETE", "/v1/services/{ref}", "cluster", leader=True)
async def remove_service(ctx):
    await services.remove(ctx.store, ctx.request.match_info["ref"])
    return {}


@route("GET", "/v1/services/{ref}/tasks", "cluster")
async def service_tasks(ctx):
    service = services.resolve_service(ctx.store, ctx.request.match_info["ref"])
    return services.list_tasks(ctx.store, service)


@route("GET", "/v1/services/{ref}/progress", "cluster")
async def service_progress(ctx):
    return services.converged(ctx.store, services.resolve_service(ctx.store, ctx.request.match_info["ref"]))


@route("GET", "/v1/tasks", "cluster")
async def list_tasks(ctx):
    return services.list_tasks(ctx.store)


@route("POST", "/v1/swarm/update", "cluster", leader=True, body=SwarmUpdateRequest)
async def update_swarm(ctx):
    cluster = ctx.manager.membership.cluster()
    sets = []
    if ctx.body.default_strategy:
        sets.append((["spec", "default_strategy"], ctx.body.default_strategy))
    if ctx.body.node_cert_expiry is not None:
        sets.append((["spec", "node_cert_expiry"], ctx.body.node_cert_expiry))
    if sets:
        await commit(ctx.store, [{"op": "patch", "kind": "cluster", "id": cluster["id"], "set": sets}])
    return {"spec": ctx.manager.membership.cluster()["spec"]}


@route("GET", "/v1/services/{ref}/logs", "cluster")
async def service_logs(ctx):
    """Container output of every task of the service, gathered from each node's agent."""
    service = services.resolve_service(ctx.store, ctx.request.match_info["ref"])
    tail = ctx.request.query.get("tail")
    tasks = [t for t in ctx.store.find("task", "service_id", service["id"])
             if t.get("node_id") and t["status"].get("container_id")]

    async def fetch(task):
        node = ctx.store.get("node", task["node_id"])
        name = f"{task_name(task)}.{task['id'][:12]}@{node['description']['hostname'] if node else task['node_id']}"
        if node is None:
            return name, [], "node is gone"
        path = f"/v1/agent/logs/{task['id']}" + (f"?tail={int(tail)}" if tail and tail.isdigit() else "")
        try:
            answer = await ctx.node.peer.call(node["description"]["addrs"]["manager"], "GET", path, timeout=10)
            return name, answer["lines"], None
        except (PeerUnreachable, APIError) as exc:
            return name, [], str(exc)
    results = await asyncio.gather(*(fetch(t) for t in sorted(tasks, key=lambda t: (t["slot"] or 0, t["id"]))))
    return {"logs": [{"task": name, "lines": lines, "error": error} for name, lines, error in results]}

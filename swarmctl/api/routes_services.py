"""Service and task routes (managers only), the cluster settings update, and task logs."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from swarmctl.api.peer import PeerUnreachable
from swarmctl.api.schemas import (ScaleRequest, ServiceCreateRequest, ServiceUpdateRequest, SwarmUpdateRequest,
                                  TailQuery, VersionQuery)
from swarmctl.api.server import route
from swarmctl.errors import APIError, BadRequest, OutOfSequence
from swarmctl.manager import services
from swarmctl.manager.idempotent import run_once
from swarmctl.state.records import public_cluster, task_name


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
    """List services, sorted by name."""
    items = sorted(ctx.store.list("service"), key=lambda s: s["spec"]["name"])
    return [services.service_view(ctx.store, s) for s in items]


@route("POST", "/v1/services", "cluster", leader=True, body=ServiceCreateRequest)
async def create_service(ctx):
    """Create a service; a retry with the same X-Request-Id returns the same service."""
    await check_image(ctx, ctx.body.task.image)
    return await services.create(ctx.store, _body(ctx.body), request_id=ctx.request_id)


@route("GET", "/v1/services/{ref}", "cluster")
async def inspect_service(ctx):
    """One service."""
    return services.service_view(ctx.store, services.resolve_service(ctx.store, ctx.request.match_info["ref"]))


@route("POST", "/v1/services/{ref}/update", "cluster", leader=True, body=ServiceUpdateRequest, query=VersionQuery)
async def update_service(ctx):
    """Change a service (a partial spec); ?version=N refuses a stale read with 409."""
    if ctx.body.task is not None and ctx.body.task.image:
        await check_image(ctx, ctx.body.task.image)
    return await services.update(ctx.store, ctx.request.match_info["ref"], _body(ctx.body), request_id=ctx.request_id,
                                 version=ctx.query.version)


@route("POST", "/v1/services/{ref}/scale", "cluster", leader=True, body=ScaleRequest, query=VersionQuery)
async def scale_service(ctx):
    """Set a replicated service's replicas; ?version=N refuses a stale read with 409."""
    return await services.update(ctx.store, ctx.request.match_info["ref"], {"replicas": ctx.body.replicas},
                                 request_id=ctx.request_id, version=ctx.query.version, scope="service.scale")


@route("DELETE", "/v1/services/{ref}", "cluster", leader=True)
async def remove_service(ctx):
    """Remove a service; a retry of a removal that was applied succeeds too."""
    await services.remove(ctx.store, ctx.request.match_info["ref"], request_id=ctx.request_id)
    return {}


@route("GET", "/v1/services/{ref}/tasks", "cluster")
async def service_tasks(ctx):
    """The tasks of a service, history included."""
    service = services.resolve_service(ctx.store, ctx.request.match_info["ref"])
    return services.list_tasks(ctx.store, service)


@route("GET", "/v1/services/{ref}/progress", "cluster")
async def service_progress(ctx):
    """How far a service has converged on its spec."""
    return services.converged(ctx.store, services.resolve_service(ctx.store, ctx.request.match_info["ref"]))


@route("GET", "/v1/tasks", "cluster")
async def list_tasks(ctx):
    """All tasks."""
    return services.list_tasks(ctx.store)


# A swarm update without a version is planned again this often after a concurrent change of the cluster record.
UNVERSIONED_RETRIES = 20


@route("POST", "/v1/swarm/update", "cluster", leader=True, body=SwarmUpdateRequest, query=VersionQuery)
async def update_swarm(ctx):
    """Change swarm-wide settings; ?version=N (the cluster's version) refuses a stale read with 409."""
    membership, version, body = ctx.manager.membership, ctx.query.version, ctx.body

    def plan():
        cluster = membership.cluster()
        if version is not None and cluster.get("version") != version:
            raise OutOfSequence()
        sets = []
        if body.default_strategy and body.default_strategy != cluster["spec"].get("default_strategy"):
            sets.append((["spec", "default_strategy"], body.default_strategy))
        if body.node_cert_expiry is not None and body.node_cert_expiry != cluster["spec"].get("node_cert_expiry"):
            sets.append((["spec", "node_cert_expiry"], body.node_cert_expiry))
        if body.task_history_limit is not None and body.task_history_limit != cluster["spec"].get("task_history_limit"):
            sets.append((["spec", "task_history_limit"], body.task_history_limit))
        if not sets:
            return None, {}
        return [{"op": "patch", "kind": "cluster", "id": cluster["id"], "if_version": cluster["version"],
                 "set": sets}], {}

    def answer(_reply):
        cluster = membership.cluster()
        return {"spec": cluster["spec"], "version": public_cluster(cluster)["version"]}

    return await run_once(ctx.store, "swarm.update", ctx.request_id, plan, answer,
                          retries=0 if version is not None else UNVERSIONED_RETRIES)


@route("GET", "/v1/services/{ref}/logs", "cluster", query=TailQuery)
async def service_logs(ctx):
    """Container output of every task of the service, gathered from each node's agent."""
    service = services.resolve_service(ctx.store, ctx.request.match_info["ref"])
    tail = ctx.query.tail
    tasks = [t for t in ctx.store.find("task", "service_id", service["id"])
             if t.get("node_id") and t["status"].get("container_id")]

    async def fetch(task):
        node = ctx.store.get("node", task["node_id"])
        name = f"{task_name(task)}.{task['id'][:12]}@{node['description']['hostname'] if node else task['node_id']}"
        if node is None:
            return name, [], "node is gone"
        path = f"/v1/agent/logs/{task['id']}" + (f"?tail={tail}" if tail is not None else "")
        try:
            answer = await ctx.node.peer.call(node["description"]["addrs"]["manager"], "GET", path, timeout=10)
            return name, answer["lines"], None
        except (PeerUnreachable, APIError) as exc:
            return name, [], str(exc)
    results = await asyncio.gather(*(fetch(t) for t in sorted(tasks, key=lambda t: (t["slot"] or 0, t["id"]))))
    return {"logs": [{"task": name, "lines": lines, "error": error} for name, lines, error in results]}

"""Service and task routes (managers only), the cluster settings update, and task logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from urllib.parse import quote

from aiohttp import web

from swarmctl.api import listing
from swarmctl.api.peer import PeerUnreachable
from swarmctl.api.schemas import (ScaleRequest, ServiceCreateRequest, ServiceUpdateRequest, SwarmUpdateRequest,
                                  LogsQuery, VersionQuery)
from swarmctl.api.server import route
from swarmctl.errors import APIError, BadRequest, NotFound, OutOfSequence
from swarmctl.manager import logs as logstream
from swarmctl.manager import nodes, services
from swarmctl.manager.idempotent import run_once
from swarmctl.state import raftsettings
from swarmctl.state.records import public_cluster, task_name


def _body(model) -> dict:
    return model.model_dump(exclude_none=True)


async def check_image(ctx, image: str | None) -> None:
    """Refuse an image that no ready node has: swarmctl never pulls, so such a task could never run.

    Nodes are asked IMAGE_ASK_PARALLEL at a time in random order, and the first that has the image ends the
    check, so a create costs a few calls with 1,000 nodes, not 1,000. Nodes that do not answer within
    IMAGE_ASK_DEADLINE count as unknown: the create is refused only when nodes answered and none has it."""
    if not image:
        return
    addrs = list({(n.get("description") or {}).get("addrs", {}).get("manager") for n in ctx.store.list("node")
                  if n["status"]["state"] == "ready"} - {None})
    random.shuffle(addrs)  # one question per address: a hollow process answers for all its nodes on one

    async def ask(addr):
        try:
            answer = await ctx.node.peer.call(addr, "GET",
                                              f"/v1/agent/images?name={quote(image, safe='')}", timeout=3)
            return bool(answer.get("present"))
        except (PeerUnreachable, APIError, KeyError, TypeError):
            return None
    deadline = time.monotonic() + IMAGE_ASK_DEADLINE
    answered_no = False
    for start in range(0, len(addrs), IMAGE_ASK_PARALLEL):
        answers = await asyncio.gather(*(ask(a) for a in addrs[start:start + IMAGE_ASK_PARALLEL]))
        if any(a is True for a in answers):
            return
        answered_no = answered_no or any(a is False for a in answers)
        if time.monotonic() >= deadline:
            break
    if answered_no:
        raise BadRequest(f"image {image} not found on any node: swarmctl does not pull images, "
                         "load it into the nodes' engines first (docker load / docker import)")


IMAGE_ASK_PARALLEL = 16
IMAGE_ASK_DEADLINE = 5.0


SERVICE_FILTERS = ("id", "label", "mode", "name")
TASK_FILTERS = ("id", "name", "node", "desired-state")
DESIRED_STATES = ("running", "shutdown", "accepted")


def service_filter(filters: dict[str, list[str]]):
    """A predicate for Docker's `service ls` filters: id and name prefixes, label, mode."""
    listing.check_values(filters, "mode", ("replicated", "global"))

    def keep(service: dict) -> bool:
        spec = service["spec"]
        return (("id" not in filters or listing.prefix_any(service["id"], filters["id"]))
                and ("name" not in filters or listing.prefix_any(spec["name"], filters["name"]))
                and ("mode" not in filters or spec["mode"] in filters["mode"])
                and ("label" not in filters or listing.match_labels(spec.get("labels"), filters["label"])))
    return keep


def task_filter(store, filters: dict[str, list[str]]):
    """A predicate for Docker's `service ps` filters: id and name prefixes, node (id, id prefix or hostname),
    desired-state (running, shutdown or accepted); and `service` (id or name) on /v1/tasks."""
    listing.check_values(filters, "desired-state", DESIRED_STATES)
    nodes = None
    if "node" in filters:
        nodes = set()
        for value in filters["node"]:
            for node in store.list("node"):
                if node["id"].startswith(value) or node["description"]["hostname"] == value:
                    nodes.add(node["id"])
    service_ids = None
    if "service" in filters:
        service_ids = {s["id"] for s in store.list("service")
                       if any(s["id"].startswith(v) or s["spec"]["name"] == v for v in filters["service"])}

    def keep(task: dict) -> bool:
        if "id" in filters and not listing.prefix_any(task["id"], filters["id"]):
            return False
        if "name" in filters and not listing.prefix_any(task_name(task), filters["name"]):
            return False
        if nodes is not None and task.get("node_id") not in nodes:
            return False
        if service_ids is not None and task["service_id"] not in service_ids:
            return False
        if "label" in filters and not listing.match_labels((task.get("spec") or {}).get("labels"), filters["label"]):
            return False  # `node ps -f label=K[=V]`: the task's (container) labels
        if "desired-state" in filters:
            desired = task["desired_state"]
            wanted = filters["desired-state"]
            if not (("running" in wanted and desired == "running")
                    or ("shutdown" in wanted and desired not in ("running", "accepted", "ready"))
                    or ("accepted" in wanted and desired in ("accepted", "ready"))):
                return False
        return True
    return keep


@route("GET", "/v1/services", "cluster")
async def list_services(ctx):
    """List services, sorted by name; ?filter=KEY=VALUE (id, label, mode, name) as Docker's `service ls -f`."""
    keep = service_filter(listing.parse_filters(ctx.request, SERVICE_FILTERS))
    items = sorted((s for s in ctx.store.list("service") if keep(s)), key=lambda s: s["spec"]["name"])
    return await listing.respond(ctx.request, items, lambda s: services.service_view(ctx.store, s))


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


@route("POST", "/v1/services/{ref}/rollback", "cluster", leader=True)
async def rollback_service(ctx):
    """Go back to the previous spec (`service rollback`), rolled out with the rollback config."""
    return await services.rollback(ctx.store, ctx.request.match_info["ref"], request_id=ctx.request_id)


@route("POST", "/v1/services/{ref}/rebalance", "cluster", leader=True)
async def rebalance_service(ctx):
    """Move the service's tasks toward an even spread over its eligible nodes, once (`service rebalance`)."""
    return await services.request_rebalance(ctx.store, ctx.request.match_info["ref"], request_id=ctx.request_id)


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
    """The tasks of a service, history included; ?filter=KEY=VALUE (id, name, node, desired-state) as Docker's
    `service ps -f`. A large list is streamed."""
    filters = listing.parse_filters(ctx.request, TASK_FILTERS)
    service = services.resolve_service(ctx.store, ctx.request.match_info["ref"])
    return await _tasks(ctx, filters, service)


async def _tasks(ctx, filters, service=None):
    keep = task_filter(ctx.store, filters)
    tasks = [t for t in services.sorted_tasks(ctx.store, service) if keep(t)]
    node_names = {}

    def view(task):
        return services.task_view(ctx.store, task, node_names)
    return await listing.respond(ctx.request, tasks, view)


@route("GET", "/v1/services/{ref}/progress", "cluster")
async def service_progress(ctx):
    """How far a service has converged on its spec."""
    return services.converged(ctx.store, services.resolve_service(ctx.store, ctx.request.match_info["ref"]))


NODE_TASK_FILTERS = ("id", "name", "label", "desired-state")


@route("GET", "/v1/nodes/{ref}/tasks", "cluster")
async def node_tasks(ctx):
    """The tasks assigned to a node (`node ps`; `self` is this node), history included; ?filter=KEY=VALUE
    (id, name, label, desired-state) as Docker's `node ps -f`. A large list is streamed."""
    filters = listing.parse_filters(ctx.request, NODE_TASK_FILTERS)
    ref = ctx.request.match_info["ref"]
    node = nodes.resolve_node(ctx.store, ctx.node.node_id if ref == "self" else ref)
    keep = task_filter(ctx.store, filters)
    tasks = [t for t in services.sorted_tasks(ctx.store) if t.get("node_id") == node["id"] and keep(t)]
    node_names = {}
    return await listing.respond(ctx.request, tasks, lambda t: services.task_view(ctx.store, t, node_names))


@route("GET", "/v1/tasks", "cluster")
async def list_tasks(ctx):
    """All tasks; ?filter=KEY=VALUE (id, name, node, desired-state, service). A large list is streamed."""
    return await _tasks(ctx, listing.parse_filters(ctx.request, TASK_FILTERS + ("service",)))


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
        if body.default_rebalance and body.default_rebalance != cluster["spec"].get("default_rebalance", "never"):
            sets.append((["spec", "default_rebalance"], body.default_rebalance))
        if body.node_cert_expiry is not None and body.node_cert_expiry != cluster["spec"].get("node_cert_expiry"):
            sets.append((["spec", "node_cert_expiry"], body.node_cert_expiry))
        if body.task_history_limit is not None and body.task_history_limit != cluster["spec"].get("task_history_limit"):
            sets.append((["spec", "task_history_limit"], body.task_history_limit))
        settings = {key: getattr(body, key) for key in raftsettings.KEYS}
        try:
            checked = raftsettings.check(settings, cluster["spec"])
        except raftsettings.SettingError as exc:
            raise BadRequest(str(exc)) from None
        for key, value in checked.items():
            if value != cluster["spec"].get(key):
                sets.append((["spec", key], value))
        if body.task_port_range is not None:
            low, high = body.task_port_range
            if low > high:
                raise BadRequest(f"invalid task port range {low}-{high}: the first port must not be above the last")
            if list(body.task_port_range) != cluster["spec"].get("task_port_range"):
                sets.append((["spec", "task_port_range"], [low, high]))
        if not sets:
            return None, {}
        return [{"op": "patch", "kind": "cluster", "id": cluster["id"], "if_version": cluster["version"],
                 "set": sets}], {}

    def answer(_reply):
        cluster = membership.cluster()
        return {"spec": cluster["spec"], "version": public_cluster(cluster)["version"]}

    return await run_once(ctx.store, "swarm.update", ctx.request_id, plan, answer,
                          retries=0 if version is not None else UNVERSIONED_RETRIES)


def _logs_target(store, ref: str) -> tuple[dict, str | None]:
    """SERVICE or TASK (an id or a unique id prefix of a task): the service and the one task, if a task."""
    try:
        return services.resolve_service(store, ref), None
    except NotFound:
        tasks = [t for t in store.list("task") if ref and (t["id"] == ref or t["id"].startswith(ref))]
        if len(tasks) != 1:
            raise NotFound(f"no such task or service: {ref}") from None
        service = store.get("service", tasks[0]["service_id"])
        if service is None:
            raise NotFound(f"no such task or service: {ref}") from None
        return service, tasks[0]["id"]


@route("GET", "/v1/services/{ref}/logs", "cluster", query=LogsQuery)
async def service_logs(ctx):
    """Container output of every task of the service (or of one task), gathered from each node's agent and
    merged in timestamp order; streamed as newline-delimited JSON (manager/logs.py). ?follow=1 follows."""
    store, q = ctx.store, ctx.query
    service, only = _logs_target(store, ctx.request.match_info["ref"])

    def tasks_now() -> list[dict]:
        found = store.find("task", "service_id", service["id"])
        return sorted((t for t in found if (only is None or t["id"] == only)
                       and t.get("node_id") and t["status"].get("container_id")),
                      key=lambda t: (t["slot"] if t["slot"] is not None else 0, t["id"]))

    async def fetch(task, tail, since):
        node = store.get("node", task["node_id"])
        if node is None:
            raise PeerUnreachable("its node has left the swarm")
        if node["status"]["state"] == "down":
            raise PeerUnreachable(f"node {node['description']['hostname']} is down")
        path = f"/v1/agent/logs/{task['id']}?timestamps=1"
        if tail is not None:
            path += f"&tail={tail}"
        if since:
            path += f"&since={since:.6f}"
        try:
            answer = await asyncio.wait_for(
                ctx.node.peer.call(node["description"]["addrs"]["manager"], "GET", path,
                                   timeout=logstream.NODE_TIMEOUT), logstream.NODE_TIMEOUT + 1)
        except asyncio.TimeoutError:
            raise PeerUnreachable(f"node {node['description']['hostname']} did not answer within "
                                  f"{logstream.NODE_TIMEOUT:g}s") from None
        except PeerUnreachable as exc:
            raise PeerUnreachable(f"node {node['description']['hostname']} is unreachable: {exc}") from None
        if "entries" in answer:
            return [(int(ns), line) for ns, line in answer["entries"]]
        return [(0, line) for line in answer.get("lines") or []]  # an agent without timestamps (hollow)

    def ctx_of(task):
        return logstream.context(task, store.get("node", task["node_id"]))

    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    response.enable_chunked_encoding()
    await response.prepare(ctx.request)

    async def send(records: list[dict]) -> None:
        if records:
            await response.write("".join(json.dumps(r) + "\n" for r in records).encode())

    if not q.follow:
        tasks = tasks_now()
        entries, errors = await logstream.fetch_once(tasks, fetch, q.tail, q.since)
        contexts = {t["id"]: ctx_of(t) for t in tasks}
        streams = [[(ts, i, n, line) for ts, n, line in entries[t["id"]]] for i, t in enumerate(tasks)]
        try:
            await send([{"warning": f"logs of task {logstream.prefix(contexts[tid])} are missing: {err}",
                         "task": contexts[tid]} for tid, err in errors.items()])
            batch = []
            for ts, i, _n, line in logstream.merge(streams):
                batch.append({"ts": ts, "task": contexts[tasks[i]["id"]], "line": line})
                if len(batch) >= 500:
                    await send(batch)
                    batch = []
            await send(batch)
            await response.write_eof()
        except ConnectionResetError:  # the client went away
            pass
        return response

    buffer = logstream.ReorderBuffer()
    followers: dict[str, asyncio.Task] = {}
    contexts: dict[str, dict] = {}
    pending: list[dict] = []

    def out(task, ts, line):
        buffer.push(ts, {"ts": ts, "task": contexts[task["id"]], "line": line})

    def warn(task, reason):
        pending.append({"warning": f"logs of task {logstream.prefix(contexts[task['id']])} are missing: {reason}",
                        "task": contexts[task["id"]]})

    def is_ended(task_id):
        t = store.get("task", task_id)
        return t is None or (t["status"]["state"] in logstream.ENDED and t.get("desired_state") != "running")

    try:
        while True:
            if store.get("service", service["id"]) is None and not followers:
                break
            for t in tasks_now():
                if t["id"] in contexts:  # followed already (an ended task's follower fetches once more, then ends)
                    continue
                contexts[t["id"]] = ctx_of(t)
                f = logstream.Follower(t, fetch, out, warn, is_ended, None, q.tail, q.since)
                followers[t["id"]] = asyncio.ensure_future(f.run())
            for tid, fut in list(followers.items()):
                if fut.done():
                    followers.pop(tid)
            if only is not None and not followers and only in contexts:
                await send(pending + buffer.pop_ready(flush=True))
                break
            ready, pending[:] = pending[:] + buffer.pop_ready(), []
            await send(ready)
            await asyncio.sleep(logstream.POLL_INTERVAL / 2)
    except ConnectionResetError:  # the client went away (Ctrl-C)
        pass
    finally:
        for fut in followers.values():
            fut.cancel()
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await response.write_eof()
    return response

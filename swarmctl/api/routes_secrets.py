"""Secret and config routes (managers only; writes on the leader), and the node session's route that delivers a
task's files. The logic is manager/secrets.py's; the same routes serve both kinds under /v1/secrets and
/v1/configs."""

from __future__ import annotations

from aiohttp import web

from swarmctl.api import listing
from swarmctl.api.schemas import SecretCreateRequest, SecretMatchRequest, SecretUpdateRequest, TaskFilesRequest, \
    VersionQuery
from swarmctl.api.server import route
from swarmctl.manager import secrets

FILTERS = ("id", "name", "label")


def _filter(filters: dict[str, list[str]]):
    """Docker's `secret ls -f` / `config ls -f`: id and name prefixes, label."""
    def keep(record: dict) -> bool:
        spec = record["spec"]
        return (("id" not in filters or listing.prefix_any(record["id"], filters["id"]))
                and ("name" not in filters or listing.prefix_any(spec["name"], filters["name"]))
                and ("label" not in filters or listing.match_labels(spec.get("labels"), filters["label"])))
    return keep


def _routes(kind: str) -> None:
    base = f"/v1/{kind}s"

    async def list_(ctx):
        keep = _filter(listing.parse_filters(ctx.request, FILTERS))
        items = sorted((r for r in ctx.store.list(kind) if keep(r)), key=lambda r: r["spec"]["name"])
        return await listing.respond(ctx.request, items, secrets.view)
    list_.__doc__ = f"List {kind}s, sorted by name (never a secret's data); ?filter=KEY=VALUE (id, label, name)."

    async def create(ctx):
        made = await secrets.create(ctx.store, ctx.manager.keys, kind, ctx.body.model_dump(),
                                    request_id=ctx.request_id)
        return web.json_response(made, status=201)  # Docker's answer to a create
    create.__doc__ = f"Create a {kind} from base64 data; a retry with the same X-Request-Id creates one."

    async def inspect(ctx):
        return secrets.view(secrets.resolve(ctx.store, kind, ctx.request.match_info["ref"]))
    inspect.__doc__ = f"One {kind} by id, unique id prefix or name" + (" (metadata only)." if kind == "secret"
                                                                        else " (with its data).")

    async def update(ctx):
        return await secrets.update(ctx.store, ctx.manager.keys, kind, ctx.request.match_info["ref"],
                                    ctx.body.model_dump(exclude_none=True), version=ctx.query.version,
                                    request_id=ctx.request_id)
    update.__doc__ = f"Change a {kind}'s labels; its name and data are immutable."

    async def remove(ctx):
        await secrets.remove(ctx.store, kind, ctx.request.match_info["ref"], request_id=ctx.request_id)
        return {}
    remove.__doc__ = f"Remove a {kind} that no service uses."

    async def match(ctx):
        return secrets.matches(ctx.store, ctx.manager.keys, kind, ctx.request.match_info["ref"], ctx.body.data)
    match.__doc__ = f"Whether a {kind}'s data equals the given data (compared on the leader, in constant time)."

    for handler, verb in ((list_, "list"), (create, "create"), (inspect, "inspect"), (update, "update"),
                          (remove, "remove"), (match, "match")):
        handler.__name__ = handler.__qualname__ = f"{verb}_{kind}"  # the OpenAPI operationId
    route("GET", base, "cluster")(list_)
    route("POST", base, "cluster", leader=True, body=SecretCreateRequest, status=201)(create)
    route("GET", base + "/{ref}", "cluster")(inspect)
    route("POST", base + "/{ref}/update", "cluster", leader=True, body=SecretUpdateRequest, query=VersionQuery)(update)
    route("DELETE", base + "/{ref}", "cluster", leader=True)(remove)
    route("POST", base + "/{ref}/matches", "cluster", leader=True, body=SecretMatchRequest)(match)


for _kind in secrets.KINDS:
    _routes(_kind)


@route("POST", "/v1/session/files", "node", leader=True, body=TaskFilesRequest)
async def task_files(ctx):
    """The data of the secrets and configs of one of the caller's tasks, while it is assigned to it and meant to run."""
    return ctx.manager.dispatcher.task_files(ctx.caller, ctx.body.task_id, ctx.manager.keys)

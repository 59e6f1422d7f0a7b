"""The OpenAPI description of the API (GET /v1/openapi.json on the local socket), built from the routes table
and the same pydantic models that validate requests, so it cannot drift from what the server accepts.

Each operation carries `x-swarmctl-access` (local, public, node, cluster, agent) and `x-swarmctl-leader`;
docs/api.md explains both. Every error is `{"message": "..."}` (the `Error` schema).
"""

from __future__ import annotations

import re

from pydantic.json_schema import models_json_schema

from swarmctl import __version__
from swarmctl.api import limits
from swarmctl.api.server import ROUTES, route

_PARAM = re.compile(r"{([^}/]+)}")
REF = "#/components/schemas/{model}"

ERROR_SCHEMA = {
    "type": "object",
    "required": ["message"],
    "properties": {"message": {"type": "string", "description": "one line"}},
}

_ACCESS_TEXT = {
    "local": "the local socket only",
    "public": "the management port, without a certificate",
    "node": "the management port, with a node certificate of this swarm",
    "cluster": "a manager: its local socket, or its management port with a manager certificate",
    "agent": "the management port, with a manager certificate of this swarm",
}


def _query_parameters(model) -> list[dict]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", None)
        options = [o for o in prop.pop("anyOf", ()) if o.get("type") != "null"]  # a query value is never null
        if options:
            prop.update(options[0])
        if prop.get("default", 0) is None:
            del prop["default"]
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


def build(routes=None) -> dict:
    """The OpenAPI 3.1 document for `routes` (all routes by default)."""
    routes = list(ROUTES if routes is None else routes)
    models = sorted({r.body for r in routes if r.body is not None}, key=lambda m: m.__name__)
    _keys, defs = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    schemas = dict(defs.get("$defs", {}))
    schemas["Error"] = ERROR_SCHEMA
    paths: dict[str, dict] = {}
    for r in routes:
        operation: dict = {
            "operationId": f"{r.handler.__module__.rsplit('.', 1)[-1]}.{r.handler.__name__}",
            "summary": r.summary or f"{r.method} {r.path}",
            "description": f"Access: {r.access} ({_ACCESS_TEXT.get(r.access, r.access)})."
                           + (" Runs on the Raft leader; followers forward it." if r.leader else ""),
            "x-swarmctl-access": r.access,
            "x-swarmctl-leader": r.leader,
            "parameters": [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
                           for name in _PARAM.findall(r.path)],
            "responses": {
                str(r.status): {"description": "the answer", "content": {"application/json": {"schema": {}}}},
                "default": {"description": "an error", "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/Error"}}}},
            },
        }
        operation["parameters"].append({"name": "X-Request-Id", "in": "header", "required": False,
                                        "description": "the same on every retry of one request: a retried write "
                                                       "applies once",
                                        "schema": {"type": "string", "pattern": limits.REQUEST_ID_PATTERN}})
        if r.query is not None:
            operation["parameters"].extend(_query_parameters(r.query))
        if r.body is not None:
            operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": {
                "$ref": REF.format(model=r.body.__name__)}}}}
        if r.access in ("node", "cluster", "agent"):
            # cluster routes also serve the local socket, where the socket's permissions are the credential
            operation["security"] = [{}, {"nodeCertificate": []}] if r.access == "cluster" else [{"nodeCertificate": []}]
        paths.setdefault(r.path, {})[r.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "swarmctl daemon API", "version": __version__,
                 "description": "The API every swarmctl daemon serves on its local unix socket and its mutual-TLS "
                                "management port. Bodies and answers are JSON; errors are {\"message\": ...}. "
                                "See docs/api.md."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "nodeCertificate": {"type": "mutualTLS",
                                    "description": "a node certificate signed by the swarm's CA (CN node id, OU role, "
                                                   "O cluster id)"},
            },
        },
    }


_cached: dict | None = None


@route("GET", "/v1/openapi.json", "local")
async def openapi(ctx):
    """This API's OpenAPI 3.1 description."""
    global _cached
    if _cached is None:
        _cached = build()
    return _cached

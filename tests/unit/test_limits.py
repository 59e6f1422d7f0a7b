"""Bounded input: the request schemas refuse what limits.py bounds, with one-line messages, and the OpenAPI
description is built from those very schemas and the routes table."""

from __future__ import annotations

import json
import os

import pytest
from pydantic import ValidationError

from swarmctl.api import limits, openapi, schemas
from swarmctl.api.server import _validation_message, load_routes


def refused(model, data) -> str:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    message = _validation_message(info.value)
    assert "\n" not in message
    return message


def service(**extra):
    return dict({"name": "web", "task": {"image": "busybox"}}, **extra)


def test_replicas_and_names():
    assert "the limit of replicas per service" in refused(schemas.ServiceCreateRequest, service(replicas=100_000_000))
    assert "100000" in refused(schemas.ScaleRequest, {"replicas": limits.MAX_REPLICAS + 1})
    schemas.ScaleRequest.model_validate({"replicas": limits.MAX_REPLICAS})
    assert refused(schemas.ServiceCreateRequest, service(name="a.b")).endswith("name must be valid as a DNS name component")
    assert refused(schemas.ServiceCreateRequest, service(name="a" * 64)).endswith("name must be 63 characters or fewer")


@pytest.mark.parametrize("data", [
    service(labels={f"k{i}": "v" for i in range(limits.MAX_LABELS + 1)}),
    service(labels={"k" * (limits.MAX_LABEL_KEY + 1): "v"}),
    service(labels={"k": "v" * (limits.MAX_LABEL_VALUE + 1)}),
    service(labels={"has space": "v"}),
    service(task={"image": "busybox", "env": {f"K{i}": "v" for i in range(limits.MAX_ENV + 1)}}),
    service(task={"image": "busybox", "env": {"K": "v" * (limits.MAX_ENV_VALUE + 1)}}),
    service(task={"image": "busybox", "env": {"A=B": "v"}}),
    service(task={"image": "busybox", "args": ["x"] * (limits.MAX_ARGS + 1)}),
    service(task={"image": "busybox", "args": ["nul\x00byte"]}),
    service(task={"image": "busybox", "placement": {"constraints": ["node.role==worker"] * (limits.MAX_CONSTRAINTS + 1)}}),
    service(task={"image": "busybox", "stop_grace_period": float("inf")}),
    service(task={"image": "busybox", "resources": {"limits": {"memory": 2 ** 70}}}),
    service(task={"image": "x" * (limits.MAX_IMAGE + 1)}),
])
def test_service_bounds(data):
    refused(schemas.ServiceCreateRequest, data)


def test_node_and_session_bounds():
    refused(schemas.NodeUpdateRequest, {"labels_add": {f"k{i}": "v" for i in range(limits.MAX_LABELS + 1)}})
    refused(schemas.RemoteJoinRequest, {"token": "t" * 300, "csr": "x", "hostname": "h", "addr": "a",
                                        "manager_addr": "a", "raft_addr": "a"})
    refused(schemas.TaskStatusRequest, {"updates": [{"task_id": "t", "state": "running"}] * (limits.MAX_STATUS_UPDATES + 1)})
    refused(schemas.HeartbeatRequest, {"heartbeat_period": float("nan")})
    refused(schemas.VersionQuery, {"version": "x"})
    refused(schemas.TailQuery, {"tail": str(limits.MAX_LOG_TAIL + 1)})


def test_openapi_is_built_from_the_validating_schemas_and_routes():
    routes = load_routes()
    doc = openapi.build(routes)
    assert doc["openapi"].startswith("3.1")
    operations = [(m.upper(), p) for p, item in doc["paths"].items() for m in item]
    assert sorted(operations) == sorted((r.method, r.path) for r in routes)
    assert ("GET", "/v1/openapi.json") in operations
    for r in routes:
        op = doc["paths"][r.path][r.method.lower()]
        assert op["x-swarmctl-access"] == r.access and op["x-swarmctl-leader"] == r.leader
        if r.body is not None:
            name = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
            assert name == r.body.__name__
            assert doc["components"]["schemas"][name]["properties"].keys() == r.body.model_json_schema()["properties"].keys()
    update = doc["paths"]["/v1/services/{ref}/update"]["post"]
    assert {p["name"]: p["in"] for p in update["parameters"]} == {"ref": "path", "X-Request-Id": "header", "version": "query"}
    create = doc["components"]["schemas"]["ServiceCreateRequest"]["properties"]
    assert create["name"]["maxLength"] == limits.MAX_NAME and create["name"]["pattern"] == limits.NAME_PATTERN
    json.dumps(doc)  # JSON-able


def test_docs_list_every_limit():
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "api.md")) as f:
        text = f.read()
    for name, value, _meaning in limits.table():
        assert f"`{name}`" in text and value in text, name
    assert "/v1/openapi.json" in text


@pytest.mark.parametrize("image,ok", [
    ("busybox", True), ("swarmctl-test/busybox:latest", True), ("127.0.0.1:5000/team/app:1.0", True),
    ("nginx@sha256:" + "a" * 64, True), ("[::1]:5000/img", True), ("m", True),
    ("ÛH", False), ("Busybox", False), ("a//b", False), ("a:", False), ("-x", False), ("x y", False),
])
def test_image_references_follow_dockers_grammar(image, ok):
    """A reference the engine would refuse ("invalid reference format") is refused before it is stored: the
    fuzzer once created a 6,000-replica service of image "ÛH" that no node could answer about."""
    from swarmctl.errors import BadRequest
    from swarmctl.manager.services import build_spec
    body = {"name": "web", "task": {"image": image}}
    if ok:
        assert build_spec(body)["task"]["image"] == image
    else:
        with pytest.raises(BadRequest, match="invalid reference format"):
            build_spec(body)

"""module_utils/swarmctl_client.py: units, host parsing, and the client against a fake daemon socket."""

from __future__ import annotations

import pytest

from ansible_collections.swarmctl.cluster.plugins.module_utils import swarmctl_client as sc


@pytest.mark.parametrize("text, expected", [
    ("1024", 1024), (1024, 1024), ("0", 0), ("512k", 512 * 1024), ("128M", 128 * 1024 ** 2),
    ("128m", 128 * 1024 ** 2), ("128MB", 128 * 1024 ** 2), ("128MiB", 128 * 1024 ** 2),
    ("1.5G", int(1.5 * 1024 ** 3)), (" 64 M ", 64 * 1024 ** 2), ("2t", 2 * 1024 ** 4),
])
def test_parse_bytes(text, expected):
    assert sc.parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "M", "12Q", "-5", "1.2.3", True, -1])
def test_parse_bytes_rejects(text):
    with pytest.raises(ValueError, match="invalid"):
        sc.parse_bytes(text, "limits.memory")


@pytest.mark.parametrize("text, expected", [
    ("10", 10.0), (10, 10.0), (2.5, 2.5), ("5s", 5.0), ("500ms", 0.5), ("1m30s", 90.0), ("2h", 7200.0),
    ("1.5s", 1.5), ("0", 0.0),
])
def test_parse_duration(text, expected):
    assert sc.parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "s", "5x", "5s3", "-1s", "1 m", False])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="invalid"):
        sc.parse_duration(text)


def test_socket_path():
    assert sc.socket_path("unix:///run/swarmctl/swarmctl.sock") == "/run/swarmctl/swarmctl.sock"
    for bad in ("tcp://127.0.0.1:2377", "/run/x.sock", "unix://", ""):
        with pytest.raises(sc.SwarmctlError, match="unsupported swarmctl_host"):
            sc.socket_path(bad)


def test_client_get_post_delete(fake_daemon):
    fake_daemon.routes[("GET", "/v1/info")] = (200, {"node_id": "abc"})
    fake_daemon.routes[("POST", "/v1/swarm/leave")] = (200, {})
    fake_daemon.routes[("DELETE", "/v1/services/web")] = (200, {})
    client = sc.SwarmctlClient(fake_daemon.host, timeout=5)
    assert client.get("/v1/info") == {"node_id": "abc"}
    assert client.post("/v1/swarm/leave", {"force": True}) == {}
    assert client.post("/v1/swarm/leave") == {}
    assert client.delete("/v1/services/web") == {}
    assert fake_daemon.requests == [("GET", "/v1/info", None), ("POST", "/v1/swarm/leave", {"force": True}),
                                    ("POST", "/v1/swarm/leave", {}), ("DELETE", "/v1/services/web", None)]


def test_client_passes_daemon_errors_through(fake_daemon):
    fake_daemon.routes[("GET", "/v1/nodes/x")] = (404, {"message": "No such node: x"})
    fake_daemon.routes[("GET", "/v1/swarm")] = (503, {"message": "This node is not a swarm manager."})
    client = sc.SwarmctlClient(fake_daemon.host, timeout=5)
    with pytest.raises(sc.SwarmctlError) as exc:
        client.get("/v1/nodes/x")
    assert (exc.value.message, exc.value.status) == ("No such node: x", 404)
    with pytest.raises(sc.SwarmctlError) as exc:
        client.get("/v1/swarm")
    assert exc.value.status == 503 and "not a swarm manager" in exc.value.message


def test_client_no_daemon(tmp_path):
    client = sc.SwarmctlClient(f"unix://{tmp_path}/nothing.sock", timeout=5)
    with pytest.raises(sc.SwarmctlError, match="Cannot connect to the swarmctl daemon") as exc:
        client.get("/v1/info")
    assert exc.value.status is None

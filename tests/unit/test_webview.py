"""The web view without daemons: auth file parsing and checks, the loopback rule, the snapshot JSON, the
SSE stream fed from the store's watch (called back on another thread, as the Raft thread does)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading

import pytest
from aiohttp.test_utils import TestClient, TestServer

from swarmctl.cli.main import main
from swarmctl.node.config import ConfigError, DaemonConfig
from swarmctl.web import auth
from swarmctl.web.server import WebView, snapshot

FAST = {"iterations": 1000}


# ---- auth file ------------------------------------------------------------------------------------
def test_make_line_parses_and_verifies():
    line = auth.make_line("admin", "s3cret pass", **FAST)
    user, _, hashed = line.partition(":")
    assert user == "admin" and hashed.startswith("pbkdf2_sha256$1000$") and "s3cret" not in line
    users = auth.parse_auth_file(f"# comment\n\n{line}\n")
    basic = auth.BasicAuth(users)
    assert basic.verify("admin", "s3cret pass")
    assert not basic.verify("admin", "wrong")
    assert not basic.verify("nobody", "s3cret pass")


def test_salted_hashes_differ():
    assert auth.hash_password("x", **FAST) != auth.hash_password("x", **FAST)


@pytest.mark.parametrize("text, fragment", [
    ("", "no USER:HASH line"),
    ("# only a comment\n", "no USER:HASH line"),
    ("admin\n", "line 1: expected USER:"),
    ("admin:plaintext\n", "line 1: invalid password hash for 'admin'"),
    ("ok:pbkdf2_sha256$10$AAAAAAAAAAA$AAAA\n", "iterations must be at least"),
    ("a:pbkdf2_sha256$1000$c2FsdHNhbHQ$c2hvcnQ\n", "salt or hash too short"),
    ("a:md5$1000$x$y\n", "expected pbkdf2_sha256"),
    ("a:pbkdf2_sha256$many$x$y\n", "invalid password hash"),
])
def test_bad_auth_files(text, fragment):
    with pytest.raises(auth.AuthFileError) as info:
        auth.parse_auth_file(text)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_check_header():
    basic = auth.BasicAuth(auth.parse_auth_file(auth.make_line("admin", "pw:with:colons", **FAST)))
    good = "Basic " + base64.b64encode(b"admin:pw:with:colons").decode()
    assert basic.check_header(good)
    assert basic.check_header(good)  # remembered
    for header in (None, "", "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"admin:nope").decode(),
                   "Basic " + base64.b64encode(b"nocolon").decode(), "Basic " + base64.b64encode(b"\xff:x").decode()):
        assert not basic.check_header(header), header


def test_web_passwd_command(capsys, monkeypatch, tmp_path):
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO("hunter2\n"))
    assert main(["web-passwd", "--password-stdin", "alice"]) == 0
    line = capsys.readouterr().out.strip()
    assert auth.BasicAuth(auth.parse_auth_file(line)).verify("alice", "hunter2")
    monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
    assert main(["web-passwd", "--password-stdin", "bad user"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: invalid user name") and len(err.strip().splitlines()) == 1


# ---- the rule ----------------------------------------------------------------------------------------
def config(**kwargs) -> DaemonConfig:
    return DaemonConfig(data_dir="/nonexistent", advertise_addr="127.0.0.1", **kwargs)


def test_web_off_by_default():
    c = config()
    c.validate()
    assert c.web_bind() is None


@pytest.mark.parametrize("addr", ["127.0.0.1:8888", "127.0.0.11:8888", "[::1]:8888"])
def test_loopback_needs_no_auth(addr):
    c = config(web_addr=addr)
    c.validate()
    assert c.web_bind()[1] == 8888


@pytest.mark.parametrize("addr", ["0.0.0.0:8888", "10.0.0.1:8888", "[::]:8888"])
def test_non_loopback_refused_without_auth(addr):
    with pytest.raises(ConfigError) as info:
        config(web_addr=addr).validate()
    assert "is not a loopback address" in str(info.value) and "--web-auth-file" in str(info.value)


def test_non_loopback_with_auth_file(tmp_path):
    path = tmp_path / "auth"
    path.write_text(auth.make_line("admin", "pw", **FAST) + "\n")
    c = config(web_addr="0.0.0.0:8888", web_auth_file=str(path))
    c.validate()
    assert set(c.web_users) == {"admin"}
    with pytest.raises(ConfigError, match="cannot read --web-auth-file"):
        config(web_addr="0.0.0.0:8888", web_auth_file=str(tmp_path / "missing")).validate()
    with pytest.raises(ConfigError, match="needs --web-addr"):
        config(web_auth_file=str(path)).validate()
    for bad in ("nonsense", "host:80", "127.0.0.1:99999"):
        with pytest.raises(ConfigError):
            config(web_addr=bad).validate()


def test_daemon_refuses_with_one_line(capsys):
    code = main(["daemon", "--data-dir", "/nonexistent/swarmctl-web", "--advertise-addr", "127.0.0.1",
                 "--web-addr", "0.0.0.0:8888"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and err.startswith("Error: --web-addr 0.0.0.0:8888")


# ---- snapshot and stream -----------------------------------------------------------------------------
class FakeStore:
    def __init__(self):
        self.records = {"node": {}, "service": {}, "task": {}}
        self.index = 1
        self.watchers = []

    def list(self, kind):
        return [dict(r) for r in self.records[kind].values()]

    def members(self):
        return ["127.0.0.1:2378"]

    def leader(self):
        return "127.0.0.1:2378"

    def connected(self, _addr):
        return True

    def watch(self, callback):
        self.watchers.append(callback)
        return lambda: self.watchers.remove(callback)

    def put(self, kind, record):
        self.records[kind][record["id"]] = record
        self.index += 1
        thread = threading.Thread(target=lambda: [cb(self.index, []) for cb in list(self.watchers)])
        thread.start()  # as the Raft thread does
        thread.join()


def node(node_id, hostname, role="worker", raft="127.0.0.9:2378"):
    return {"id": node_id, "spec": {"role": role, "availability": "active", "labels": {"zone": "a"}},
            "description": {"hostname": hostname, "engine_labels": {}, "resources": {}, "addrs": {}},
            "status": {"state": "ready", "addr": "127.0.0.1", "message": ""},
            "manager_status": {"addr": "x", "raft_addr": raft} if role == "manager" else None}


def service(service_id, name, replicas):
    return {"id": service_id, "spec_version": 1, "update_status": {"state": "updating", "message": "m"},
            "spec": {"name": name, "mode": "replicated", "replicas": replicas, "task": {"image": "busybox"},
                     "endpoint": {"ports": [{"published_port": 8080, "target_port": 80, "protocol": "tcp",
                                             "mode": "ingress"}]}}}


def task(task_id, service_id, slot, node_id, state="running", err=""):
    return {"id": task_id, "service_id": service_id, "service_name": "web", "slot": slot, "node_id": node_id,
            "spec": {"image": "busybox"}, "desired_state": "running", "created_at": slot,
            "status": {"state": state, "message": "started", "err": err, "timestamp": 100.0}}


def filled() -> FakeStore:
    store = FakeStore()
    store.records["node"] = {"n1": node("n1", "b-manager", "manager", "127.0.0.1:2378"), "n2": node("n2", "a-worker")}
    store.records["service"] = {"s1": service("s1", "web", 2)}
    store.records["task"] = {"t1": task("t1", "s1", 1, "n1"), "t2": task("t2", "s1", 2, "n2", "failed", "boom")}
    return store


def test_snapshot_json():
    snap = snapshot(filled(), now=123.0)
    assert json.loads(json.dumps(snap)) == snap
    assert snap["manager"] and snap["time"] == 123.0
    assert [n["hostname"] for n in snap["nodes"]] == ["a-worker", "b-manager"]
    manager = snap["nodes"][1]
    assert manager["leader"] and manager["role"] == "manager" and manager["reachability"] == "reachable"
    assert snap["nodes"][0]["leader"] is False and snap["nodes"][0]["labels"] == {"zone": "a"}
    assert snap["services"] == [{"id": "s1", "name": "web", "mode": "replicated", "image": "busybox",
                                 "replicas": {"running": 1, "desired": 2}, "ports": "*:8080->80/tcp",
                                 "update_status": "updating", "update_message": "m"}]
    failed = next(t for t in snap["tasks"] if t["id"] == "t2")
    assert failed == {"id": "t2", "name": "web.2", "service_id": "s1", "service_name": "web", "slot": 2,
                      "node_id": "n2", "image": "busybox", "state": "failed", "desired_state": "running",
                      "timestamp": 100.0, "message": "started", "err": "boom"}
    assert snapshot(None)["manager"] is False


class FakeNode:
    def __init__(self, store):
        self.manager = type("M", (), {"store": store})() if store is not None else None


async def _client(view: WebView) -> TestClient:
    view._loop = asyncio.get_running_loop()
    client = TestClient(TestServer(view.app()))
    await client.start_server()
    view._pump = asyncio.create_task(view._run())
    return client


def test_stream_pushes_changes_and_is_read_only():
    async def scenario():
        store = filled()
        view = WebView(FakeNode(store), "127.0.0.1", 0)
        client = await _client(view)
        try:
            page = await client.get("/")
            assert page.status == 200 and "app.js" in await page.text()
            assert (await client.get("/static/app.js")).status == 200
            assert (await client.get("/static/../server.py")).status == 404
            assert (await client.post("/api/snapshot")).status == 405
            events = await client.get("/api/events")
            assert events.headers["Content-Type"].startswith("text/event-stream")

            async def next_snapshot():
                while True:
                    line = await events.content.readline()
                    if line.startswith(b"data: "):
                        return json.loads(line[6:])
            first = await asyncio.wait_for(next_snapshot(), 5)
            assert len(first["tasks"]) == 2
            await asyncio.sleep(0.3)  # let the pump follow the store
            assert len(store.watchers) == 1
            started = asyncio.get_running_loop().time()
            store.put("task", task("t3", "s1", 3, "n2"))
            store.put("task", task("t4", "s1", 4, "n2"))
            while True:  # coalesced: a fresh snapshot, not one per write
                snap = await asyncio.wait_for(next_snapshot(), 3)
                if len(snap["tasks"]) == 4:
                    break
            assert asyncio.get_running_loop().time() - started < 2
            events.close()
        finally:
            await view.stop()
            await client.close()
        assert store.watchers == []
    asyncio.run(scenario())


def test_basic_auth_on_every_request():
    async def scenario():
        users = auth.parse_auth_file(auth.make_line("admin", "pw", **FAST))
        view = WebView(FakeNode(None), "127.0.0.1", 0, auth.BasicAuth(users))
        client = await _client(view)
        try:
            for path in ("/", "/static/app.js", "/api/snapshot", "/api/events"):
                answer = await client.get(path)
                assert answer.status == 401 and answer.headers["WWW-Authenticate"].startswith("Basic")
                wrong = await client.get(path, headers={"Authorization": "Basic " + base64.b64encode(
                    b"admin:no").decode()})
                assert wrong.status == 401
            good = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
            answer = await client.get("/api/snapshot", headers=good)
            assert answer.status == 200 and (await answer.json())["manager"] is False
        finally:
            await view.stop()
            await client.close()
    asyncio.run(scenario())

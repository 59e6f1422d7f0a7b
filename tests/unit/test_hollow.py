"""`swarmctl hollow`: flag parsing and its one-line errors, and a hollow process of a few nodes against an
in-process manager stand-in (a test double of the manager's session routes, over real mutual TLS: joins sign
real certificates of a real CA). The real manager daemon is in tests/integration/test_hollow.py."""

import asyncio
import json
import os
import socket
import ssl
import time
import uuid

import aiohttp
import pytest
from aiohttp import web

from swarmctl.cli.main import main
from swarmctl.hollow.config import (DEFAULT_RESOURCES, HollowConfig, HollowConfigError, parse_count, parse_duration,
                                    parse_fail_rate, parse_join, parse_prefix, parse_resources, route_source)
from swarmctl.hollow.node import HollowError
from swarmctl.hollow.process import HollowProcess, rss_bytes
from swarmctl.manager.ca import create_root_ca, sign_node_certificate
from swarmctl.security import tls
from swarmctl.security.certs import generate_key, make_csr
from swarmctl.security.tokens import ca_digest, make_token, new_secret

GOOD_TOKEN = make_token("0" * 50, "1" * 25)


# ---- flags -------------------------------------------------------------------------------------
def test_parse_count():
    assert parse_count("20") == 20 and parse_count(" 1 ") == 1
    for bad in ("0", "-3", "x", "1.5", "", "10001"):
        with pytest.raises(HollowConfigError, match="--count"):
            parse_count(bad)


def test_parse_duration():
    assert parse_duration("0.2s") == pytest.approx(0.2)
    assert parse_duration("200ms") == pytest.approx(0.2)
    assert parse_duration("1m30s") == 90 and parse_duration("0") == 0 and parse_duration("1.5") == 1.5
    for bad in ("", "fast", "1x", "-1s", "s", "2 s"):
        with pytest.raises(HollowConfigError, match="--start-latency"):
            parse_duration(bad)


def test_parse_fail_rate():
    assert parse_fail_rate("0") == 0 and parse_fail_rate("0.25") == 0.25 and parse_fail_rate("1") == 1
    for bad in ("-0.1", "1.01", "nan", "inf", "x", ""):
        with pytest.raises(HollowConfigError, match="--fail-rate"):
            parse_fail_rate(bad)


def test_parse_resources():
    assert parse_resources(DEFAULT_RESOURCES) == {"cpus": 4.0, "memory": 8 * 2 ** 30}
    assert parse_resources("cpus=0.5") == {"cpus": 0.5}
    assert parse_resources("memory=512M, cpus=2") == {"memory": 512 * 2 ** 20, "cpus": 2.0}
    assert parse_resources("memory=1GiB") == {"memory": 2 ** 30}
    for bad in ("", "cpus", "cpus=", "cpus=a", "gpus=1", "memory=8Q", "cpus=1,cpus=2", "cpus=-1", "cpus=inf",
                "memory=-1G", "cpus=1;memory=2G"):
        with pytest.raises(HollowConfigError, match="--resources"):
            parse_resources(bad)


def test_parse_join_and_prefix():
    assert parse_join("127.0.0.11:2377") == "127.0.0.11:2377"
    assert parse_join("127.0.0.11") == "127.0.0.11:2377"
    for bad in ("", "manager:2377", "127.0.0.1:x", "127.0.0.1:0", ":2377"):
        with pytest.raises(HollowConfigError, match="--join"):
            parse_join(bad)
    assert parse_prefix("hollow-a") == "hollow-a"
    for bad in ("", "-x", "a b", "x" * 50, "a_b"):
        with pytest.raises(HollowConfigError, match="--name-prefix"):
            parse_prefix(bad)


def test_from_flags_defaults_and_errors(tmp_path):
    config = HollowConfig.from_flags(count="3", join="127.0.0.1:2377", token=GOOD_TOKEN, data_dir=str(tmp_path))
    assert (config.count, config.start_latency, config.fail_rate, config.name_prefix) == (3, 0.2, 0.0, "hollow")
    assert config.resources == {"cpus": 4.0, "memory": 8 * 2 ** 30} and config.heartbeat_period == 5
    base = dict(count="3", join="127.0.0.1:2377", token=GOOD_TOKEN, data_dir=str(tmp_path))
    for override, message in ((dict(token="nope"), "--token"), (dict(token=GOOD_TOKEN[:-1]), "--token"),
                              (dict(data_dir=""), "--data-dir"), (dict(heartbeat_period="0"), "--heartbeat-period"),
                              (dict(advertise_addr="host"), "--advertise-addr"), (dict(agent_port="70000"),
                                                                                  "--agent-port"),
                              (dict(join_concurrency="0"), "--join-concurrency"), (dict(labels=["x"]), "--label"),
                              (dict(start_latency="2h"), "--start-latency")):
        with pytest.raises(HollowConfigError, match=message):
            HollowConfig.from_flags(**{**base, **override})


@pytest.mark.parametrize("flags, message", [
    (["--count", "0"], "invalid --count '0'"),
    (["--count", "-1"], "invalid --count '-1'"),
    (["--resources", "cpus=four"], "invalid --resources"),
    (["--start-latency", "soon"], "invalid --start-latency"),
    (["--fail-rate", "2"], "invalid --fail-rate"),
    (["--token", "SWMTKN-1-short-x"], "--token: invalid join token"),
    (["--join", "nowhere"], "invalid --join address"),
])
def test_cli_bad_flags_one_line_error(flags, message, tmp_path, capsys):
    argv = ["hollow", "--count", "2", "--join", "127.0.0.1:2377", "--token", GOOD_TOKEN,
            "--data-dir", str(tmp_path / "h")]
    for i in range(0, len(flags), 2):
        if flags[i] in argv:
            argv[argv.index(flags[i]) + 1] = flags[i + 1]
        else:
            argv += flags[i:i + 2]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "h").exists()


def _free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def test_cli_unreachable_join_one_line_error(tmp_path, capsys):
    port = _free_port()  # nothing listens there
    argv = ["hollow", "--count", "2", "--join", f"127.0.0.1:{port}", "--token", GOOD_TOKEN, "--data-dir",
            str(tmp_path / "h"), "--advertise-addr", "127.0.0.1"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"Error: could not connect to the manager at 127.0.0.1:{port}") and err.count("\n") == 1


def test_route_source():
    assert route_source("127.0.0.1:2377") == "127.0.0.1"


# ---- a hollow process against a manager stand-in ---------------------------------------------------
class ManagerStandIn:
    """Test double of a manager's session routes over real mutual TLS: /v1/ca, /v1/join (signs a real
    certificate), heartbeat, assignments (one task per node), status. Not the real manager: that is
    tests/integration/test_hollow.py."""

    def __init__(self):
        self.cluster_id = uuid.uuid4().hex[:25]
        self.ca, self.ca_key = create_root_ca(self.cluster_id)
        self.secret = new_secret()
        self.token = make_token(ca_digest(self.ca), self.secret)
        self.manager_token = make_token(ca_digest(self.ca), new_secret())
        key = generate_key()
        self.cert = sign_node_certificate(self.ca, self.ca_key, make_csr(key), "manager0", "manager", self.cluster_id)
        self.key = key
        self.nodes = {}
        self.beats = {}
        self.tasks = {}
        self.left = []
        self.join_ids = []
        self.ca_fetches = 0
        self.busy_joins = 0
        self.port = _free_port()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def caller(self, request):
        ident = tls.peer_identity(request.transport.get_extra_info("ssl_object"))
        assert ident is not None and ident.cluster_id == self.cluster_id
        return ident.node_id

    async def ca_route(self, request):
        self.ca_fetches += 1
        return web.json_response({"ca": self.ca.decode()})

    async def join(self, request):
        body = await request.json()
        self.join_ids.append(request.headers.get("X-Request-Id"))
        if self.busy_joins > 0:  # a manager too busy to take the join now
            self.busy_joins -= 1
            return web.json_response({"message": "too many requests"}, status=503)
        secret = body["token"].rsplit("-", 1)[1]
        role = "worker" if secret == self.secret else "manager" if body["token"] == self.manager_token else None
        if role is None:
            return web.json_response({"message": "invalid join token: the token is wrong or has been rotated"},
                                     status=403)
        node_id = uuid.uuid4().hex[:25]
        cert = sign_node_certificate(self.ca, self.ca_key, body["csr"].encode(), node_id, role, self.cluster_id)
        self.nodes[node_id] = body
        self.tasks[node_id] = {"id": f"task-{node_id}", "service_id": "s", "service_name": "web", "slot": 1,
                               "node_id": node_id, "desired_state": "running", "status": {"state": "assigned"},
                               "spec": {"image": "busybox", "resources": {"limits": {}}}}
        return web.json_response({"node_id": node_id, "role": role, "cluster_id": self.cluster_id,
                                  "certificate": cert.decode(), "ca": self.ca.decode(), "managers": [self.addr]})

    async def raft_leave(self, request):
        node_id = self.caller(request)
        self.left.append(node_id)
        return web.json_response({})

    async def heartbeat(self, request):
        node_id = self.caller(request)
        self.beats[node_id] = self.beats.get(node_id, 0) + 1
        return web.json_response({"node": {"id": node_id, "spec": {"role": "worker"}}, "managers": [self.addr]})

    async def assignments(self, request):
        node_id = self.caller(request)
        body = await request.json()
        if body.get("since") == "1":
            await asyncio.sleep(min(body.get("wait") or 0, 0.5))
        return web.json_response({"version": "1", "tasks": [self.tasks[node_id]]})

    async def status(self, request):
        node_id = self.caller(request)
        for update in (await request.json())["updates"]:
            self.tasks[node_id]["status"] = {"state": update["state"]}
        return web.json_response({"applied": 1})

    async def start(self, tmp):
        cert, key = os.path.join(tmp, "m.pem"), os.path.join(tmp, "m.key")
        ca = os.path.join(tmp, "ca.pem")
        for path, data in ((cert, self.cert), (key, self.key), (ca, self.ca)):
            with open(path, "wb") as f:
                f.write(data)
        ctx = tls.server_context(cert, key, ca)
        self.client_ctx = tls.client_context(ca, cert, key)
        app = web.Application()
        app.router.add_get("/v1/ca", self.ca_route)
        app.router.add_post("/v1/join", self.join)
        app.router.add_post("/v1/session/heartbeat", self.heartbeat)
        app.router.add_post("/v1/raft/leave", self.raft_leave)
        app.router.add_post("/v1/session/assignments", self.assignments)
        app.router.add_post("/v1/session/status", self.status)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=ctx).start()

    async def stop(self):
        await self.runner.cleanup()


async def _until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


def _config(manager, root, **kw):
    flags = dict(count="5", join=manager.addr, token=manager.token, data_dir=str(root), start_latency="0.1s",
                 heartbeat_period="0.2s", advertise_addr="127.0.0.1")
    flags.update(kw)
    return HollowConfig.from_flags(**flags)


def test_hollow_process_nodes_join_heartbeat_and_run_their_tasks(tmp_path):
    manager = ManagerStandIn()

    async def scenario():
        await manager.start(str(tmp_path))
        process = HollowProcess(_config(manager, tmp_path / "h"))
        try:
            await process.start()
            assert len(manager.nodes) == 5
            assert manager.ca_fetches == 2  # the first node's join, then one shared check for the other four
            hostnames = sorted(n["hostname"] for n in manager.nodes.values())
            assert hostnames == [f"hollow-{i}" for i in range(5)]
            assert {n["manager_addr"] for n in manager.nodes.values()} == {process.agent_addr}  # one listener
            assert all(n["resources"] == {"cpus": 4.0, "memory": 8 * 2 ** 30} for n in manager.nodes.values())
            assert await _until(lambda: all(t["status"]["state"] == "running" for t in manager.tasks.values()))
            assert await _until(lambda: len(manager.beats) == 5 and min(manager.beats.values()) >= 3)
            ids = {n.node_id for n in process.nodes}
            assert len(ids) == 5 and ids == set(manager.nodes)
            serials = {n._cert_summary["serial"] for n in process.nodes}
            assert len(serials) == 5  # a certificate each
            for i in range(5):
                assert os.path.exists(tmp_path / "h" / str(i) / "certs" / "node.pem")
            # the shared agent listener: logs of any node's task and the image check, managers only
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=manager.client_ctx)) as http:
                task_id = manager.tasks[process.nodes[3].node_id]["id"]
                async with http.get(f"https://{process.agent_addr}/v1/agent/logs/{task_id}?tail=5") as r:
                    lines = (await r.json())["lines"]
                assert r.status == 200 and any("running" in line for line in lines)
                async with http.get(f"https://{process.agent_addr}/v1/agent/images?name=busybox") as r:
                    assert (await r.json()) == {"present": True}
            worker_ctx = tls.client_context(process.nodes[0].data.ca_file, process.nodes[0].data.cert_file,
                                            process.nodes[0].data.key_file)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=worker_ctx)) as http:
                async with http.get(f"https://{process.agent_addr}/v1/agent/images?name=x") as r:
                    assert r.status == 401  # a worker certificate may not ask
            assert "5 nodes running" in process.summary() and "per node" in process.summary()
        finally:
            await process.stop()
        # killing the process stops every session: no more heartbeats
        before = dict(manager.beats)
        await asyncio.sleep(0.5)
        assert manager.beats == before
        # a restart with the same data dir brings back the same nodes, without joining again
        again = HollowProcess(_config(manager, tmp_path / "h"))
        try:
            await again.start()
            assert again.joined_now == 0 and len(manager.nodes) == 5
            assert {n.node_id for n in again.nodes} == ids and again.agent_addr == process.agent_addr
        finally:
            await again.stop()
        await manager.stop()
    asyncio.run(scenario())


def test_hollow_process_refuses_a_wrong_token_and_a_manager_token(tmp_path):
    manager = ManagerStandIn()

    async def scenario():
        await manager.start(str(tmp_path))
        wrong = make_token(ca_digest(manager.ca), new_secret())
        for token, message in ((wrong, "refused the join: invalid join token"),
                               (manager.manager_token, "hollow nodes join as workers"),
                               (make_token("0" * 50, new_secret()), "does not match the fingerprint")):
            root = tmp_path / uuid.uuid4().hex
            process = HollowProcess(_config(manager, root, token=token))
            try:
                with pytest.raises(HollowError, match=message) as info:
                    await process.start()
                assert "\n" not in str(info.value)
            finally:
                await process.stop()
        assert len(manager.nodes) == 1  # only the one manager-token probe joined, and it left at once
        assert manager.left == list(manager.nodes)
        await manager.stop()
    asyncio.run(scenario())


def test_rss_is_measured():
    assert rss_bytes() > 10 * 2 ** 20


def test_busy_manager_joins_are_retried_with_the_same_request_id(tmp_path, monkeypatch):
    monkeypatch.setattr("swarmctl.hollow.node.JOIN_RETRY_DELAY", 0.01)
    manager = ManagerStandIn()
    original = manager.join

    async def join(request):
        if len(manager.join_ids) == 1:  # the first node is in: the next three join attempts find it busy
            manager.busy_joins = 3
        return await original(request)
    manager.join = join

    async def scenario():
        await manager.start(str(tmp_path))
        process = HollowProcess(_config(manager, tmp_path / "h", count="4", join_concurrency="1"))
        try:
            await process.start()
            assert len(manager.nodes) == 4 and all(n.node_id for n in process.nodes)
            assert len(manager.join_ids) == 4 + 3 and len(set(manager.join_ids)) == 4  # retries reuse the id
        finally:
            await process.stop()
            await manager.stop()
    asyncio.run(scenario())


# ---- the agent listener, removal, promotion, renewal, data dirs -------------------------------------
class StandInPlus(ManagerStandIn):
    """The stand-in with the answers a node must handle: removal (401), promotion, certificate renewal."""

    def __init__(self):
        super().__init__()
        self.removed = set()
        self.promoted = set()
        self.renewals = 0

    async def heartbeat(self, request):
        node_id = self.caller(request)
        if node_id in self.removed:
            return web.json_response({"message": f"node {node_id} is not part of this swarm"}, status=401)
        self.beats[node_id] = self.beats.get(node_id, 0) + 1
        role = "manager" if node_id in self.promoted else "worker"
        return web.json_response({"node": {"id": node_id, "spec": {"role": role}},
                                  "managers": [self.addr, "127.0.0.1:1"]})

    async def certificate(self, request):
        node_id = self.caller(request)
        self.renewals += 1
        body = await request.json()
        cert = sign_node_certificate(self.ca, self.ca_key, body["csr"].encode(), node_id, "worker", self.cluster_id)
        return web.json_response({"certificate": cert.decode(), "role": "worker"})

    def app_routes(self, app):
        app.router.add_post("/v1/session/certificate", self.certificate)


def _with_certificate_route(manager):
    original = manager.start

    async def start(tmp):
        # the stand-in's app is built in start(); add the renewal route by wrapping web.Application
        real = web.Application

        def application(*args, **kwargs):
            app = real(*args, **kwargs)
            manager.app_routes(app)
            return app
        web.Application = application
        try:
            await original(tmp)
        finally:
            web.Application = real
    manager.start = start
    return manager


def test_agent_listener_edge_cases(tmp_path):
    manager = ManagerStandIn()

    async def scenario():
        await manager.start(str(tmp_path))
        process = HollowProcess(_config(manager, tmp_path / "h", count="2"))
        try:
            await process.start()
            base = f"https://{process.agent_addr}"
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=manager.client_ctx)) as http:
                async with http.get(f"{base}/v1/agent/logs/no-such-task") as r:
                    assert r.status == 200 and (await r.json()) == {"lines": []}
                task_id = manager.tasks[process.nodes[0].node_id]["id"]
                async with http.get(f"{base}/v1/agent/logs/{task_id}?tail=x") as r:
                    assert r.status == 400 and "tail" in (await r.json())["message"]
                assert await _until(lambda: manager.tasks[process.nodes[0].node_id]["status"]["state"] == "running")
                async with http.get(f"{base}/v1/agent/logs/{task_id}?tail=1") as r:
                    assert len((await r.json())["lines"]) == 1
                async with http.get(f"{base}/v1/agent/images?name=") as r:
                    assert (await r.json()) == {"present": False}
            # no client certificate: the handshake is refused (the listener requires one)
            bare = tls.client_context(process.nodes[0].data.ca_file)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=bare)) as http:
                with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
                    async with http.get(f"{base}/v1/agent/images?name=x") as r:
                        await r.read()
        finally:
            await process.stop()
            await manager.stop()
    asyncio.run(scenario())


def test_removed_node_forgets_the_swarm_and_promotion_is_ignored(tmp_path, caplog):
    manager = StandInPlus()

    async def scenario():
        await manager.start(str(tmp_path))
        process = HollowProcess(_config(manager, tmp_path / "h", count="3"))
        try:
            await process.start()
            gone, promoted = process.nodes[0], process.nodes[1]
            manager.removed.add(gone.node_id)
            manager.promoted.add(promoted.node_id)
            assert await _until(lambda: gone.removed and not gone.identity)
            assert not os.path.exists(gone.data.cert_file)
            ident = json.loads((tmp_path / "h" / "0" / "swarmctl.json").read_text())
            assert ident.get("identity") == {}
            beats = manager.beats[promoted.node_id]
            assert await _until(lambda: manager.beats[promoted.node_id] >= beats + 3)
            assert promoted.role == "worker" and promoted.worker is not None
            # the managers list of the answers is kept in the node's identity
            stored = json.loads((tmp_path / "h" / "2" / "swarmctl.json").read_text())["identity"]
            assert stored["managers"] == [manager.addr, "127.0.0.1:1"]
        finally:
            await process.stop()
            await manager.stop()
    with caplog.at_level("WARNING"):
        asyncio.run(scenario())
    assert "was removed from the swarm" in caplog.text and "hollow nodes stay workers" in caplog.text


def test_certificate_renewal_uses_the_session_and_reloads_the_client(tmp_path):
    manager = _with_certificate_route(StandInPlus())

    async def scenario():
        await manager.start(str(tmp_path))
        process = HollowProcess(_config(manager, tmp_path / "h", count="1"))
        try:
            await process.start()
            node = process.nodes[0]
            before = node._cert_summary["serial"]
            await node._renew()
            assert manager.renewals == 1 and node._cert_summary["serial"] != before
            beats = manager.beats[node.node_id]
            assert await _until(lambda: manager.beats[node.node_id] >= beats + 2)  # the session goes on
        finally:
            await process.stop()
            await manager.stop()
    asyncio.run(scenario())


def test_data_dir_errors(tmp_path):
    manager = ManagerStandIn()

    async def scenario():
        await manager.start(str(tmp_path))
        afile = tmp_path / "afile"
        afile.write_text("x")
        with pytest.raises(HollowError, match="is not a directory"):
            await HollowProcess(_config(manager, afile)).start()
        first = HollowProcess(_config(manager, tmp_path / "h", count="2"))
        second = HollowProcess(_config(manager, tmp_path / "h", count="2"))
        try:
            await first.start()
            with pytest.raises(HollowError, match="in use by another swarmctl hollow process"):
                await second.start()
        finally:
            await second.stop()
            await first.stop()
        foreign = tmp_path / "foreign"
        (foreign / "0").mkdir(parents=True)
        (foreign / "0" / "something").write_text("x")
        third = HollowProcess(_config(manager, foreign, count="1"))
        try:
            with pytest.raises(HollowError, match="not a swarmctl data dir"):
                await third.start()
        finally:
            await third.stop()
        await manager.stop()
    asyncio.run(scenario())


def test_fd_limit_too_low_is_one_line(monkeypatch):
    import resource
    from swarmctl.hollow import process as hp
    monkeypatch.setattr(hp.resource, "getrlimit", lambda _kind: (256, 256))
    monkeypatch.setattr(hp.resource, "setrlimit", lambda *_a: None)
    with pytest.raises(HollowConfigError, match="open files"):
        hp.raise_fd_limit(4000)
    assert resource.RLIMIT_NOFILE is not None


def test_serve_prints_the_summary_and_stops_on_sigterm(tmp_path, capsys):
    import signal
    from swarmctl.hollow.main import serve
    manager = ManagerStandIn()

    async def scenario():
        await manager.start(str(tmp_path))
        seen = []

        def ready(process):
            seen.append(len(process.nodes))
            asyncio.get_running_loop().call_later(0.2, os.kill, os.getpid(), signal.SIGTERM)
        code = await serve(_config(manager, tmp_path / "h", count="2"), ready=ready)
        bad = await serve(_config(manager, tmp_path / "bad", token=make_token(ca_digest(manager.ca), new_secret())))
        await manager.stop()
        return code, bad, seen
    code, bad, seen = asyncio.run(scenario())
    out, err = capsys.readouterr()
    assert code == 0 and seen == [2] and "hollow: 2 nodes running" in out
    assert bad == 1 and err.startswith("Error: ") and "refused the join" in err and err.count("\n") == 1


def test_more_flag_values(tmp_path):
    assert parse_join("[::1]:2377") == "[::1]:2377" and parse_join(" 10.0.0.1:1 ") == "10.0.0.1:1"
    config = HollowConfig.from_flags(count="1", join="127.0.0.1", token=GOOD_TOKEN, data_dir=str(tmp_path),
                                     labels=["zone=a", "empty="], agent_port="40000", join_concurrency="256",
                                     start_latency="0", fail_rate="1", resources="memory=0", name_prefix="h1",
                                     advertise_addr=" 127.0.0.5 ", heartbeat_period="250ms")
    assert config.labels == {"zone": "a", "empty": ""} and config.agent_port == 40000
    assert config.join == "127.0.0.1:2377" and config.join_concurrency == 256 and config.start_latency == 0
    assert config.fail_rate == 1 and config.resources == {"memory": 0} and config.advertise_addr == "127.0.0.5"
    assert config.heartbeat_period == 0.25 and config.name_prefix == "h1"
    for port in ("-1", "x", "65536"):
        with pytest.raises(HollowConfigError, match="--agent-port"):
            HollowConfig.from_flags(count="1", join="127.0.0.1", token=GOOD_TOKEN, data_dir=str(tmp_path),
                                    agent_port=port)


def test_route_source_of_an_unroutable_address():
    with pytest.raises(HollowConfigError, match="cannot reach the manager"):
        route_source("255.255.255.255:2377")  # a broadcast address: no route for a plain socket


def _listening_sockets() -> int:
    """TCP sockets of this process in LISTEN state (from /proc: the socket inodes of our fds)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        count += sum(1 for row in rows if row.split()[3] == "0A" and row.split()[9] in inodes)
    return count


def test_nodes_open_no_listening_port_of_their_own(tmp_path):
    manager = ManagerStandIn()

    async def scenario():
        await manager.start(str(tmp_path))
        before = _listening_sockets()  # the stand-in's own
        process = HollowProcess(_config(manager, tmp_path / "h", count="12"))
        try:
            await process.start()
            assert await _until(lambda: len(manager.beats) == 12)
            return before, _listening_sockets()
        finally:
            await process.stop()
            await manager.stop()
    before, during = asyncio.run(scenario())
    assert during - before == 1  # twelve nodes, one agent listener


def test_state_file_keeps_the_agent_address_for_restarts(tmp_path):
    manager = ManagerStandIn()

    async def scenario():
        await manager.start(str(tmp_path))
        process = HollowProcess(_config(manager, tmp_path / "h", count="1", name_prefix="keep"))
        try:
            await process.start()
            state = json.loads((tmp_path / "h" / "hollow.json").read_text())
            assert state == {"advertise": "127.0.0.1", "agent_port": int(process.agent_addr.rsplit(":", 1)[1]),
                             "name_prefix": "keep"}
            assert process.summary().startswith("hollow: 1 nodes running (1 joined now) on agent listener 127.0.0.1:")
        finally:
            await process.stop()
            await manager.stop()
    asyncio.run(scenario())
    (tmp_path / "h" / "hollow.json").write_text("{not json")
    with pytest.raises(HollowError, match="hollow.json is corrupt"):
        HollowProcess(_config(manager, tmp_path / "h"))._load_state()

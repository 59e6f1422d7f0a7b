"""DockerRuntime against the private Docker engine (tests/docker_engine.py), with the offline busybox image.

Every container a test makes carries the label RUN_LABEL=RUN_ID; the `rt` fixture removes them all."""

from __future__ import annotations

import http.client
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest

from swarmctl.runtime import make_runtime
from swarmctl.runtime.base import (
    ContainerNotFound,
    ContainerSpec,
    ContainerState,
    EngineUnavailable,
    ImageNotFound,
    RuntimeFailure,
)
from swarmctl.runtime.docker_engine import DockerRuntime

RUN_LABEL = "swarmctl.test.run"
RUN_ID = uuid.uuid4().hex[:10]
HTTP_ADDR, HTTP_PORT = "127.0.0.77", 18080
# a PID 1 that exits at once on SIGTERM (busybox sleep as PID 1 ignores it)
TERM_LOOP = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.1; done']


@pytest.fixture
def rt(docker_engine):
    r = DockerRuntime(docker_engine, timeout=30)
    try:
        yield r
    finally:
        try:
            for c in r.list({RUN_LABEL: RUN_ID}):
                r.remove(c.id, force=True)
        finally:
            r.close()


@pytest.fixture
def engine_api(docker_engine):
    c = docker.APIClient(base_url=docker_engine, version="auto")
    try:
        yield c
    finally:
        c.close()


def spec(name: str, image: str, **kw) -> ContainerSpec:
    labels = {RUN_LABEL: RUN_ID, **kw.pop("labels", {})}
    return ContainerSpec(name=f"swt-{RUN_ID}-{name}", image=image, labels=labels, **kw)


def wait_for(pred, timeout: float = 10, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_exited(rt, cid, timeout: float = 10) -> ContainerState:
    return wait_for(lambda: (s := rt.inspect(cid)) is not None and s.status == "exited" and s, timeout)


def http_get(path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HTTP_ADDR, HTTP_PORT, timeout=2)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_ping_reports_engine_version(rt):
    info = rt.ping()
    assert info["Version"]
    assert info["ApiVersion"]


def test_make_runtime_gives_docker_runtime(docker_engine):
    r = make_runtime(docker_engine)
    try:
        assert isinstance(r, DockerRuntime)
        assert r.ping()["Version"]
    finally:
        r.close()


def test_httpd_on_host_network_answers(rt, test_image):
    cid = rt.create(spec("httpd", test_image, command=["httpd", "-f", "-p", f"{HTTP_ADDR}:{HTTP_PORT}", "-h", "/"]))
    st = rt.inspect(cid)
    assert st.status == "created" and not st.running
    assert st.exit_code is None and st.started_at is None and st.finished_at is None
    rt.start(cid)

    def answers():
        try:
            return http_get("/etc/hostname")
        except OSError:
            return None

    status, body = wait_for(answers, timeout=10)
    assert status == 200
    # host network: the container has the host's hostname
    assert body.decode().strip() == socket.gethostname()
    st = rt.inspect(cid)
    assert st.running and st.status == "running"
    assert st.started_at and st.finished_at is None
    rt.start(cid)  # starting a running container is no error
    rt.stop(cid, timeout=1)  # httpd as PID 1 ignores SIGTERM
    with pytest.raises(OSError):
        http_get("/etc/hostname")


def test_inspect_and_list_by_labels(rt, test_image):
    a = rt.create(spec("a", test_image, command=TERM_LOOP, labels={"app": "web", "tier": "front"}))
    b = rt.create(spec("b", test_image, command=["sh", "-c", "exit 0"], labels={"app": "web", "tier": "back"}))
    c = rt.create(spec("c", test_image, command=TERM_LOOP, labels={"app": "db"}))
    rt.start(a)
    rt.start(b)
    wait_exited(rt, b)

    st = rt.inspect(a)
    assert st.id == a and st.name == f"swt-{RUN_ID}-a"
    assert st.labels == {RUN_LABEL: RUN_ID, "app": "web", "tier": "front"}
    assert st.running
    # by name too
    assert rt.inspect(f"swt-{RUN_ID}-a").id == a

    web = {s.id: s for s in rt.list({RUN_LABEL: RUN_ID, "app": "web"})}
    assert set(web) == {a, b}  # running and exited alike
    assert web[a].status == "running" and web[b].status == "exited" and web[b].exit_code == 0
    assert [s.id for s in rt.list({RUN_LABEL: RUN_ID, "app": "web", "tier": "back"})] == [b]
    assert {s.id for s in rt.list({RUN_LABEL: RUN_ID})} == {a, b, c}
    assert rt.list({RUN_LABEL: RUN_ID, "app": "nope"}) == []
    assert all(isinstance(s, ContainerState) for s in rt.list({}))
    assert {a, b, c} <= {s.id for s in rt.list({})}


def test_inspect_missing_container_is_none(rt):
    assert rt.inspect("swarmctl-no-such-container") is None
    assert rt.inspect("0" * 64) is None


def test_logs_of_stdout_and_stderr(rt, test_image):
    cid = rt.create(spec("logs", test_image, command=["sh", "-c", "echo hello; echo oops >&2"]))
    rt.start(cid)
    wait_exited(rt, cid)
    lines = rt.logs(cid)
    assert sorted(lines) == ["hello", "oops"]
    assert len(rt.logs(cid, tail=1)) == 1
    assert rt.logs(cid, tail=0) == []


def test_log_entries_carry_engine_timestamps_and_since_and_rotation(rt, test_image, engine_api):
    import time as _time
    before = _time.time()
    cid = rt.create(spec("logts", test_image, command=["sh", "-c", "echo one; sleep 1.2; echo two"]))
    rt.start(cid)
    wait_exited(rt, cid)
    entries = rt.log_entries(cid)
    assert [line for _, line in entries] == ["one", "two"]
    (t1, _), (t2, _) = entries
    assert before - 5 < t1 / 1e9 < t2 / 1e9 < _time.time() + 5 and t2 - t1 > 1_000_000_000
    assert [line for _, line in rt.log_entries(cid, since=(t1 + t2) / 2e9)] == ["two"]
    assert [line for _, line in rt.log_entries(cid, tail=1)] == ["two"]
    log_config = engine_api.inspect_container(cid)["HostConfig"]["LogConfig"]
    assert log_config == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}


def test_command_args_and_env(rt, test_image):
    cid = rt.create(spec("env", test_image, command=["sh", "-c"], args=['echo "$FOO-$BAR"; echo "$0 $1"', "x", "y"],
                         env={"FOO": "foo", "BAR": "b a r"}))
    rt.start(cid)
    wait_exited(rt, cid)
    assert rt.logs(cid) == ["foo-b a r", "x y"]


def test_args_only_use_image_default_entrypoint(rt, test_image):
    # the test image has no entrypoint: args alone are the command
    cid = rt.create(spec("argsonly", test_image, args=["echo", "plain"]))
    rt.start(cid)
    wait_exited(rt, cid)
    assert rt.logs(cid) == ["plain"]


def test_exit_code(rt, test_image):
    cid = rt.create(spec("exit3", test_image, command=["sh", "-c", "exit 3"]))
    rt.start(cid)
    st = wait_exited(rt, cid)
    assert st.exit_code == 3
    assert not st.running
    assert st.started_at and st.finished_at
    assert st.error == ""


def test_start_failure_reports_engine_error(rt, test_image):
    cid = rt.create(spec("badcmd", test_image, command=["/bin/no-such-binary"]))
    with pytest.raises(RuntimeFailure) as ei:
        rt.start(cid)
    assert "no-such-binary" in str(ei.value)
    assert "\n" not in str(ei.value)
    st = rt.inspect(cid)
    assert not st.running
    assert "no-such-binary" in st.error


def test_stop_graceful_and_by_kill(rt, test_image):
    graceful = rt.create(spec("trap", test_image, command=TERM_LOOP))
    stubborn = rt.create(spec("sleep", test_image, command=["sleep", "1000"]))
    rt.start(graceful)
    rt.start(stubborn)

    t0 = time.monotonic()
    rt.stop(graceful, timeout=10)
    assert time.monotonic() - t0 < 5
    st = rt.inspect(graceful)
    assert st.status == "exited" and st.exit_code == 0

    # sleep as PID 1 ignores SIGTERM: killed after the stop timeout
    t0 = time.monotonic()
    rt.stop(stubborn, timeout=1)
    took = time.monotonic() - t0
    assert 0.8 < took < 6
    st = rt.inspect(stubborn)
    assert st.status == "exited" and st.exit_code == 137

    rt.stop(stubborn, timeout=1)  # stopping a stopped container is no error
    rt.start(graceful)  # restart after stop
    assert rt.inspect(graceful).running


def test_remove_twice_and_force(rt, test_image):
    cid = rt.create(spec("rm", test_image, command=TERM_LOOP))
    rt.start(cid)
    with pytest.raises(RuntimeFailure):
        rt.remove(cid, force=False)  # running
    rt.remove(cid)  # force by default
    assert rt.inspect(cid) is None
    rt.remove(cid)
    rt.remove("swarmctl-no-such-container")
    assert rt.list({RUN_LABEL: RUN_ID}) == []


def test_missing_container_errors(rt):
    for call in (lambda: rt.start("swarmctl-nope"), lambda: rt.stop("swarmctl-nope", timeout=1),
                 lambda: rt.logs("swarmctl-nope")):
        with pytest.raises(ContainerNotFound) as ei:
            call()
        assert "swarmctl-nope" in str(ei.value)


def test_limits_visible_in_engine(rt, test_image, engine_api):
    mem = 64 * 1024 * 1024
    cid = rt.create(spec("limits", test_image, cpu_limit=0.5, memory_limit=mem,
                         command=["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"]))
    hc = engine_api.inspect_container(cid)["HostConfig"]
    assert hc["NanoCpus"] == 500_000_000
    assert hc["Memory"] == mem
    rt.start(cid)
    wait_exited(rt, cid)
    assert rt.logs(cid) == [str(mem)]


def test_no_limits_by_default(rt, test_image, engine_api):
    cid = rt.create(spec("nolimits", test_image, command=TERM_LOOP))
    hc = engine_api.inspect_container(cid)["HostConfig"]
    assert hc["NanoCpus"] == 0 and hc["Memory"] == 0
    assert hc["NetworkMode"] == "host"


def test_network_mode_none(rt, test_image, engine_api):
    cid = rt.create(spec("nonet", test_image, network_mode="none", command=["ls", "/sys/class/net"]))
    assert engine_api.inspect_container(cid)["HostConfig"]["NetworkMode"] == "none"
    rt.start(cid)
    wait_exited(rt, cid)
    assert rt.logs(cid) == ["lo"]


def test_name_conflict_is_runtime_failure(rt, test_image):
    rt.create(spec("dup", test_image, command=TERM_LOOP))
    with pytest.raises(RuntimeFailure) as ei:
        rt.create(spec("dup", test_image, command=TERM_LOOP))
    assert not isinstance(ei.value, (ImageNotFound, ContainerNotFound, EngineUnavailable))
    assert "already in use" in str(ei.value)
    assert "\n" not in str(ei.value)


def test_missing_image_fails_fast_without_pull(rt, test_image, engine_api):
    t0 = time.monotonic()
    with pytest.raises(ImageNotFound) as ei:
        rt.create(spec("noimage", "swarmctl-test/does-not-exist:latest", command=["true"]))
    assert time.monotonic() - t0 < 3
    assert "does-not-exist" in str(ei.value)
    assert isinstance(ei.value, RuntimeFailure)
    assert rt.inspect(f"swt-{RUN_ID}-noimage") is None
    assert not any("does-not-exist" in t for i in engine_api.images() for t in (i.get("RepoTags") or []))


def test_engine_unavailable_for_missing_socket():
    r = DockerRuntime("unix:///tmp/swarmctl-no-such-dir/docker.sock", timeout=5)
    try:
        t0 = time.monotonic()
        with pytest.raises(EngineUnavailable) as ei:
            r.ping()
        assert time.monotonic() - t0 < 3
        assert "No such file or directory" in str(ei.value)
        assert isinstance(ei.value, RuntimeFailure)
        for call in (lambda: r.create(ContainerSpec(name="x", image="y")), lambda: r.inspect("x"),
                     lambda: r.list({}), lambda: r.remove("x"), lambda: r.logs("x")):
            with pytest.raises(EngineUnavailable):
                call()
    finally:
        r.close()


def test_bad_address_is_value_error():
    with pytest.raises(ValueError):
        DockerRuntime("foo://bar")


def test_closed_runtime_refuses(docker_engine):
    r = DockerRuntime(docker_engine)
    r.ping()
    r.close()
    with pytest.raises(RuntimeFailure):
        r.ping()


def test_concurrent_use_from_thread_pool(rt, test_image):
    n = 16

    def up(i):
        cid = rt.create(spec(f"par{i}", test_image, command=TERM_LOOP, labels={"par": "yes"}))
        rt.start(cid)
        return cid, rt.inspect(cid).running

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(up, range(n)))
        assert all(ok for _, ok in results)
        ids = {cid for cid, _ in results}
        assert len(ids) == n
        listed = rt.list({RUN_LABEL: RUN_ID, "par": "yes"})
        assert {s.id for s in listed} == ids and all(s.running for s in listed)
        states = list(pool.map(rt.inspect, ids))
        assert all(s is not None and s.running for s in states)
        list(pool.map(lambda cid: rt.stop(cid, timeout=5), ids))
        assert all(s.status == "exited" for s in pool.map(rt.inspect, ids))
        list(pool.map(rt.remove, ids))
    assert rt.list({RUN_LABEL: RUN_ID, "par": "yes"}) == []


# ---- healthchecks --------------------------------------------------------------------------------
HEALTH_OK = {"test": ["CMD-SHELL", "test -f /tmp/ok"], "interval": 0.5, "timeout": 2.0, "retries": 3,
             "start_period": 10.0, "start_interval": 5.0}


def test_healthcheck_starting_then_healthy(rt, test_image, engine_api):
    cid = rt.create(spec("health-ok", test_image, args=["sh", "-c", "sleep 3; touch /tmp/ok; sleep 60"],
                         healthcheck=HEALTH_OK))
    config = engine_api.inspect_container(cid)["Config"]["Healthcheck"]
    assert config["Test"] == HEALTH_OK["test"]
    assert (config["Interval"], config["Timeout"], config["StartPeriod"], config["Retries"]) == \
        (500_000_000, 2_000_000_000, 10_000_000_000, 3)
    began = time.monotonic()
    rt.start(cid)
    assert rt.inspect(cid).health == "starting"
    listed = rt.list({RUN_LABEL: RUN_ID})
    assert [c.health for c in listed if c.id == cid] == ["starting"]  # the list's status text says it too
    state = wait_for(lambda: (s := rt.inspect(cid)).health != "starting" and s, timeout=15, interval=0.1)
    assert state.health == "healthy" and time.monotonic() - began >= 2.5
    assert [c.health for c in rt.list({RUN_LABEL: RUN_ID}) if c.id == cid] == ["healthy"]


def test_healthcheck_unhealthy_with_its_output(rt, test_image):
    failing = {"test": ["CMD-SHELL", "echo 'no /tmp/ok here'; exit 1"], "interval": 0.3, "timeout": 2.0,
               "retries": 2, "start_period": 0.0, "start_interval": 5.0}
    cid = rt.create(spec("health-bad", test_image, command=TERM_LOOP, healthcheck=failing))
    rt.start(cid)
    state = wait_for(lambda: (s := rt.inspect(cid)).health == "unhealthy" and s, timeout=15, interval=0.1)
    assert state.running and state.health_output == "no /tmp/ok here"
    assert [c.health for c in rt.list({RUN_LABEL: RUN_ID}) if c.id == cid] == ["unhealthy"]


def test_no_healthcheck_means_no_health(rt, test_image, engine_api):
    none = rt.create(spec("health-none", test_image, command=TERM_LOOP,
                          healthcheck={"test": ["NONE"], "interval": 30.0}))
    plain = rt.create(spec("health-plain", test_image, command=TERM_LOOP))
    assert engine_api.inspect_container(none)["Config"]["Healthcheck"] == {"Test": ["NONE"]}
    assert not engine_api.inspect_container(plain)["Config"].get("Healthcheck")
    for cid in (none, plain):
        rt.start(cid)
        assert rt.inspect(cid).health is None


def test_worker_keeps_a_task_starting_until_healthy_and_fails_an_unhealthy_one(rt, test_image):
    """The agent's rule against the real engine: running only once healthy; unhealthy: stopped, failed."""
    import asyncio

    from swarmctl.agent.worker import LABEL_NODE, Worker
    from swarmctl.state.records import can_move, default_task_spec

    node = f"swt-{RUN_ID}-node"
    tasks = {}
    for tid, args, health in (
            (f"ok{RUN_ID}", ["sh", "-c", "sleep 2; touch /tmp/ok; exec sleep 60"], HEALTH_OK),
            (f"bad{RUN_ID}", ["sh", "-c", "exec sleep 60"], dict(HEALTH_OK, interval=0.3, retries=2, start_period=0))):
        tasks[tid] = {"id": tid, "service_id": "s1", "service_name": f"swt-{RUN_ID}", "slot": len(tasks) + 1,
                      "node_id": node, "desired_state": "running", "status": {"state": "assigned"},
                      "spec": dict(default_task_spec(), image=test_image, args=args, healthcheck=health,
                                   stop_grace_period=1.0)}
    seen = {tid: [] for tid in tasks}
    version = [0]

    async def call(method, path, body=None, timeout=10):
        if path == "/v1/session/assignments":
            await asyncio.sleep(0.05)
            return {"version": str(version[0]), "tasks": [dict(t) for t in tasks.values()]}
        for update in body["updates"]:
            task = tasks[update["task_id"]]
            seen[task["id"]].append(update["state"])
            if can_move(task["status"]["state"], update["state"]) or update.get("health"):
                task["status"] = dict(task["status"], **{k: v for k, v in update.items() if k != "task_id"})
        version[0] += 1
        return {"applied": len(body["updates"])}

    async def scenario():
        worker = Worker(node, lambda: DockerRuntime(rt.base_url), call, poll_wait=0.05)
        worker.start()
        try:
            deadline = time.monotonic() + 30
            ok, bad = (tasks[t]["status"] for t in tasks)
            while time.monotonic() < deadline and not (ok["state"] == "running" and bad["state"] == "failed"):
                if ok["state"] == "starting" and ok.get("health") == "starting":
                    assert "running" not in seen[f"ok{RUN_ID}"]
                await asyncio.sleep(0.1)
                ok, bad = (tasks[t]["status"] for t in tasks)
        finally:
            await worker.stop()
    try:
        asyncio.run(scenario())
        ok, bad = (tasks[t]["status"] for t in tasks)
        assert (ok["state"], ok.get("health")) == ("running", "healthy")
        assert "starting" in seen[f"ok{RUN_ID}"]
        assert (bad["state"], bad["err"], bad.get("health")) == ("failed", "unhealthy container", "unhealthy")
        stopped = rt.inspect(bad["container_id"])
        assert stopped is not None and stopped.status == "exited"
    finally:
        for c in rt.list({LABEL_NODE: node}):
            rt.remove(c.id, force=True)

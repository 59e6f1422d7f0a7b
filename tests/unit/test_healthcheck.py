"""Healthchecks with Docker's semantics: the spec's rules and texts (validate_spec), the CLI's flags, the engine's
Healthcheck config (nanoseconds), the worker's task states for a container's health (a fake runtime stands in for
the engine's answers), the dispatcher keeping the health fields, and `service ps`."""

from __future__ import annotations

import asyncio
import time

import pytest

from swarmctl.agent.worker import LABEL_NODE, LABEL_TASK, Worker, container_spec
from swarmctl.api.schemas import ServiceCreateRequest, TaskStatusUpdate
from swarmctl.cli import service_cmds as sc
from swarmctl.cli.client import CLIError
from swarmctl.cli.main import build_parser, main
from swarmctl.errors import BadRequest
from swarmctl.manager import services
from swarmctl.manager.dispatcher import StatusBatcher
from swarmctl.runtime.base import ContainerState, Runtime
from swarmctl.runtime.docker_engine import _state, _summary_state, healthcheck_config
from swarmctl.state.records import HEALTHCHECK_DEFAULTS, can_move, default_task_spec

SHELL = ["CMD-SHELL", "test -f /tmp/ok"]


# ==== the spec ==================================================================================
def _spec(healthcheck):
    return services.build_spec({"name": "web", "task": {"image": "busybox", "healthcheck": healthcheck}})


def test_no_healthcheck_by_default_the_image_s_applies():
    assert default_task_spec()["healthcheck"] is None
    assert services.build_spec({"name": "web", "task": {"image": "busybox"}})["task"]["healthcheck"] is None


def test_docker_s_defaults_are_filled_in():
    assert _spec({"test": SHELL})["task"]["healthcheck"] == {
        "test": SHELL, "interval": 30.0, "timeout": 30.0, "retries": 3, "start_period": 0.0, "start_interval": 5.0}
    assert _spec({"test": SHELL, "interval": 0.5, "retries": 1})["task"]["healthcheck"] == dict(
        HEALTHCHECK_DEFAULTS, test=SHELL, interval=0.5, retries=1)
    assert _spec({"interval": 2})["task"]["healthcheck"]["test"] == []  # the image's test, with these timings
    assert _spec({"test": ["NONE"]})["task"]["healthcheck"] == dict(HEALTHCHECK_DEFAULTS, test=["NONE"])
    assert _spec({"test": ["CMD", "true"]})["task"]["healthcheck"]["test"] == ["CMD", "true"]


@pytest.mark.parametrize("healthcheck, message", [
    ({"test": ["NONE"], "interval": 5.0}, "--no-healthcheck conflicts with --health-* options"),
    ({"test": ["NONE"], "retries": 1}, "--no-healthcheck conflicts with --health-* options"),
    ({"test": SHELL, "interval": -1.0}, "healthcheck interval cannot be negative"),
    ({"test": SHELL, "timeout": -0.5}, "healthcheck timeout cannot be negative"),
    ({"test": SHELL, "start_period": -2}, "healthcheck start_period cannot be negative"),
    ({"test": SHELL, "start_interval": 0.0005}, "healthcheck start_interval cannot be less than 1ms"),
    ({"test": SHELL, "retries": -1}, "healthcheck retries cannot be negative"),
    ({"test": SHELL, "retries": 1.5}, "invalid healthcheck retries"),
    ({"test": SHELL, "interval": "5s"}, "invalid healthcheck interval '5s': expected a number"),
    ({"test": ["CMD-SHELL"]}, "invalid healthcheck test"),
    ({"test": ["CMD-SHELL", " "]}, "invalid healthcheck test"),
    ({"test": ["CMD"]}, "invalid healthcheck test"),
    ({"test": ["SHELL", "true"]}, "invalid healthcheck test"),
    ({"test": "true"}, "invalid healthcheck test"),
    ({"test": SHELL, "period": 1}, "unknown healthcheck setting 'period'"),
    ("test -f /tmp/ok", "healthcheck must be an object or null"),
])
def test_bad_healthchecks_are_refused_with_one_line(healthcheck, message):
    with pytest.raises(BadRequest) as info:
        _spec(healthcheck)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_api_schema_takes_the_healthcheck_and_status_fields():
    body = ServiceCreateRequest.model_validate(
        {"name": "web", "task": {"image": "busybox", "healthcheck": {"test": SHELL, "interval": 0.5, "retries": 2}}})
    assert body.model_dump(exclude_none=True)["task"]["healthcheck"] == {"test": SHELL, "interval": 0.5, "retries": 2}
    with pytest.raises(ValueError):
        ServiceCreateRequest.model_validate({"name": "web", "task": {"image": "busybox",
                                                                     "healthcheck": {"test": SHELL, "period": 1}}})
    update = TaskStatusUpdate.model_validate({"task_id": "t1", "state": "failed", "health": "unhealthy",
                                              "health_output": "no"})
    assert (update.health, update.health_output) == ("unhealthy", "no")


def _service(healthcheck):
    spec = _spec(healthcheck)
    return {"id": "s1", "version": 3, "spec_version": 1, "spec": spec}


def test_an_update_replaces_the_healthcheck_whole():
    service = _service({"test": SHELL, "interval": 5.0, "retries": 1})
    new, changed = services._plan_update(service, {"task": {"healthcheck": {"test": ["NONE"]}}}, False)
    assert new["task"]["healthcheck"] == dict(HEALTHCHECK_DEFAULTS, test=["NONE"])
    assert changed == ["task.healthcheck"]
    same, changed = services._plan_update(service, {"task": {"image": "busybox"}}, False)
    assert same["task"]["healthcheck"] == service["spec"]["task"]["healthcheck"] and changed == []


# ==== the CLI ===================================================================================
def _args(*argv):
    return build_parser().parse_args(list(argv))


def test_create_flags_into_the_request_body():
    args = _args("service", "create", "--name", "web", "--health-cmd", "test -f /tmp/ok", "--health-interval", "500ms",
                 "--health-timeout", "1m30s", "--health-retries", "2", "--health-start-period", "10s",
                 "--health-start-interval", "1s", "busybox")
    assert sc.build_create_body(args)["task"]["healthcheck"] == {
        "test": SHELL, "interval": 0.5, "timeout": 90.0, "retries": 2, "start_period": 10.0, "start_interval": 1.0}
    args = _args("service", "create", "--name", "web", "--no-healthcheck", "busybox")
    assert sc.build_create_body(args)["task"]["healthcheck"] == {"test": ["NONE"]}
    args = _args("service", "create", "--name", "web", "--health-interval", "5s", "busybox")
    assert sc.build_create_body(args)["task"]["healthcheck"] == {"test": [], "interval": 5.0}
    assert "healthcheck" not in sc.build_create_body(_args("service", "create", "--name", "web", "busybox"))["task"]


@pytest.mark.parametrize("argv, message", [
    (["--no-healthcheck", "--health-retries", "2"], "--no-healthcheck conflicts with --health-* options"),
    (["--no-healthcheck", "--health-cmd", "true"], "--no-healthcheck conflicts with --health-* options"),
    (["--health-interval=-1s"], 'invalid argument "-1s" for "--health-interval" flag: duration cannot be negative'),
    (["--health-timeout", "soon"], "invalid --health-timeout 'soon'"),
    (["--health-retries", "-1"], "invalid --health-retries '-1'"),
    (["--health-start-period", "5x"], "invalid --health-start-period '5x'"),
])
def test_create_bad_flags_are_cli_errors(argv, message):
    with pytest.raises(CLIError) as info:
        sc.build_create_body(_args("service", "create", "--name", "web", *argv, "busybox"))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_flags_exit_1_with_one_line_and_no_request(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SWARMCTL_HOST", f"unix://{tmp_path}/none.sock")
    assert main(["service", "create", "--no-healthcheck", "--health-cmd", "true", "busybox"]) == 1
    assert capsys.readouterr().err == "Error: --no-healthcheck conflicts with --health-* options\n"
    assert main(["service", "update", "--health-interval=-5s", "web"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: invalid argument \"-5s\"") and err.count("\n") == 1


def _current(healthcheck):
    return {"spec": {"name": "web", "mode": "replicated", "replicas": 1, "labels": {},
                     "task": dict(default_task_spec(), image="busybox", healthcheck=healthcheck)}}


def test_update_flags_merge_into_the_existing_healthcheck():
    old = dict(HEALTHCHECK_DEFAULTS, test=SHELL, interval=5.0)
    body = sc.build_update_body(_args("service", "update", "--health-retries", "7", "web"), _current(old))
    assert body["task"]["healthcheck"] == dict(old, retries=7)
    body = sc.build_update_body(_args("service", "update", "--health-cmd", "true", "web"), _current(None))
    assert body["task"]["healthcheck"] == {"test": ["CMD-SHELL", "true"]}
    body = sc.build_update_body(_args("service", "update", "--health-cmd", "", "web"), _current(old))
    assert body["task"]["healthcheck"] == dict(old, test=[])  # Docker: the image's test
    off = dict(HEALTHCHECK_DEFAULTS, test=["NONE"])
    body = sc.build_update_body(_args("service", "update", "--health-interval", "1s", "web"), _current(off))
    assert body["task"]["healthcheck"] == dict(off, test=[], interval=1.0)
    body = sc.build_update_body(_args("service", "update", "--no-healthcheck", "web"), _current(old))
    assert body["task"]["healthcheck"] == {"test": ["NONE"]}  # replaces it
    assert "task" not in sc.build_update_body(_args("service", "update", "web"), _current(old))
    assert ("spec", "task", "healthcheck") in sc.update_paths(_args("service", "update", "--health-retries", "1",
                                                                    "web"))
    assert ("spec", "task", "healthcheck") not in sc.update_paths(_args("service", "update", "web"))


def _ps_task(state, err="", **status):
    return {"id": "t" * 25, "service_id": "s1", "service_name": "web", "slot": 1, "node_id": "n1",
            "node_name": "node-1", "desired_state": "running", "spec": {"image": "busybox"},
            "status": dict(state=state, err=err, timestamp=100.0, **status)}


def test_service_ps_shows_starting_and_the_last_check_only_untruncated():
    starting = _ps_task("starting", health="starting")
    assert sc.ps_rows([starting], 105.0)[0][5] == "Starting 5 seconds ago"
    failed = _ps_task("failed", err="unhealthy container", health="unhealthy", health_output="no /tmp/ok here")
    assert sc.ps_rows([failed], 105.0)[0][6] == '"unhealthy container"'
    assert sc.ps_rows([failed], 105.0, no_trunc=True)[0][6] == \
        '"unhealthy container (last health check: no /tmp/ok here)"'


# ==== the engine's config and answers =============================================================
def test_healthcheck_config_in_nanoseconds():
    health = dict(HEALTHCHECK_DEFAULTS, test=SHELL, interval=0.5, timeout=2.0, start_period=1.5,
                  start_interval=0.25, retries=4)
    assert healthcheck_config(health) == {"Test": SHELL, "Interval": 500_000_000, "Timeout": 2_000_000_000,
                                          "StartPeriod": 1_500_000_000, "StartInterval": 250_000_000, "Retries": 4}
    assert healthcheck_config(dict(HEALTHCHECK_DEFAULTS, test=["NONE"])) == {"Test": ["NONE"]}
    assert healthcheck_config(None) is None  # the engine applies the image's HEALTHCHECK


def test_container_spec_carries_the_task_s_healthcheck():
    health = dict(HEALTHCHECK_DEFAULTS, test=SHELL)
    task = {"id": "t1", "service_id": "s1", "service_name": "web", "slot": 1,
            "spec": dict(default_task_spec(), image="busybox", healthcheck=health)}
    assert container_spec(task, "n1").healthcheck == health


def test_engine_states_give_the_health():
    info = {"Id": "c1", "Name": "/web.1", "Config": {"Labels": {}},
            "State": {"Status": "running", "Health": {"Status": "unhealthy", "Log": [
                {"Output": "old"}, {"Output": "  line one\nline two  " + "x" * 300}]}}}
    state = _state(info)
    assert state.health == "unhealthy"
    assert state.health_output.startswith("line one line two x") and len(state.health_output) <= 200
    assert _state({"Id": "c1", "State": {"Status": "running"}}).health is None
    for text, health in (("Up 2 seconds (health: starting)", "starting"), ("Up 5 minutes (healthy)", "healthy"),
                         ("Up 1 second (unhealthy)", "unhealthy"), ("Up 3 seconds", None)):
        summary = {"Id": "c1", "Names": ["/web.1"], "State": "running", "Status": text}
        assert _summary_state(summary).health == health


# ==== the worker ================================================================================
class FakeEngine(Runtime):
    """The engine's answers for the worker: containers whose health the test sets."""

    def __init__(self, health=None):
        self.health = health  # of every container started from now on
        self.containers: dict[str, ContainerState] = {}
        self.specs = {}
        self.stops = []

    def set_health(self, health, output=""):
        for c in self.containers.values():
            c.health, c.health_output = health, output

    def ping(self):
        return {}

    def has_image(self, image):
        return True

    def create(self, spec):
        cid = f"c{len(self.containers) + 1}"
        self.containers[cid] = ContainerState(id=cid, name=spec.name, labels=dict(spec.labels), status="created",
                                              exit_code=None, error="", started_at=None, finished_at=None)
        self.specs[cid] = spec
        return cid

    def start(self, container_id):
        c = self.containers[container_id]
        c.status, c.health = "running", self.health

    def stop(self, container_id, timeout=10):
        self.stops.append((container_id, timeout))
        c = self.containers[container_id]
        c.status, c.exit_code = "exited", 137

    def remove(self, container_id, force=True):
        self.containers.pop(container_id, None)

    def inspect(self, container_id):
        c = self.containers.get(container_id)
        return None if c is None else ContainerState(**vars(c))

    def list(self, labels):
        # as the engine's list: the health without its output
        return [ContainerState(**dict(vars(c), health_output="")) for c in self.containers.values()
                if all(c.labels.get(k) == v for k, v in labels.items())]

    def logs(self, container_id, tail=None):
        return []

    def close(self):
        pass


class FakeManager:
    """The worker's two session calls; keeps each task's status as the dispatcher would (health fields too)."""

    def __init__(self, tasks):
        self.tasks = {t["id"]: t for t in tasks}
        self.version = 0
        self.reports = []

    async def call(self, method, path, body=None, timeout=10):
        if path == "/v1/session/assignments":
            if body["since"] == str(self.version):
                await asyncio.sleep(0.02)
            return {"version": str(self.version), "tasks": [dict(t) for t in self.tasks.values()]}
        assert path == "/v1/session/status"
        for update in body["updates"]:
            self.reports.append(dict(update))
            task = self.tasks[update["task_id"]]
            same = update["state"] == task["status"]["state"]
            if can_move(task["status"]["state"], update["state"]) or (same and update.get("health")):
                task["status"] = dict(task["status"], **{k: v for k, v in update.items() if k != "task_id"})
        self.version += 1
        return {"applied": len(body["updates"])}

    def status(self, task_id="t1"):
        return self.tasks[task_id]["status"]


def _task(task_id="t1", healthcheck=None):
    return {"id": task_id, "service_id": "s1", "service_name": "web", "slot": 1, "node_id": "n1",
            "desired_state": "running", "status": {"state": "assigned"},
            "spec": dict(default_task_spec(), image="busybox", stop_grace_period=3.0, healthcheck=healthcheck)}


async def _until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return False


def _run_worker(engine, manager, scenario):
    async def main_():
        worker = Worker("n1", lambda: engine, manager.call, poll_wait=0.05)
        worker.start()
        try:
            await scenario(worker)
        finally:
            await worker.stop()
    asyncio.run(main_())


def test_a_starting_container_keeps_its_task_starting_until_healthy():
    engine = FakeEngine(health="starting")
    manager = FakeManager([_task(healthcheck=dict(HEALTHCHECK_DEFAULTS, test=SHELL))])

    async def scenario(worker):
        assert await _until(lambda: manager.status().get("health") == "starting")
        assert manager.status()["state"] == "starting"
        await asyncio.sleep(1.2)  # a reconcile or two: still starting
        assert manager.status()["state"] == "starting"
        engine.set_health("healthy", "all good")
        assert await _until(lambda: manager.status()["state"] == "running")
    _run_worker(engine, manager, scenario)
    assert engine.specs["c1"].healthcheck["test"] == SHELL
    status = manager.status()
    assert (status["health"], status["health_output"]) == ("healthy", "all good")
    assert not any(r["state"] == "running" and r.get("health") != "healthy" for r in manager.reports)


def test_an_unhealthy_container_is_stopped_and_its_task_fails():
    engine = FakeEngine(health="starting")
    manager = FakeManager([_task(healthcheck=dict(HEALTHCHECK_DEFAULTS, test=SHELL))])

    async def scenario(worker):
        assert await _until(lambda: manager.status()["state"] == "starting")
        engine.set_health("unhealthy", "no /tmp/ok")
        assert await _until(lambda: manager.status()["state"] == "failed")
    _run_worker(engine, manager, scenario)
    status = manager.status()
    assert status["err"] == "unhealthy container"
    assert (status["health"], status["health_output"]) == ("unhealthy", "no /tmp/ok")
    assert engine.stops == [("c1", 3.0)]  # with the task's stop grace period
    assert "c1" in engine.containers  # stopped, not removed: the task's history keeps it


def test_a_healthy_running_task_that_turns_unhealthy_fails():
    engine = FakeEngine(health="starting")
    manager = FakeManager([_task(healthcheck=dict(HEALTHCHECK_DEFAULTS, test=SHELL))])

    async def scenario(worker):
        await asyncio.sleep(0.1)
        engine.set_health("healthy")
        assert await _until(lambda: manager.status()["state"] == "running")
        engine.set_health("unhealthy", "down")
        assert await _until(lambda: manager.status()["state"] == "failed")
    _run_worker(engine, manager, scenario)
    assert manager.status()["err"] == "unhealthy container" and len(engine.stops) == 1


def test_without_a_healthcheck_a_task_runs_at_once():
    engine = FakeEngine(health=None)
    manager = FakeManager([_task()])

    async def scenario(worker):
        assert await _until(lambda: manager.status()["state"] == "running")
    _run_worker(engine, manager, scenario)
    assert "health" not in manager.status() and engine.stops == []


# ==== the dispatcher ============================================================================
class _Store:
    def __init__(self, *tasks):
        self.tasks = {t["id"]: t for t in tasks}

    def get(self, kind, record_id):
        return self.tasks.get(record_id)


def _stored(state, **status):
    return {"id": "t1", "node_id": "n1", "status": dict(state=state, message=state, err="", **status)}


def _sets(op):
    return {tuple(path): value for path, value in op["set"]}


def test_the_dispatcher_keeps_the_health_fields():
    batcher = StatusBatcher(_Store(_stored("starting")))
    counts, ops = batcher.plan([("n1", [{"task_id": "t1", "state": "failed", "err": "unhealthy container",
                                         "health": "unhealthy", "health_output": "no"}], None)])
    sets = _sets(ops[0])
    assert counts == [1]
    assert (sets[("status", "health")], sets[("status", "health_output")]) == ("unhealthy", "no")
    assert sets[("status", "err")] == "unhealthy container" and sets[("status", "state")] == "failed"


def test_a_report_of_the_same_state_counts_only_for_a_new_health():
    batcher = StatusBatcher(_Store(_stored("starting")))
    counts, ops = batcher.plan([("n1", [{"task_id": "t1", "state": "starting", "health": "starting",
                                         "health_output": ""}], None)])
    assert counts == [1] and _sets(ops[0]) == {("status", "health"): "starting", ("status", "health_output"): ""}
    batcher = StatusBatcher(_Store(_stored("starting", health="starting")))
    assert batcher.plan([("n1", [{"task_id": "t1", "state": "starting", "health": "starting"}], None)]) == ([0], [])
    assert batcher.plan([("n1", [{"task_id": "t1", "state": "starting"}], None)]) == ([0], [])
    batcher = StatusBatcher(_Store(_stored("failed")))
    assert batcher.plan([("n1", [{"task_id": "t1", "state": "failed", "health": "unhealthy"}], None)]) == ([0], [])
    batcher = StatusBatcher(_Store(_stored("starting")))  # another node's report of the task: ignored
    assert batcher.plan([("n2", [{"task_id": "t1", "state": "starting", "health": "starting"}], None)]) == ([0], [])

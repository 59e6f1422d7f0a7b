"""swarmctl.cluster.service: option -> request mapping, and idempotence decisions checked against the
daemon's own spec code (swarmctl.api.schemas + swarmctl.manager.services), served by a fake daemon."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.swarmctl.cluster.plugins.modules import service as svc

schemas = pytest.importorskip("swarmctl.api.schemas")
services = pytest.importorskip("swarmctl.manager.services")
records = pytest.importorskip("swarmctl.state.records")
errors = pytest.importorskip("swarmctl.errors")

IMAGE = "swarmctl-test/busybox:latest"


def params(**kwargs):
    base = {"name": "web", "state": "present", "image": IMAGE, "mode": "replicated", "replicas": -1,
            "command": None, "args": None, "env": None, "labels": None, "network_mode": None, "placement": None,
            "reservations": None, "limits": None, "restart_config": None, "stop_grace_period": None,
            "publish": None, "endpoint_mode": None, "force_update": False}
    base.update(kwargs)
    return base


def test_default_task_matches_the_daemon():
    assert svc.DEFAULT_TASK == records.default_task_spec()


def test_build_body_maps_every_option():
    body = svc.build_body(params(
        replicas=3, command="sh -c 'sleep 3600'", args=["a", 1], env=["A=1", "B=x=y"], labels={"team": "x"},
        network_mode="none",
        placement={"constraints": ["node.role==worker"], "replicas_max_per_node": 2, "strategy": "binpack"},
        reservations={"cpus": 0.25, "memory": "64M"}, limits={"cpus": 1, "memory": "1.5G"},
        restart_config={"condition": "on-failure", "delay": "1m30s", "max_attempts": 3, "window": "500ms"},
        stop_grace_period="2s"))
    assert body == {
        "name": "web", "mode": "replicated", "replicas": 3, "labels": {"team": "x"},
        "task": {"image": IMAGE, "command": ["sh", "-c", "sleep 3600"], "args": ["a", "1"],
                 "env": {"A": "1", "B": "x=y"}, "network_mode": "none",
                 "placement": {"constraints": ["node.role==worker"], "max_replicas_per_node": 2,
                               "strategy": "binpack"},
                 "resources": {"reservations": {"cpus": 0.25, "memory": 64 * 1024 ** 2},
                               "limits": {"cpus": 1.0, "memory": int(1.5 * 1024 ** 3)}},
                 "restart_policy": {"condition": "on-failure", "delay": 90.0, "max_attempts": 3, "window": 0.5},
                 "stop_grace_period": 2.0}}
    # the daemon's schema accepts it unchanged
    assert schemas.ServiceCreateRequest(**body).model_dump(exclude_none=True) == body
    assert svc.new_spec(body) == services.build_spec(copy.deepcopy(body))


def test_minimal_body_and_spec_match_the_daemon():
    body = svc.build_body(params())
    assert body == {"name": "web", "mode": "replicated", "task": {"image": IMAGE}}
    assert svc.new_spec(body) == services.build_spec(copy.deepcopy(body))
    body = svc.build_body(params(mode="global"))
    assert svc.new_spec(body) == services.build_spec(copy.deepcopy(body))


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "-web"}, "invalid service name"),
    ({"mode": "global", "replicas": 2}, "replicas can only be used with mode=replicated"),
    ({"replicas": -2}, "invalid replicas"),
    ({"placement": {"constraints": ["node.rack==1"]}}, "unknown key 'node.rack'"),
    ({"placement": {"constraints": ["node.role=worker"]}}, "expected KEY==VALUE"),
    ({"placement": {"constraints": ["node.labels.==x"]}}, "missing label name"),
    ({"limits": {"memory": "lots"}}, "invalid limits.memory 'lots'"),
    ({"restart_config": {"delay": "soon"}}, "invalid restart_config.delay 'soon'"),
    ({"stop_grace_period": "5x"}, "invalid stop_grace_period"),
    ({"env": {"DEBUG": True}}, "quote values"),
    ({"env": ["NOVALUE"]}, "expected KEY=VALUE"),
    ({"env": {"A B": "1"}}, "invalid environment variable name"),
    ({"env": 5}, "dictionary or a list"),
    ({"command": "sh -c 'unclosed"}, "invalid command"),
    ({"image": " "}, "image must not be empty"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(svc.ServiceParamError, match=message):
        svc.build_body(params(**kwargs))


def daemon_update(service, changes, others=()):
    """swarmctl.manager.services.update without the store: the spec it would store, and its changes."""
    changes = dict(changes)
    force = bool(changes.pop("force", False))
    replace = bool(changes.pop("replace", False))
    new, changed = services._plan_update(service, changes, force, replace=replace)
    if "endpoint" in changed:
        new["endpoint"] = services.allocate_published(list(others), new["endpoint"], service["spec"].get("endpoint"))
        if new["endpoint"] == service["spec"].get("endpoint"):
            changed.remove("endpoint")
    return new, changed


class FakeServices:
    """The service routes of the daemon, on top of its real spec code."""

    def __init__(self, daemon):
        self.items = {}
        daemon.routes[("GET", "/v1/services")] = lambda body: (200, [copy.deepcopy(s) for s in self.items.values()])
        daemon.routes[("POST", "/v1/services")] = lambda body: self.answer(self.create, body)
        self.daemon = daemon

    @staticmethod
    def answer(handler, *args):
        """The daemon's 4xx answer for its own errors (swarmctl.errors.APIError), as its API server gives it."""
        try:
            return handler(*args)
        except errors.APIError as exc:
            return exc.status, {"message": str(exc)}

    def create(self, body):
        body = schemas.ServiceCreateRequest(**body).model_dump(exclude_none=True)
        spec = services.build_spec(body)
        spec["endpoint"] = services.allocate_published(list(self.items.values()), spec["endpoint"], None)
        sid = "s%d" % (len(self.daemon.requests))
        self.items[sid] = {"id": sid, "spec": spec, "spec_version": 1, "previous_spec": None,
                           "replicas_status": {"running": 0, "desired": spec["replicas"]}}
        self.daemon.routes[("POST", f"/v1/services/{sid}/update")] = lambda b: self.answer(self.update, sid, b)
        self.daemon.routes[("DELETE", f"/v1/services/{sid}")] = lambda b: (200, self.items.pop(sid) and {})
        # a rolling update ends at once here: the progress route says it completed
        self.daemon.routes[("GET", f"/v1/services/{sid}/progress")] = lambda b: (200, {"update_status": {
            "state": "completed", "message": "update completed"}})
        self.daemon.routes[("GET", f"/v1/services/{sid}")] = lambda b: (200, copy.deepcopy(self.items[sid]))
        return 200, copy.deepcopy(self.items[sid])

    def update(self, sid, body):
        body = schemas.ServiceUpdateRequest(**body).model_dump(exclude_none=True)
        new, changed = daemon_update(self.items[sid], body, [s for i, s in self.items.items() if i != sid])
        if changed:
            self.items[sid] = dict(self.items[sid], spec=new, spec_version=self.items[sid]["spec_version"] + 1)
        return 200, {"service": copy.deepcopy(self.items[sid]), "changes": changed}


def run_cycle(run_module, args, expect_changes=None):
    """check mode predicts a change and makes none; the real run changes; reruns (also in check mode) don't."""
    daemon_writes = len(run_module.fake.writes())
    predicted = run_module("service", args, check_mode=True)
    assert predicted["changed"], predicted
    assert len(run_module.fake.writes()) == daemon_writes
    real = run_module("service", args)
    assert real["changed"] and real["changes"] == predicted["changes"], (predicted, real)
    assert real["diff"]["after"] == predicted["diff"]["after"]
    if expect_changes is not None:
        assert real["changes"] == expect_changes
    for check_mode in (False, True):
        again = run_module("service", args, check_mode=check_mode)
        assert not again["changed"] and again["changes"] == [] and "diff" not in again, again
    return real


@pytest.fixture
def fake(fake_daemon, run_module):
    run_module.fake = fake_daemon
    return FakeServices(fake_daemon)


def test_create_update_remove_cycle(fake, run_module):
    host = fake.daemon.host
    base = {"swarmctl_host": host, "name": "web", "image": IMAGE, "command": ["sleep", "3600"]}
    created = run_cycle(run_module, base, expect_changes=[])
    assert created["diff"]["before"] == {} and created["swarm_service"]["spec"]["replicas"] == 1

    run_cycle(run_module, dict(base, replicas=3, env={"A": "1"}, limits={"memory": "128M"}),
              expect_changes=["env", "limits.memory", "replicas"])
    # options left out keep their values: replicas stays 3
    assert not run_module("service", base)["changed"]
    run_cycle(run_module, dict(base, placement={"constraints": ["node.role==worker"]},
                               restart_config={"delay": "1s", "condition": "on-failure"}, stop_grace_period="1s",
                               labels={"team": "a"}),
              expect_changes=["labels", "placement.constraints", "restart_config.condition", "restart_config.delay",
                              "stop_grace_period"])
    # the same values written another way are no change
    same = run_module("service", dict(base, restart_config={"delay": "1000ms"}, stop_grace_period=1,
                                      limits={"memory": 134217728}, env=["A=1"], command="sleep 3600"))
    assert not same["changed"], same
    # defaults given explicitly are no change either
    assert not run_module("service", dict(base, network_mode="host", reservations={"cpus": 0, "memory": "0"}))["changed"]

    forced = run_module("service", dict(base, force_update=True))
    assert forced["changed"] and forced["changes"] == ["force_update"]

    removed = run_module("service", {"swarmctl_host": host, "name": "web", "state": "absent"}, check_mode=True)
    assert removed["changed"] and fake.items
    removed = run_module("service", {"swarmctl_host": host, "name": "web", "state": "absent"})
    assert removed["changed"] and removed["swarm_service"] is None and not fake.items
    assert removed["diff"]["after"] == {}
    assert not run_module("service", {"swarmctl_host": host, "name": "web", "state": "absent"})["changed"]


def test_mode_change_rebuilds(fake, run_module):
    base = {"swarmctl_host": fake.daemon.host, "name": "agent", "image": IMAGE}
    run_module("service", base)
    result = run_module("service", dict(base, mode="global"), check_mode=True)
    assert result["changed"] and result["rebuilt"] and "mode" in result["changes"]
    result = run_module("service", dict(base, mode="global"))
    assert result["rebuilt"] and result["swarm_service"]["spec"]["mode"] == "global"
    assert [m for m, _p, _b in fake.daemon.writes()][-2:] == ["DELETE", "POST"]
    assert not run_module("service", dict(base, mode="global"))["changed"]


def test_image_required_and_bad_options_fail_before_requests(fake, run_module):
    result = run_module("service", {"swarmctl_host": fake.daemon.host, "name": "web"})
    assert result["failed"] and "image" in result["msg"]
    result = run_module("service", {"swarmctl_host": fake.daemon.host, "name": "web", "image": IMAGE,
                                    "placement": {"constraints": ["bogus"]}}, check_mode=True)
    assert result["failed"] and "invalid constraint 'bogus'" in result["msg"]
    assert fake.daemon.writes() == []


def test_daemon_error_is_passed_through(fake_daemon, run_module):
    fake_daemon.routes[("GET", "/v1/services")] = (200, [])
    fake_daemon.routes[("POST", "/v1/services")] = (400, {"message": "image nope:1 not found on any node: "
                                                                     "swarmctl does not pull images"})
    result = run_module("service", {"swarmctl_host": fake_daemon.host, "name": "web", "image": "nope:1"})
    assert result["failed"] and result["msg"].startswith("image nope:1 not found") and result["status"] == 400


def test_update_config_defaults_and_mapping_match_the_daemon():
    assert svc.DEFAULT_UPDATE == records.default_update_config() == records.default_update_config(True)
    body = svc.build_body(params(update_config={"parallelism": 2, "delay": "10s", "order": "start-first",
                                                "failure_action": "rollback", "monitor": "1m",
                                                "max_failure_ratio": 0.25, "healthy_deadline": "30s",
                                                "progress_deadline": "1h"},
                                 rollback_config={"parallelism": 0, "failure_action": "continue"}))
    assert body["update_config"] == {"parallelism": 2, "delay": 10.0, "order": "start-first",
                                     "failure_action": "rollback", "monitor": 60.0, "max_failure_ratio": 0.25,
                                     "healthy_deadline": 30.0, "progress_deadline": 3600.0}
    assert schemas.ServiceCreateRequest(**body).model_dump(exclude_none=True) == dict(body, labels={})
    assert svc.new_spec(body) == services.build_spec(copy.deepcopy(body))
    for bad, text in (({"rollback_config": {"failure_action": "rollback"}}, "pause or continue"),
                      ({"update_config": {"max_failure_ratio": 2.0}}, "between 0 and 1"),
                      ({"update_config": {"delay": "soon"}}, "update_config.delay")):
        with pytest.raises(svc.ServiceParamError, match=text):
            svc.build_body(params(**bad))


def test_a_paused_rolling_update_fails_the_task_with_its_message(fake, run_module):
    host = fake.daemon.host
    base = {"swarmctl_host": host, "name": "web", "image": IMAGE}
    run_module("service", base)
    sid = next(iter(fake.items))
    message = "update paused due to failure or early termination of task abc123: unhealthy container"
    fake.daemon.routes[("GET", f"/v1/services/{sid}/progress")] = lambda b: (200, {"update_status": {
        "state": "paused", "message": message}})
    result = run_module("service", dict(base, env={"A": "2"}))
    assert result.get("failed") and result["msg"] == message and result["changed"]
    assert result["update_status"]["state"] == "paused"
    # wait: false returns at once
    result = run_module("service", dict(base, env={"A": "3"}, wait=False))
    assert not result.get("failed") and result["changed"]

"""swarmctl.cluster.service: placement.preferences (community.docker.docker_swarm_service's shape, a list of
`- spread: node.labels.zone`) -> the request's task.placement.preferences, and idempotence, against the
daemon's own spec code served by a fake daemon (test_service.FakeServices)."""

from __future__ import annotations

import copy
import re

import pytest

from ansible_collections.swarmctl.cluster.plugins.modules import service as svc

from .test_service import IMAGE, FakeServices, params, run_cycle

schemas = pytest.importorskip("swarmctl.api.schemas")
services = pytest.importorskip("swarmctl.manager.services")

ZONE, DISK = {"spread": "node.labels.zone"}, {"spread": "engine.labels.disk"}


def test_preferences_map_to_the_request_and_the_daemon_stores_them():
    body = svc.build_body(params(placement={"constraints": None, "preferences": [ZONE, DISK],
                                            "replicas_max_per_node": None, "strategy": None}))
    assert body["task"]["placement"] == {"preferences": [ZONE, DISK]}
    assert schemas.ServiceCreateRequest(**body).model_dump(exclude_none=True)["task"] == body["task"]
    assert svc.new_spec(body) == services.build_spec(copy.deepcopy(body))
    empty = svc.build_body(params(placement={"preferences": []}))
    assert empty["task"]["placement"] == {"preferences": []}


@pytest.mark.parametrize("pref, message", [
    ({"pack": "node.labels.zone"}, "unsupported placement preference pack (only spread is supported)"),
    ({"spread": "node.id"}, "spread over node.labels.KEY or engine.labels.KEY"),
    ({"spread": "engine.labels."}, "missing label name"),
    ({"spread": "node.labels.zone", "pack": "x"}, "expected one strategy and its argument"),
])
def test_bad_preferences_fail_in_the_module(pref, message):
    with pytest.raises(svc.ServiceParamError, match=re.escape(message)):
        svc.build_body(params(placement={"preferences": [pref]}))


@pytest.fixture
def fake(fake_daemon, run_module):
    run_module.fake = fake_daemon
    return FakeServices(fake_daemon)


def test_preferences_cycle(fake, run_module):
    base = {"swarmctl_host": fake.daemon.host, "name": "web", "image": IMAGE}
    run_cycle(run_module, base, expect_changes=[])
    assert not run_module("service", dict(base, placement={"preferences": []}))["changed"]  # the default
    real = run_cycle(run_module, dict(base, placement={"preferences": [ZONE]}),
                     expect_changes=["placement.preferences"])
    assert real["swarm_service"]["spec"]["task"]["placement"]["preferences"] == [ZONE]
    # left out: kept; the order is the hierarchy, so another order is a change
    assert not run_module("service", base)["changed"]
    run_cycle(run_module, dict(base, placement={"preferences": [DISK, ZONE]}), expect_changes=["placement.preferences"])
    run_cycle(run_module, dict(base, placement={"preferences": [ZONE, DISK]}), expect_changes=["placement.preferences"])
    run_cycle(run_module, dict(base, placement={"preferences": []}), expect_changes=["placement.preferences"])


def test_a_service_stored_without_preferences_has_none():
    old = services.build_spec({"name": "web", "mode": "replicated", "task": {"image": IMAGE}})
    del old["task"]["placement"]["preferences"]
    assert svc.changed_options(old, svc.updated_spec(old, {"task": {"placement": {"preferences": []}}})) == []

"""The service module repeats the daemon's healthcheck defaults and its duration parsing (a module may import only
the standard library and its module_utils): on the same inputs they agree with swarmctl.state.records,
swarmctl.cli.units.parse_duration and the daemon's check (services.check_healthcheck), so the spec the module
predicts is the one the daemon stores and a second run changes nothing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from swarmctl.cli.units import UnitError, parse_duration
from swarmctl.errors import BadRequest
from swarmctl.manager import services
from swarmctl.state.records import HEALTHCHECK_DEFAULTS, default_task_spec

svc = pytest.importorskip("ansible_collections.swarmctl.cluster.plugins.modules.service")
client = pytest.importorskip("ansible_collections.swarmctl.cluster.plugins.module_utils.swarmctl_client")

UNITS = st.sampled_from(["", "ns", "us", "µs", "ms", "s", "m", "h", "x", "S", " s"])
NUMBERS = st.one_of(st.integers(0, 10 ** 4).map(str), st.sampled_from(["0.5", ".5", "1.", "-1", "1e3", "", " 2"]))
JOINED = st.lists(st.builds(str.__add__, NUMBERS, UNITS), min_size=1, max_size=3).map("".join)
DURATIONS = st.one_of(JOINED,
                      st.sampled_from(["30s", "1m30s", "500ms", "0s", "5", "2h", "1d", "soon", "-5s"]))


def test_the_defaults_agree():
    assert svc.HEALTHCHECK_DEFAULTS == HEALTHCHECK_DEFAULTS
    assert svc.DEFAULT_TASK == default_task_spec()


@settings(max_examples=600, deadline=None)
@given(text=DURATIONS)
def test_duration_parsing_agrees_with_the_cli(text):
    try:
        expected = parse_duration(text)
    except UnitError:
        expected = None
    try:
        got = client.parse_duration(text)
    except ValueError:
        got = None
    assert got == (pytest.approx(expected) if expected is not None else None)


HEALTH = st.fixed_dictionaries({
    "test": st.one_of(st.none(), st.sampled_from(["test -f /tmp/ok", "curl -f http://localhost/ || exit 1"]),
                      st.sampled_from([["CMD", "true"], ["CMD-SHELL", "true"], ["NONE"], []])),
    "interval": st.one_of(st.none(), st.sampled_from(["30s", "500ms", "1m30s", "2", "0s"])),
    "timeout": st.one_of(st.none(), st.sampled_from(["30s", "10s", "1.5s"])),
    "retries": st.one_of(st.none(), st.integers(0, 10)),
    "start_period": st.one_of(st.none(), st.sampled_from(["0s", "5s", "1m"])),
    "start_interval": st.one_of(st.none(), st.sampled_from(["5s", "250ms"])),
})


@settings(max_examples=400, deadline=None)
@given(health=HEALTH)
def test_the_module_predicts_the_stored_healthcheck(health):
    body = svc.build_healthcheck(health)
    try:
        stored = services.check_healthcheck(body)
    except BadRequest as exc:  # the daemon refuses it ("NONE" with other settings): the module's run fails
        assert body["test"] == ["NONE"] and "--no-healthcheck" in str(exc)
        return
    assert stored == body
    spec = svc.new_spec({"name": "web", "mode": "replicated", "task": {"image": "busybox", "healthcheck": body}})
    assert svc.changed_options(spec, svc.updated_spec(spec, {"task": {"healthcheck": body}})) == []


def test_a_healthcheck_is_replaced_whole_as_the_daemon_does():
    old = svc.new_spec({"name": "web", "mode": "replicated", "task": {
        "image": "busybox", "healthcheck": svc.build_healthcheck({"test": "true", "interval": "5s"})}})
    new = svc.updated_spec(old, {"task": {"healthcheck": svc.build_healthcheck({"test": ["NONE"]})}})
    assert new["task"]["healthcheck"] == dict(HEALTHCHECK_DEFAULTS, test=["NONE"])
    assert svc.changed_options(old, new) == ["healthcheck"]
    assert ("spec", "task", "healthcheck") in svc.update_paths({"task": {"healthcheck": {"test": ["NONE"]}}})

"""The service module repeats the daemon's rules for the container options of issue 13 (a module may import only
the standard library and its module_utils): on the same mounts the module's checks (build_mounts) and the daemon's
(the API's TaskSpec + swarmctl.manager.services.build_spec) accept and refuse alike, and the spec the daemon stores
is the one the module predicts (new_spec / updated_spec merge the task as the daemon's _merge does)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings, strategies as st

svc = pytest.importorskip("ansible_collections.swarmctl.cluster.plugins.modules.service")
schemas = pytest.importorskip("swarmctl.api.schemas")
services = pytest.importorskip("swarmctl.manager.services")

IMAGE = "swarmctl-test/busybox:latest"
FIELDS = ("mounts", "log_driver", "read_only", "init", "tty", "cap_add", "cap_drop", "sysctls", "ulimits", "dns",
          "dns_options", "hosts", "stop_signal", "groups")

needs_fields = pytest.mark.skipif(
    any(f not in schemas.TaskSpec.model_fields for f in FIELDS),
    reason="the daemon has no container option fields yet (issue 13's server side)")


def daemon_spec(task):
    """The spec the daemon would store for a create with this task, or the text of its refusal."""
    body = {"name": "web", "mode": "replicated", "task": dict(task, image=IMAGE)}
    try:
        body = schemas.ServiceCreateRequest(**body).model_dump(exclude_none=True)
        return services.build_spec(copy.deepcopy(body)), None
    except Exception as exc:  # pydantic's ValidationError or the daemon's BadRequest: a 400
        return None, str(exc)


def module_body(options):
    params = {"name": "web", "state": "present", "image": IMAGE, "mode": "replicated", "replicas": -1}
    params.update(options)
    try:
        return svc.build_body(params), None
    except svc.ServiceParamError as exc:
        return None, str(exc)


MOUNT = st.fixed_dictionaries({
    "type": st.sampled_from(["bind", "volume", "tmpfs"]),
    "source": st.one_of(st.none(), st.sampled_from(["/srv/data", "data", "relative/dir", "/"])),
    "target": st.sampled_from(["/data", "/etc/app", "relative", "/data"]),
    "readonly": st.one_of(st.none(), st.booleans()),
    "propagation": st.one_of(st.none(), st.sampled_from(["rprivate", "shared"])),
    "no_copy": st.one_of(st.none(), st.booleans()),
    "labels": st.one_of(st.none(), st.just({"a": "b"})),
    "driver_config": st.one_of(st.none(), st.just({"name": "local", "options": {"o": "bind"}})),
    "tmpfs_size": st.one_of(st.none(), st.sampled_from(["64M", "1024", "1k"])),
    "tmpfs_mode": st.one_of(st.none(), st.sampled_from([0o1777, 0o700])),
})


@needs_fields
@settings(max_examples=400, deadline=None)
@given(mounts=st.lists(MOUNT, max_size=3))
def test_mounts_are_refused_alike_and_stored_as_predicted(mounts):
    body, module_error = module_body({"mounts": mounts})
    if body is None:
        _spec, daemon_error = daemon_spec({"mounts": [dict((k, v) for k, v in m.items() if v is not None)
                                                      for m in mounts]})
        assert daemon_error is not None, (mounts, module_error)
        return
    spec, daemon_error = daemon_spec(body["task"])
    assert daemon_error is None, (mounts, body["task"]["mounts"], daemon_error)
    assert svc.changed_options(spec, svc.new_spec(body)) == [], (spec["task"], body["task"])


@needs_fields
def test_every_container_option_is_stored_as_predicted():
    from tests.unit.plugins.modules.test_service_container import ALL_OPTIONS
    body, error = module_body(copy.deepcopy(ALL_OPTIONS))
    assert error is None
    spec, daemon_error = daemon_spec(body["task"])
    assert daemon_error is None, daemon_error
    predicted = svc.new_spec(body)
    assert svc.changed_options(spec, predicted) == []


@pytest.mark.parametrize("field, old, new", [
    ("sysctls", {"kernel.msgmax": "1", "kernel.shmmax": "2"}, {"kernel.msgmax": "3"}),
    ("hosts", {"a": "10.0.0.1", "b": "10.0.0.2"}, {"a": "10.0.0.3"}),
    ("log_driver", {"name": "json-file", "options": {"max-size": "1m"}}, {"name": "local", "options": {}}),
    ("labels", {"a": "1", "b": "2"}, {"a": "3"}),
    ("mounts", [{"type": "tmpfs", "target": "/a", "readonly": False}], [{"type": "tmpfs", "target": "/b",
                                                                         "readonly": False}]),
])
def test_an_update_merges_the_task_as_the_daemon_does(field, old, new):
    """The module predicts the daemon's merge of a task update, whatever it is (dicts merged or replaced)."""
    base = {"name": "web", "mode": "replicated", "replicas": 1, "labels": {}, "task": {"image": IMAGE, field: old}}
    assert svc.merge(base["task"], {field: new}) == services._merge(base["task"], {field: new})


# ---- the client-side rules the module shares with the CLI (swarmctl.cli.container_opts) ----------------------
container_opts = pytest.importorskip("swarmctl.cli.container_opts")


@pytest.mark.parametrize("names", [["host"], ["none"], ["host", "host"], ["overlay"], ["host", "none"],
                                   ["none", "backend"], ["ingress"], []])
def test_networks_are_refused_with_the_cli_text(names):
    try:
        expected, cli_error = container_opts.network_mode(list(names)), None
    except container_opts.UnitError as exc:
        expected, cli_error = None, str(exc)
    try:
        got, module_error = svc.network_mode_of(list(names)), None
    except svc.ServiceParamError as exc:
        got, module_error = None, str(exc)
    assert (got, module_error) == (expected, cli_error)


LINE = st.one_of(st.sampled_from(["A=1", "B=x=y", "# comment", "", "   ", "  C=indented", "A=again", "E=", "HOME",
                                  "UNSET_A2_VARIABLE", "D= spaced value "]),
                 st.builds(lambda k, v: "%s=%s" % (k, v), st.sampled_from(["K1", "K2", "A"]),
                           st.text(alphabet="abc =#", max_size=5)))


@settings(max_examples=200, deadline=None)
@given(files=st.lists(st.lists(LINE, max_size=6), max_size=3),
       env=st.one_of(st.none(), st.dictionaries(st.sampled_from(["A", "K1", "Z"]), st.sampled_from(["1", ""]))))
def test_env_files_are_read_and_merged_as_the_cli_does(tmp_path_factory, files, env):
    root = tmp_path_factory.mktemp("envfiles")
    paths = []
    for i, lines in enumerate(files):
        path = root / ("%d.env" % i)
        path.write_text("\n".join(lines) + "\n")
        paths.append(str(path))
    expected = container_opts.read_env_files(paths)
    expected.update(env or {})
    assert svc.merged_env({"env_files": paths, "env": env}) == expected

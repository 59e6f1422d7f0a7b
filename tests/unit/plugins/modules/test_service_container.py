"""swarmctl.cluster.service: the container options of issue 13 (community.docker.docker_swarm_service's names)
-> the task spec fields of the API, and their idempotence against the daemon's own spec code."""

from __future__ import annotations

import pytest

from ansible_collections.swarmctl.cluster.plugins.modules import service as svc

IMAGE = "swarmctl-test/busybox:latest"


def params(**kwargs):
    base = {"name": "web", "state": "present", "image": IMAGE, "mode": "replicated", "replicas": -1,
            "command": None, "args": None, "env": None, "labels": None, "network_mode": None, "placement": None,
            "reservations": None, "limits": None, "restart_config": None, "stop_grace_period": None,
            "publish": None, "endpoint_mode": None, "force_update": False}
    base.update(kwargs)
    return base


def mount(**kwargs):
    """A mounts item as AnsibleModule hands it over (every suboption present, type defaulting to bind)."""
    base = {"source": None, "target": None, "type": "bind", "readonly": None, "labels": None, "propagation": None,
            "no_copy": None, "driver_config": None, "tmpfs_size": None, "tmpfs_mode": None}
    base.update(kwargs)
    return base


ALL_OPTIONS = dict(
    mounts=[mount(source="/srv/conf", target="/etc/app", readonly=True, propagation="rprivate"),
            mount(source="data", target="/data", type="volume", no_copy=True, labels={"a": 1},
                  driver_config={"name": "local", "options": {"type": "tmpfs"}}),
            mount(type="volume", target="/anon"),
            mount(type="tmpfs", target="/scratch", tmpfs_size="64M", tmpfs_mode=0o1777)],
    logging={"driver": "json-file", "options": {"max-size": "1m", "max-file": 2}},
    networks=[{"name": "host", "aliases": None, "options": None}],
    hostname="web-{{.Task.Slot}}", hosts={"db.internal": "10.0.0.5"}, user="1000:100", working_dir="/data",
    read_only=True, init=True, tty=False, cap_add=["NET_ADMIN"], cap_drop=["ALL"],
    sysctls={"kernel.msgmax": 65536}, ulimits=["nofile:1024:2048", {"name": "nproc", "soft": 64, "hard": 128}],
    dns=["10.0.0.2"], dns_search=["example.internal"], dns_options=["ndots:2"], stop_signal="SIGUSR1",
    groups=["100"], container_labels={"team": "x"})

ALL_FIELDS = {
    "mounts": [
        {"type": "bind", "source": "/srv/conf", "target": "/etc/app", "readonly": True, "propagation": "rprivate"},
        {"type": "volume", "source": "data", "target": "/data", "readonly": False, "no_copy": True,
         "labels": {"a": "1"}, "driver_config": {"name": "local", "options": {"type": "tmpfs"}}},
        {"type": "volume", "target": "/anon", "readonly": False},
        {"type": "tmpfs", "target": "/scratch", "readonly": False, "tmpfs_size": 64 * 1024 ** 2,
         "tmpfs_mode": 0o1777}],
    "log_driver": {"name": "json-file", "options": {"max-size": "1m", "max-file": "2"}},
    "network_mode": "host",
    "hostname": "web-{{.Task.Slot}}", "hosts": {"db.internal": "10.0.0.5"}, "user": "1000:100",
    "working_dir": "/data", "read_only": True, "init": True, "tty": False, "cap_add": ["NET_ADMIN"],
    "cap_drop": ["ALL"], "sysctls": {"kernel.msgmax": "65536"},
    "ulimits": [{"name": "nofile", "soft": 1024, "hard": 2048}, {"name": "nproc", "soft": 64, "hard": 128}],
    "dns": ["10.0.0.2"], "dns_search": ["example.internal"], "dns_options": ["ndots:2"], "stop_signal": "SIGUSR1",
    "groups": ["100"], "labels": {"team": "x"}}


def test_every_container_option_maps_onto_its_task_field():
    task = svc.build_body(params(**ALL_OPTIONS))["task"]
    assert task == dict(ALL_FIELDS, image=IMAGE)


def test_options_left_out_are_not_sent():
    assert svc.build_body(params())["task"] == {"image": IMAGE}


def test_env_files_in_order_then_env_wins(tmp_path, monkeypatch):
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    first.write_text("# comment\n\nA=1\nB=from-a\nC=x=y\n  D=spaced\nFROM_HOST\nNOT_SET\n")
    second.write_text("B=from-b\nE=\n")
    monkeypatch.setenv("FROM_HOST", "h")
    monkeypatch.delenv("NOT_SET", raising=False)
    body = svc.build_body(params(env_files=[str(first), str(second)], env={"A": "env"}))
    assert body["task"]["env"] == {"A": "env", "B": "from-b", "C": "x=y", "D": "spaced", "FROM_HOST": "h", "E": ""}
    # env_files alone replace the variables too; an empty list with env is env
    assert svc.build_body(params(env_files=[str(second)]))["task"]["env"] == {"B": "from-b", "E": ""}
    assert svc.build_body(params(env_files=[], env=["X=1"]))["task"]["env"] == {"X": "1"}


def test_env_file_errors(tmp_path):
    bad = tmp_path / "bad.env"
    bad.write_text("GOOD=1\nBAD KEY=2\n")
    with pytest.raises(svc.ServiceParamError, match="invalid line 2 of env file"):
        svc.build_body(params(env_files=[str(bad)]))
    with pytest.raises(svc.ServiceParamError, match="cannot read env_files item"):
        svc.build_body(params(env_files=[str(tmp_path / "missing.env")]))


@pytest.mark.parametrize("networks, network_mode, expected", [
    (["host"], None, "host"),
    (["none"], None, "none"),
    ([{"name": "none"}], "none", "none"),
    (["host", "host"], None, "host"),
    ([], None, None),
    (None, "none", "none"),
])
def test_networks_map_onto_network_mode(networks, network_mode, expected):
    task = svc.build_body(params(networks=networks, network_mode=network_mode))["task"]
    assert task.get("network_mode") == expected


@pytest.mark.parametrize("kwargs, message", [
    (dict(networks=["overlay"]), 'network "overlay" is not available: swarmctl runs tasks on the host\'s network '
                                 '("host") or none ("none"); it has no overlay networks'),
    (dict(networks=[{"name": "backend", "aliases": ["db"]}]), 'network "backend" is not available'),
    (dict(networks=["host", "none"]), "a task has one network here: host or none"),
    (dict(networks=["host"], network_mode="none"), "networks [host] and network_mode none disagree"),
    (dict(networks=[{"name": "host", "aliases": ["web"]}]), "network host takes no aliases"),
    (dict(networks=[{"aliases": ["web"]}]), "each item of networks needs a name"),
    (dict(networks=[3]), "networks must be a list of names"),
    (dict(mounts=[mount(target="relative", source="/x")]), "invalid mount target, must be an absolute path: relative"),
    (dict(mounts=[mount(target="/x")]), 'invalid mount config for type "bind": field Source must not be empty'),
    (dict(mounts=[mount(target="/x", source="rel")]), "invalid bind mount source, must be an absolute path: rel"),
    (dict(mounts=[mount(target="/x", type="tmpfs", source="/y")]), "field Source must not be specified"),
    (dict(mounts=[mount(target="/x", type="volume", propagation="shared")]), "field BindOptions must not be"),
    (dict(mounts=[mount(target="/x", source="/y", tmpfs_size="1M")]), "field TmpfsOptions must not be specified"),
    (dict(mounts=[mount(target="/x", type="tmpfs", tmpfs_size="lots")]), "invalid mounts[].tmpfs_size"),
    (dict(mounts=[mount(target="/x", source="/y", driver_config={"name": "local"})]), "field VolumeOptions must"),
    (dict(mounts=[mount(target="/x", type="tmpfs", no_copy=True)]), "field VolumeOptions must not be specified"),
    (dict(mounts=[mount(target="/x", source="/a"), mount(target="/x/", source="/b")]), "duplicate mount point: /x/"),
    (dict(mounts=[mount(target="/m%d" % i, type="tmpfs") for i in range(33)]), "a task has at most 32 mounts"),
    (dict(ulimits=["nofile"]), "expected NAME:SOFT[:HARD]"),
    (dict(ulimits=["nofiles:1:2"]), "invalid ulimit type: nofiles"),
    (dict(ulimits=["nofile:2048:1024"]), "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"),
    (dict(ulimits=["nofile:many"]), "must be whole numbers"),
    (dict(logging={"driver": None, "options": {"max-size": "1m"}}), "logging.options needs logging.driver"),
    (dict(sysctls={"net.ipv4.ip_forward": True}), "quote values"),
    (dict(cap_add=[""]), "cap_add must not hold empty strings"),
])
def test_bad_container_options(kwargs, message):
    with pytest.raises(svc.ServiceParamError) as exc:
        svc.build_body(params(**kwargs))
    assert message in str(exc.value)


def test_net_sysctls_refused_on_the_host_network():
    for options in ({}, {"network_mode": "host"}):
        with pytest.raises(svc.ServiceParamError, match='sysctl "net.core.somaxconn" not allowed in host network'):
            svc.plan(None, params(sysctls={"net.core.somaxconn": "1"}, **options))
    assert svc.plan(None, params(sysctls={"net.core.somaxconn": "1"}, networks=["none"]))["action"] == "create"


def test_ulimit_forms():
    assert svc.parse_ulimit("nofile:1024") == {"name": "nofile", "soft": 1024, "hard": 1024}
    assert svc.parse_ulimit("memlock:-1:-1") == {"name": "memlock", "soft": -1, "hard": -1}
    assert svc.parse_ulimit({"name": "core", "soft": 0}) == {"name": "core", "soft": 0, "hard": 0}


def test_changes_name_the_options():
    old = svc.new_spec(svc.build_body(params()))
    new = svc.new_spec(svc.build_body(params(**ALL_OPTIONS)))
    assert sorted(svc.changed_options(old, new)) == sorted([
        "cap_add", "cap_drop", "container_labels", "dns", "dns_options", "dns_search", "groups", "hostname", "hosts",
        "init", "logging", "mounts", "read_only", "stop_signal", "sysctls", "tty", "ulimits", "user",
        "working_dir"])  # network_mode host is the default: no change
    # empty lists and dicts are the same as left out; null keys of a stored mount are no change
    empty = svc.new_spec(svc.build_body(params(mounts=[], cap_add=[], sysctls={}, container_labels={})))
    assert svc.changed_options(old, empty) == []
    stored = svc.new_spec(svc.build_body(params(**ALL_OPTIONS)))
    stored["task"]["mounts"] = [dict(m, no_copy=m.get("no_copy"), labels=m.get("labels")) for m in stored["task"]["mounts"]]
    assert svc.changed_options(stored, new) == []


# ---- against the daemon's own spec code (needs the server side of issue 13) ----------------------------------
def _daemon_has_container_fields():
    schemas = pytest.importorskip("swarmctl.api.schemas")
    fields = schemas.TaskSpec.model_fields
    missing = sorted(set(ALL_FIELDS) - set(fields))
    if missing:
        pytest.skip("the daemon's TaskSpec has no %s yet (issue 13's server side)" % ", ".join(missing))


def test_container_options_cycle_against_the_daemon(fake_daemon, run_module):
    _daemon_has_container_fields()
    from tests.unit.plugins.modules.test_service import FakeServices, run_cycle
    run_module.fake = fake_daemon
    fake = FakeServices(fake_daemon)
    base = {"swarmctl_host": fake_daemon.host, "name": "web", "image": IMAGE, "command": ["sleep", "3600"]}
    options = dict(ALL_OPTIONS)
    options["mounts"] = [dict((k, v) for k, v in m.items() if v is not None) for m in options["mounts"]]
    created = run_cycle(run_module, dict(base, **options), expect_changes=[])
    stored = created["swarm_service"]["spec"]["task"]
    for key, value in ALL_FIELDS.items():
        if key == "mounts":
            assert svc.normal_mounts(stored[key]) == value, (stored[key], value)
        else:
            assert stored[key] == value, key
    # an update of some of them names exactly those
    run_cycle(run_module, dict(base, user="0", dns=["10.0.0.3"], read_only=False, container_labels={"team": "y"},
                               mounts=[{"type": "tmpfs", "target": "/t"}]),
              expect_changes=["container_labels", "dns", "mounts", "read_only", "user"])
    # the rest kept their values
    assert fake.items and list(fake.items.values())[0]["spec"]["task"]["cap_drop"] == ["ALL"]

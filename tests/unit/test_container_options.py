"""Container options of a task (issue 13): the CLI's Docker flags and their task spec fields, the server's
checks, the worker's container spec and the Docker create config the runtime builds from it (no engine)."""

from __future__ import annotations

import os
import re

import docker
import pydantic
import pytest

from swarmctl.agent.worker import container_spec
from swarmctl.api.schemas import ServiceCreateRequest, TaskSpec
from swarmctl.cli import container_opts as co
from swarmctl.cli import service_cmds as sc
from swarmctl.cli.main import build_parser, main
from swarmctl.cli.units import UnitError
from swarmctl.errors import BadRequest
from swarmctl.manager import services
from swarmctl.runtime.docker_engine import host_options, log_config
from swarmctl.state.records import default_task_spec


def create_body(*flags: str) -> dict:
    args = build_parser().parse_args(["service", "create", "--name", "x", *flags, "busybox"])
    return sc.build_create_body(args)


def update_body(old_task: dict, *flags: str) -> dict:
    args = build_parser().parse_args(["service", "update", *flags, "x"])
    return sc.build_update_body(args, {"spec": {"task": old_task}})


# ==== CLI parsing ================================================================================
@pytest.mark.parametrize("text, expected", [
    ("type=bind,source=/srv,target=/data,readonly",
     {"type": "bind", "source": "/srv", "target": "/data", "readonly": True}),
    ("type=bind,src=/srv,dst=/data,ro=false,bind-propagation=rslave",
     {"type": "bind", "source": "/srv", "target": "/data", "readonly": False, "propagation": "rslave"}),
    ("source=cache,target=/cache,volume-nocopy,volume-label=a=b,volume-driver=local,volume-opt=type=tmpfs",
     {"type": "volume", "source": "cache", "target": "/cache", "readonly": False, "no_copy": True,
      "labels": {"a": "b"}, "driver_config": {"name": "local", "options": {"type": "tmpfs"}}}),
    ("target=/anon", {"type": "volume", "target": "/anon", "readonly": False}),
    ("type=tmpfs,destination=/run/x,tmpfs-size=64m,tmpfs-mode=1770",
     {"type": "tmpfs", "target": "/run/x", "readonly": False, "tmpfs_size": 64 * 1024 ** 2, "tmpfs_mode": 0o1770}),
])
def test_mount_csv(text, expected):
    assert co.parse_mount(text) == expected


@pytest.mark.parametrize("text, message", [
    ("type=bind,target=/a", "field Source must not be empty"),
    ("type=tmpfs,source=x,target=/a", "field Source must not be specified"),
    ("type=bind,source=/a", "target is required"),
    ("type=tmpfs,target=/a,volume-nocopy", "cannot mix 'volume-*' options with mount type 'tmpfs'"),
    ("type=volume,target=/a,tmpfs-size=1m", "cannot mix 'tmpfs-*' options with mount type 'volume'"),
    ("type=nfs,target=/a", "invalid mount type"),
    ("type=bind,source=/a,target=/b,colour=red", "unexpected key 'colour'"),
    ("type=bind,source=/a,target=/b,bogus", "invalid field 'bogus' must be a key=value pair"),
    ("type=tmpfs,target=/a,tmpfs-mode=999", "invalid value for tmpfs-mode"),
    ("type=bind,source=/a,target=/b,ro=maybe", "ParseBool"),
])
def test_mount_csv_refused(text, message):
    with pytest.raises(UnitError, match=re.escape(message)) as info:
        co.parse_mount(text)
    assert str(info.value).startswith(f'invalid argument "{text}" for "--mount" flag: ')


def test_ulimit_sysctl_host_dns_and_caps():
    assert co.parse_ulimit("nofile=1024:2048") == {"name": "nofile", "soft": 1024, "hard": 2048}
    assert co.parse_ulimit("nproc=100") == {"name": "nproc", "soft": 100, "hard": 100}
    for text, message in (("nofile=2048:1024", "soft limit must be less than or equal to hard limit: 2048 > 1024"),
                          ("bogus=1", "invalid ulimit type: bogus"), ("nofile", "invalid ulimit argument"),
                          ("nofile=a:b", "invalid ulimit argument"), ("nofile=1:2:3", "too many")):
        with pytest.raises(UnitError, match=message):
            co.parse_ulimit(text)
    assert co.parse_host("db:10.0.0.2") == ("db", "10.0.0.2")
    assert co.parse_host("db=10.0.0.2") == ("db", "10.0.0.2")
    assert co.parse_host("v6:::1") == ("v6", "::1")
    with pytest.raises(UnitError, match='invalid IP address in add-host: "nope"'):
        co.parse_host("db:nope")
    with pytest.raises(UnitError, match="bad format for add-host"):
        co.parse_host("db")
    with pytest.raises(UnitError, match="is not an ip address"):
        co.parse_dns("dns.example")
    assert [co.capability(c) for c in ("net_admin", "CAP_SYS_TIME", "all")] == ["CAP_NET_ADMIN", "CAP_SYS_TIME", "ALL"]


def test_network_accepts_host_and_none_only():
    assert co.network_mode(["none"]) == "none" and co.network_mode([]) is None
    with pytest.raises(UnitError) as info:
        co.network_mode(["backend"])
    assert str(info.value) == ('network "backend" is not available: swarmctl runs tasks on the host\'s network '
                               '("host") or none ("none"); it has no overlay networks')
    with pytest.raises(UnitError, match="a task has one network here: host or none"):
        co.network_mode(["host", "none"])
    assert create_body("--network", "none")["task"]["network_mode"] == "none"


def test_create_body_has_every_container_option():
    task = create_body(
        "--mount", "type=bind,source=/srv,target=/data,readonly", "--log-driver", "json-file", "--log-opt",
        "max-size=1m", "-u", "1000:1000", "-w", "/tmp", "--read-only", "--init", "-t", "--cap-add", "net_admin",
        "--cap-drop", "MKNOD", "--sysctl", "kernel.shm_rmid_forced=1", "--ulimit", "nofile=1024:2048", "--dns",
        "10.0.0.53", "--dns-search", "example.com", "--dns-option", "ndots:2", "--host", "db:10.0.0.2",
        "--stop-signal", "SIGUSR1", "--group", "audio", "--container-label", "tier=web")["task"]
    assert task["mounts"] == [{"type": "bind", "source": "/srv", "target": "/data", "readonly": True}]
    assert task["log_driver"] == {"name": "json-file", "options": {"max-size": "1m"}}
    assert (task["user"], task["working_dir"], task["read_only"], task["init"], task["tty"]) == \
        ("1000:1000", "/tmp", True, True, True)
    assert (task["cap_add"], task["cap_drop"]) == (["CAP_NET_ADMIN"], ["CAP_MKNOD"])
    assert task["sysctls"] == {"kernel.shm_rmid_forced": "1"}
    assert task["ulimits"] == [{"name": "nofile", "soft": 1024, "hard": 2048}]
    assert (task["dns"], task["dns_search"], task["dns_options"]) == (["10.0.0.53"], ["example.com"], ["ndots:2"])
    assert task["hosts"] == {"db": "10.0.0.2"} and task["stop_signal"] == "SIGUSR1"
    assert task["groups"] == ["audio"] and task["labels"] == {"tier": "web"}
    TaskSpec.model_validate(task)  # the API's schema takes what the CLI builds
    services.build_spec({"name": "x", "task": task})  # and so do the server's checks


def test_bool_flags_take_go_forms_and_never_the_image():
    assert create_body("--read-only")["task"]["read_only"] is True
    assert create_body("--read-only=false", "--init=0", "--tty=true")["task"] | {} == \
        {"image": "busybox", "read_only": False, "init": False, "tty": True}
    args = build_parser().parse_args(["service", "create", "--read-only", "busybox"])
    assert args.image == "busybox"
    assert "read_only" not in create_body()["task"]


def test_env_file(tmp_path, monkeypatch):
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    first.write_text("# comment\n\nA=1\nB=from-a\nFROM_ENV\nUNSET_ONE\n")
    second.write_text("B=from-b\nC=x=y\n")
    monkeypatch.setenv("FROM_ENV", "outside")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    task = create_body("--env-file", str(first), "--env-file", str(second), "-e", "C=cli")["task"]
    assert task["env"] == {"A": "1", "B": "from-b", "FROM_ENV": "outside", "C": "cli"}
    bad = tmp_path / "bad.env"
    bad.write_text("MY VAR=1\n")
    with pytest.raises(UnitError, match="contains whitespaces"):
        create_body("--env-file", str(bad))
    with pytest.raises(UnitError, match="no-such"):
        create_body("--env-file", str(tmp_path / "no-such"))


def test_update_add_and_rm_forms():
    old = create_body("--mount", "type=bind,source=/srv,target=/data", "--mount", "type=tmpfs,target=/t",
                      "--cap-drop", "MKNOD", "--sysctl", "kernel.a=1", "--ulimit", "nofile=10:20", "--dns",
                      "10.0.0.1", "--dns-option", "ndots:1", "--host", "db:10.0.0.2", "--group", "audio",
                      "--container-label", "a=1", "--log-driver", "json-file", "--log-opt", "max-size=1m")["task"]
    task = update_body(old, "--mount-rm", "/t", "--mount-add", "type=volume,source=v,target=/data",
                       "--cap-add", "mknod", "--cap-drop", "NET_RAW", "--sysctl-rm", "kernel.a", "--sysctl-add",
                       "kernel.b=2", "--ulimit-add", "nofile=30:40", "--ulimit-add", "nproc=5", "--dns-rm",
                       "10.0.0.1", "--dns-add", "10.0.0.9", "--dns-option-add", "ndots:3", "--host-rm", "db",
                       "--host-add", "cache:10.0.0.3", "--group-rm", "audio", "--group-add", "video",
                       "--container-label-rm", "a", "--container-label-add", "b=2", "--log-opt", "max-file=2",
                       "--read-only=false", "--stop-signal", "SIGINT")["task"]
    assert task["mounts"] == [{"type": "volume", "source": "v", "target": "/data", "readonly": False}]
    assert (task["cap_add"], task["cap_drop"]) == (["CAP_MKNOD"], ["CAP_NET_RAW"])
    assert task["sysctls"] == {"kernel.b": "2"}
    assert task["ulimits"] == [{"name": "nofile", "soft": 30, "hard": 40}, {"name": "nproc", "soft": 5, "hard": 5}]
    assert task["dns"] == ["10.0.0.9"] and task["dns_options"] == ["ndots:1", "ndots:3"]
    assert task["hosts"] == {"cache": "10.0.0.3"} and task["groups"] == ["video"] and task["labels"] == {"b": "2"}
    assert task["log_driver"] == {"name": "json-file", "options": {"max-size": "1m", "max-file": "2"}}
    assert task["read_only"] is False and task["stop_signal"] == "SIGINT"
    assert update_body({"network_mode": "host"}, "--network-rm", "host", "--network-add", "none")["task"] == \
        {"network_mode": "none"}
    with pytest.raises(UnitError, match="a task has one network here"):
        update_body({"network_mode": "host"}, "--network-add", "none")
    args = build_parser().parse_args(["service", "update", "--dns-add", "10.0.0.9", "--read-only", "x"])
    assert ("spec", "task", "dns") in sc.update_paths(args) and ("spec", "task", "read_only") in sc.update_paths(args)


@pytest.mark.parametrize("argv", [
    ["--mount", "type=bind,target=/a"], ["--network", "backend"], ["--ulimit", "nofile=9:1"],
    ["--host", "db"], ["--dns", "x"], ["--env-file", "/nonexistent/swarmctl-a1.env"],
])
def test_bad_flags_are_one_line_and_exit_non_zero(argv, capsys):
    code = main(["--host", "unix:///nonexistent/swarmctl-a1.sock", "service", "create", *argv, "busybox"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_bool_flag_with_a_bad_value_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--host", "unix:///nonexistent/swarmctl-a1.sock", "service", "create", "--read-only=maybe", "busybox"])
    assert info.value.code == 2 and "--read-only: ignored explicit argument 'maybe'" in capsys.readouterr().err


# ==== the server's checks =========================================================================
def check(**fields):
    return services.build_spec({"name": "x", "task": dict({"image": "busybox"}, **fields)})


@pytest.mark.parametrize("fields, message", [
    ({"mounts": [{"type": "bind", "target": "/a"}]}, 'invalid mount config for type "bind": field Source must not be empty'),
    ({"mounts": [{"type": "bind", "source": "rel", "target": "/a"}]}, "invalid bind mount source, must be an absolute path: rel"),
    ({"mounts": [{"type": "volume", "source": "v", "target": "a"}]}, "invalid mount target, must be an absolute path: a"),
    ({"mounts": [{"type": "tmpfs", "source": "x", "target": "/a"}]}, "field Source must not be specified"),
    ({"mounts": [{"type": "volume", "target": "/a", "propagation": "shared"}]}, "field BindOptions must not be specified"),
    ({"mounts": [{"type": "bind", "source": "/a", "target": "/a", "no_copy": True}]}, "field VolumeOptions must not be specified"),
    ({"mounts": [{"type": "volume", "target": "/a", "tmpfs_size": 1}]}, "field TmpfsOptions must not be specified"),
    ({"mounts": [{"type": "tmpfs", "target": "/a"}, {"type": "tmpfs", "target": "/a/"}]}, "duplicate mount point: /a/"),
    ({"cap_add": ["NET_FLY"]}, 'unknown capability: "CAP_NET_FLY"'),
    ({"sysctls": {"net.ipv4.ip_forward": "1"}}, 'sysctl "net.ipv4.ip_forward" not allowed in host network namespace'),
    ({"ulimits": [{"name": "nofile", "soft": 5, "hard": 1}]}, "soft limit must be less than or equal to hard limit: 5 > 1"),
    ({"ulimits": [{"name": "files", "soft": 1, "hard": 1}]}, "invalid ulimit type: files"),
    ({"dns": ["not-an-ip"]}, "IP address is not correctly formatted: not-an-ip"),
    ({"hosts": {"db": "x.y"}}, 'invalid IP address in add-host: "x.y"'),
    ({"stop_signal": "SIGFOO"}, "Invalid signal: SIGFOO"),
    ({"stop_signal": "99"}, "Invalid signal: 99"),
    ({"read_only": "yes"}, "read only must be true, false or null"),
    ({"log_driver": {"options": {}}}, "log driver must be an object with a name"),
    ({"groups": ["a b"]}, "invalid group"),
])
def test_validate_spec_refuses(fields, message):
    with pytest.raises(BadRequest) as info:
        check(**fields)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_validate_spec_accepts():
    spec = check(mounts=[{"type": "volume", "target": "/anon"}, {"type": "tmpfs", "target": "/t", "tmpfs_mode": 0o700}],
                 sysctls={"net.core.somaxconn": "1024"} and {"kernel.shm_rmid_forced": "1"},
                 stop_signal="SIGRTMIN+3", cap_add=["ALL"], cap_drop=["cap_chown"], hosts={"gw": "host-gateway"})
    assert spec["task"]["stop_signal"] == "SIGRTMIN+3"
    check(network_mode="none", sysctls={"net.core.somaxconn": "1024"})  # its own network namespace
    for signal in ("TERM", "SIGUSR1", "15", "sigint", "SIGRTMAX-2"):
        check(stop_signal=signal)


def test_schema_bounds():
    base = {"name": "x", "task": {"image": "busybox"}}
    ServiceCreateRequest.model_validate({**base, "task": {"image": "b", "mounts": [{"type": "tmpfs", "target": "/t"}]}})
    for task in ({"mounts": [{"type": "tmpfs", "target": f"/t{i}"} for i in range(33)]},
                 {"mounts": [{"type": "nfs", "target": "/t"}]}, {"mounts": [{"target": "/t"}]},
                 {"mounts": [{"type": "bind", "source": "/a", "target": "/t", "propagation": "weird"}]},
                 {"ulimits": [{"name": "nofile", "soft": -2, "hard": 1}]}, {"tty": "maybe"},
                 {"mounts": [{"type": "tmpfs", "target": "/t", "tmpfs_mode": 0o17777}]}, {"log_driver": {"name": ""}}):
        with pytest.raises(pydantic.ValidationError):
            ServiceCreateRequest.model_validate({**base, "task": {"image": "b", **task}})


def test_update_replaces_maps_and_empty_lists_are_no_change():
    service = {"id": "s", "spec": check(sysctls={"kernel.a": "1"}, hosts={"a": "10.0.0.1"}, mounts=[]),
               "spec_version": 1}
    new, changed = services._plan_update(service, {"task": {"sysctls": {"kernel.b": "2"}, "hosts": {}}}, False)
    assert new["task"]["sysctls"] == {"kernel.b": "2"} and new["task"]["hosts"] == {}
    assert changed == ["task.hosts", "task.sysctls"]
    _new, changed = services._plan_update(service, {"task": {"mounts": None, "dns": []}}, False)
    assert changed == []


# ==== worker and runtime ==========================================================================
def task_of(**fields):
    return {"id": "t1", "service_id": "s1", "service_name": "web", "slot": 1,
            "spec": dict(default_task_spec(), image="busybox", **fields)}


def test_container_spec_and_docker_config():
    mounts = [{"type": "bind", "source": "/srv", "target": "/data", "readonly": True, "propagation": "rslave"},
              {"type": "volume", "source": "v", "target": "/v", "no_copy": True, "labels": {"a": "b"},
               "driver_config": {"name": "local", "options": {"o": "p"}}},
              {"type": "tmpfs", "target": "/t", "tmpfs_size": 1 << 20, "tmpfs_mode": 0o1777},
              {"type": "volume", "target": "/anon"}]
    spec = container_spec(task_of(
        mounts=mounts, log_driver={"name": "local", "options": {"max-size": "2m"}}, read_only=True, init=True,
        tty=True, cap_add=["CAP_NET_ADMIN"], cap_drop=["CAP_MKNOD"], sysctls={"kernel.shm_rmid_forced": "1"},
        ulimits=[{"name": "nofile", "soft": 1024, "hard": 2048}], dns=["10.0.0.53", "127.0.0.9"],
        dns_options=["ndots:2"], hosts={"db": "10.0.0.2"}, stop_signal="SIGUSR1", groups=["audio"]),
        "n1", dns=["127.0.0.9"])
    assert spec.dns == ["127.0.0.9", "10.0.0.53"]  # the node's mesh DNS first, then the task's
    assert spec.mounts == [] and spec.volumes == mounts
    assert (spec.log_driver, spec.log_options) == ("local", {"max-size": "2m"})
    assert (spec.read_only, spec.init, spec.tty, spec.stop_signal) == (True, True, True, "SIGUSR1")
    client = docker.APIClient(base_url="unix:///nonexistent/swarmctl-a1.sock", version="1.41")
    host = client.create_host_config(network_mode="host", log_config=log_config(spec), **host_options(spec))
    assert host["Mounts"] == [
        {"Target": "/data", "Source": "/srv", "Type": "bind", "ReadOnly": True, "BindOptions": {"Propagation": "rslave"}},
        {"Target": "/v", "Source": "v", "Type": "volume", "ReadOnly": False, "VolumeOptions": {
            "NoCopy": True, "Labels": {"a": "b"}, "DriverConfig": {"Name": "local", "Options": {"o": "p"}}}},
        {"Target": "/t", "Source": "", "Type": "tmpfs", "ReadOnly": False,
         "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1777}},
        {"Target": "/anon", "Source": None, "Type": "volume", "ReadOnly": False}]
    assert host["LogConfig"] == {"Type": "local", "Config": {"max-size": "2m", "max-file": "3"}}
    assert (host["ReadonlyRootfs"], host["Init"], host["CapAdd"], host["CapDrop"]) == \
        (True, True, ["CAP_NET_ADMIN"], ["CAP_MKNOD"])
    assert host["Sysctls"] == {"kernel.shm_rmid_forced": "1"}
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert (host["DnsOptions"], host["ExtraHosts"], host["GroupAdd"]) == (["ndots:2"], ["db:10.0.0.2"], ["audio"])
    plain = container_spec(task_of(), "n1")
    assert host_options(plain) == {} and plain.volumes == [] and plain.log_driver is None and plain.tty is None
    assert log_config(plain) == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    client.close()


def test_task_spec_size_check_still_counts_the_new_fields():
    hosts = {f"host-{i}.example": "10.0.0.1" for i in range(256)}
    sysctls = {f"kernel.x{i}": "v" * 1000 for i in range(64)}
    with pytest.raises(BadRequest, match="more than the limit"):
        check(hosts=hosts, sysctls=sysctls)


def test_docs_name_every_field():
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "api.md")).read()
    for name in ("mounts", "log_driver", "read_only", "init", "tty", "cap_add", "cap_drop", "sysctls", "ulimits",
                 "dns_options", "hosts", "stop_signal", "groups", "tmpfs_size", "driver_config"):
        assert f"`{name}`" in doc, name

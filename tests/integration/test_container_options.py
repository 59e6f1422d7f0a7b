"""Container options of a service's tasks on the real engine (issue 13): what `service create` and `service update`
set reaches the container's Config and HostConfig, and --env-file reaches its environment."""

import os
import shutil
import tempfile
import uuid

import docker
import pytest

from tests.integration.harness import check, wait_for

IMAGE = "swarmctl-test/busybox:latest"


@pytest.fixture
def engine(docker_engine):
    client = docker.DockerClient(base_url=docker_engine)
    yield client
    client.close()


@pytest.fixture
def scratch():
    """A temp dir for bind sources and env files, removed after."""
    path = tempfile.mkdtemp(prefix="swarmctl-a1-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def inspect(manager, name):
    data = check(manager.cli("service", "inspect", name)).json()
    return data[0] if isinstance(data, list) else data


def service_id(manager, name):
    return inspect(manager, name)["id"]


def running(engine, sid):
    return engine.containers.list(filters={"label": f"swarmctl.service.id={sid}", "status": "running"})


def one_running(engine, sid, not_id=None):
    found = {}

    def ready():
        now = [c for c in running(engine, sid) if c.id != not_id]
        if len(now) == 1 and len(running(engine, sid)) == 1:
            found["c"] = now[0]
            return True
        return False

    wait_for(ready, timeout=60, what="one running container of the service")
    container = found["c"]
    container.reload()
    return container


@pytest.fixture
def volume(docker_engine):
    """A volume name; the volume is removed after (asked before docker_cluster, so after its containers go)."""
    name = f"swarmctl-a1-{uuid.uuid4().hex[:8]}"
    yield name
    client = docker.DockerClient(base_url=docker_engine)
    try:
        client.volumes.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass
    finally:
        client.close()


def test_create_and_update_apply_the_container_options(volume, docker_cluster, engine, scratch):
    managers, _ = docker_cluster.form(1, 0)
    m = managers[0]
    check(m.cli(
        "service", "create", "--name", "a1opts", "--stop-grace-period", "0s",
        "--mount", f"type=bind,source={scratch},target=/host,readonly",
        "--mount", f"type=volume,source={volume},target=/data,volume-label=owner=a1,volume-nocopy",
        "--mount", "type=tmpfs,target=/scratch,tmpfs-size=16m,tmpfs-mode=1777",
        "--log-driver", "json-file", "--log-opt", "max-size=1m",
        "--network", "host", "-u", "1000:1000", "-w", "/tmp", "--read-only", "--init", "-t",
        "--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD", "--sysctl", "kernel.shm_rmid_forced=1",
        "--ulimit", "nofile=1024:2048", "--dns", "10.20.30.40", "--dns-search", "example.com",
        "--dns-option", "ndots:2", "--host", "db:10.0.0.2", "--stop-signal", "SIGUSR1", "--group", "1234",
        "--hostname", "opts-{{.Task.Slot}}", "--container-label", "tier=web",
        IMAGE, "sleep", "3600", timeout=120))
    sid = service_id(m, "a1opts")
    spec = inspect(m, "a1opts")["spec"]["task"]
    assert spec["read_only"] is True and spec["ulimits"] == [{"name": "nofile", "soft": 1024, "hard": 2048}]
    c = one_running(engine, sid)
    host, config = c.attrs["HostConfig"], c.attrs["Config"]
    mounts = {mt["Target"]: mt for mt in host["Mounts"]}
    assert mounts["/host"] == {"Type": "bind", "Source": scratch, "Target": "/host", "ReadOnly": True}
    assert mounts["/data"]["Type"] == "volume" and mounts["/data"]["Source"] == volume
    assert mounts["/data"]["VolumeOptions"]["NoCopy"] is True
    assert mounts["/data"]["VolumeOptions"]["Labels"] == {"owner": "a1"}
    assert mounts["/scratch"]["TmpfsOptions"] == {"SizeBytes": 16 * 1024 ** 2, "Mode": 0o1777}
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "3"}}
    assert host["ReadonlyRootfs"] is True and host["Init"] is True and config["Tty"] is True
    assert host["CapAdd"] == ["CAP_NET_ADMIN"] and host["CapDrop"] == ["CAP_MKNOD"]
    assert host["Sysctls"] == {"kernel.shm_rmid_forced": "1"}
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert host["Dns"][-1] == "10.20.30.40"  # after the node's mesh DNS, when it has one
    assert host["DnsSearch"] == ["example.com"] and host["DnsOptions"] == ["ndots:2"]
    assert host["ExtraHosts"] == ["db:10.0.0.2"] and host["GroupAdd"] == ["1234"]
    assert host["NetworkMode"] == "host"
    assert config["StopSignal"] == "SIGUSR1" and config["User"] == "1000:1000"
    assert config["WorkingDir"] == "/tmp" and config["Hostname"] == "opts-1"
    assert config["Labels"]["tier"] == "web" and config["Labels"]["swarmctl.service.id"] == sid
    # the options are in effect inside: the read-only root, the writable tmpfs, the sysctl, the ulimit
    out = c.exec_run(["sh", "-c", "touch /x 2>/dev/null && echo rw || echo ro; touch /scratch/y && echo tmp; "
                                  "cat /proc/sys/kernel/shm_rmid_forced; ulimit -n; id -G"]).output.decode()
    assert out.split() == ["ro", "tmp", "1", "1024", "1000", "1234"], out
    assert engine.volumes.get(volume).attrs["Labels"] == {"owner": "a1"}

    check(m.cli("service", "update", "--mount-rm", "/scratch", "--mount-add", "type=tmpfs,target=/other",
                "--read-only=false", "--cap-drop", "NET_ADMIN", "--sysctl-add", "kernel.msgmax=65536",
                "--ulimit-add", "nofile=512:1024", "--dns-rm", "10.20.30.40", "--dns-add", "10.20.30.41",
                "--host-add", "cache:10.0.0.3", "--host-rm", "db", "--group-rm", "1234", "--group-add", "4321",
                "--container-label-add", "tier=api", "--stop-signal", "SIGTERM", "--tty=false",
                "--log-opt", "max-file=2", "a1opts", timeout=120))
    new = one_running(engine, sid, not_id=c.id)
    host, config = new.attrs["HostConfig"], new.attrs["Config"]
    assert sorted(mt["Target"] for mt in host["Mounts"]) == ["/data", "/host", "/other"]
    assert host["ReadonlyRootfs"] is False and config["Tty"] is False and host["Init"] is True
    assert not host["CapAdd"] and host["CapDrop"] == ["CAP_MKNOD", "CAP_NET_ADMIN"]
    assert host["Sysctls"] == {"kernel.shm_rmid_forced": "1", "kernel.msgmax": "65536"}
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 512, "Hard": 1024}]
    assert host["Dns"][-1] == "10.20.30.41" and "10.20.30.40" not in host["Dns"]
    assert host["ExtraHosts"] == ["cache:10.0.0.3"] and host["GroupAdd"] == ["4321"]
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}
    assert config["StopSignal"] == "SIGTERM" and config["Labels"]["tier"] == "api"

    bad = m.cli("service", "update", "--network-add", "backend", "a1opts")
    assert bad.code != 0 and "has no overlay networks" in bad.err and "Traceback" not in bad.err
    bad = m.cli("service", "update", "--sysctl-add", "net.ipv4.ip_forward=1", "a1opts")
    assert bad.code != 0 and 'not allowed in host network namespace' in bad.err
    assert len(bad.err.strip().splitlines()) == 1
    check(m.cli("service", "rm", "a1opts"))
    wait_for(lambda: not engine.containers.list(all=True, filters={"label": f"swarmctl.service.id={sid}"}),
             timeout=60, what="the service's containers gone")


def test_env_file_reaches_the_container(docker_cluster, engine, scratch):
    managers, _ = docker_cluster.form(1, 0)
    m = managers[0]
    first, second = os.path.join(scratch, "a.env"), os.path.join(scratch, "b.env")
    with open(first, "w") as f:
        f.write("# settings\nA1_FROM_FILE=one\nA1_BOTH=file\n")
    with open(second, "w") as f:
        f.write("A1_SECOND=two\n")
    check(m.cli("service", "create", "--name", "a1env", "--stop-grace-period", "0s", "--env-file", first,
                "--env-file", second, "-e", "A1_BOTH=flag", IMAGE, "sleep", "3600", timeout=120))
    sid = service_id(m, "a1env")
    env = one_running(engine, sid).attrs["Config"]["Env"]
    assert {"A1_FROM_FILE=one", "A1_SECOND=two", "A1_BOTH=flag"} <= set(env)
    check(m.cli("service", "rm", "a1env"))

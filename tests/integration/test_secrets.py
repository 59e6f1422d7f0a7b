"""Secrets and configs on real daemons and the real engine: the file inside the container, with its mode; the
plaintext nowhere on disk (data dirs, Raft journals and snapshots, logs) and on no node that runs no task using
it; removal refused while in use, with Docker's text; `service update --secret-add` rolls the tasks; a config
mounted at /<name>."""

import json
import os
import secrets as pysecrets
import shutil
import subprocess
import sys
import tempfile

import docker
import pytest

from tests.integration.harness import Cluster, check, wait_for
from swarmctl.manager.keys import place
from swarmctl.node.keyfile import parse
from tests.integration.test_sealed_at_rest import files_of, find_plaintext, sealed_values, unseal_any

IMAGE = "swarmctl-test/busybox:latest"


@pytest.fixture
def swarm(docker_engine, test_image):
    """Daemons on the private engine, in a temporary dir; everything removed after."""
    root = tempfile.mkdtemp(prefix="swarmctl-secrets-")
    c = Cluster(root, heartbeat=0.5, docker_host=docker_engine)
    client = docker.DockerClient(base_url=docker_engine)
    try:
        yield c, client
    finally:
        c.stop_all()
        for container in client.containers.list(all=True, filters={"label": "swarmctl.node.id"}):
            if any(container.labels.get("swarmctl.node.id") == _node_id(d) for d in c.daemons.values()):
                try:
                    container.remove(force=True)
                except docker.errors.APIError:
                    pass
        client.close()
        for d in c.daemons.values():  # a killed daemon leaves its tmpfs mounted
            files = os.path.join(root, f"{d.name}.files")
            if os.path.ismount(files):
                os.system(f"umount -l {files}")
        shutil.rmtree(root, ignore_errors=True)


_IDS: dict = {}


def _node_id(daemon) -> str | None:
    return _IDS.get(daemon.name)


def remember_ids(cluster):
    for d in cluster.daemons.values():
        _IDS[d.name] = d.info().get("node_id")


def exec_in(client, service: str, *cmd: str) -> str:
    [container] = client.containers.list(filters={"label": f"swarmctl.service.name={service}"})
    code, out = container.exec_run(list(cmd))
    assert code == 0, out
    return out.decode()


def mode_owner(ls_line: str) -> tuple[str, str, str]:
    """(permissions, uid, gid) from `ls -ln` (the test image has no stat)."""
    words = ls_line.split()
    return words[0], words[2], words[3]


def running(manager, service: str) -> list[dict]:
    tasks = check(manager.cli("service", "ps", "--format", "json", service)).json()
    return [t for t in tasks if t["desired_state"] == "running" and t["status"]["state"] == "running"]


def test_secret_delivered_only_where_needed_and_never_on_disk(swarm, monkeypatch):
    cluster, client = swarm
    monkeypatch.setenv("SWARMCTL_RAFT_COMPACTION_ENTRIES", "10")  # a Raft snapshot after a few writes
    managers, workers = cluster.form(2, 2)
    m = managers[0]
    remember_ids(cluster)
    plaintext = "pw-" + pysecrets.token_hex(16)
    path = os.path.join(cluster.root, "pw.txt")
    with open(path, "w") as f:
        f.write(plaintext)
    secret_id = check(m.cli("secret", "create", "--label", "env=test", "db_pw", path)).out.strip()
    os.remove(path)
    # Docker's texts: a second one of the same name, and inspect without the data
    again = m.cli("secret", "create", "db_pw", "-")
    assert not again.ok
    [view] = check(m.cli("secret", "inspect", "db_pw")).json()
    assert view["id"] == secret_id and view["spec"] == {"name": "db_pw", "labels": {"env": "test"}}
    assert plaintext not in check(m.cli("secret", "ls", "--format", "json")).out

    # one task, on node4 only
    out = m.cli("service", "create", "--name", "app", "--constraint", "node.hostname==node4",
                "--secret", "source=db_pw,mode=0400", "--stop-grace-period", "0s", IMAGE, "sleep", "3600",
                timeout=120)
    check(out)
    assert exec_in(client, "app", "cat", "/run/secrets/db_pw") == plaintext
    assert mode_owner(exec_in(client, "app", "ls", "-ln", "/run/secrets/db_pw")) == ("-r--------", "0", "0")
    # the write is refused inside the container (read-only bind mount)
    [container] = client.containers.list(filters={"label": "swarmctl.service.name=app"})
    code, _ = container.exec_run(["sh", "-c", "echo x > /run/secrets/db_pw"])
    assert code != 0

    # the node that runs it holds the file on its own tmpfs; the others hold nothing
    node4_files = os.path.join(cluster.root, "node4.files")
    assert os.path.ismount(node4_files)
    with open("/proc/mounts") as f:
        assert any(line.split()[1] == node4_files and line.split()[2] == "tmpfs" for line in f)
    assert find_plaintext(files_of(node4_files), {"secret": plaintext.encode()})
    for d in cluster.daemons.values():
        if d.name != "node4":
            files = os.path.join(cluster.root, f"{d.name}.files")
            assert not os.path.exists(files) or not find_plaintext(files_of(files), {"secret": plaintext.encode()})

    # removal refused while in use, with Docker's text
    refused = m.cli("secret", "rm", "db_pw")
    assert refused.code == 1
    assert "secret 'db_pw' is in use by the following service: app" in refused.err

    # enough writes for a Raft snapshot on both managers, then: nothing on disk holds the plaintext
    for i in range(12):
        check(m.cli("node", "update", "--label-add", f"round={i}", "node3"))
    raft_dirs = [os.path.join(d.data_dir, "raft") for d in managers]
    wait_for(lambda: all(any("snapshot" in n for n in os.listdir(d)) for d in raft_dirs), timeout=30,
             what="a Raft snapshot on every manager")
    disk = ([p for d in cluster.daemons.values() for p in files_of(d.data_dir)]
            + [d.log_path for d in cluster.daemons.values()])
    assert len(disk) > 20
    assert find_plaintext(disk, {"secret": plaintext.encode()}) == []
    # ...while every manager's Raft files do hold it, sealed with the DEK and bound to the secret's place
    with open(os.path.join(m.data_dir, "certs", "node.key"), "rb") as f:
        _, ring = parse(f.read()).open(None)
    for d in managers:
        sealed = sealed_values(files_of(os.path.join(d.data_dir, "raft")))
        assert plaintext in unseal_any(ring, sealed, place("secret", secret_id, ["data"])), d.name

    # the file goes when the task ends
    check(m.cli("service", "rm", "app"))
    wait_for(lambda: not find_plaintext(files_of(node4_files), {"secret": plaintext.encode()}), timeout=20,
             what="the secret's file removed with its task")
    check(m.cli("secret", "rm", "db_pw"))
    assert check(m.cli("secret", "ls", "-q")).out.strip() == ""
    # the agent unmounts its tmpfs when it stops
    workers[1].stop()
    assert not os.path.ismount(node4_files)


def test_secret_add_rolls_tasks_and_config_mounted_at_its_name(swarm):
    cluster, client = swarm
    managers, _ = cluster.form(1, 1)
    m = managers[0]
    remember_ids(cluster)
    check(m.cli("service", "create", "--name", "web", "--replicas", "2", "--stop-grace-period", "0s",
                IMAGE, "sleep", "3600", timeout=120))
    before = {t["id"] for t in running(m, "web")}
    assert len(before) == 2

    path = os.path.join(cluster.root, "app.conf")
    with open(path, "w") as f:
        f.write("listen 8080\n")
    check(m.cli("config", "create", "app.conf", path))
    [config] = check(m.cli("config", "inspect", "app.conf")).json()
    assert config["spec"]["data"] == "bGlzdGVuIDgwODAK"  # a config's data is shown, in base64
    token = pysecrets.token_hex(12)
    env = dict(os.environ, SWARMCTL_HOST=f"unix://{m.socket}")
    subprocess.run([sys.executable, "-m", "swarmctl.cli.main", "secret", "create", "api_key", "-"],  # from stdin
                   input=token.encode(), env=env, check=True, capture_output=True)

    check(m.cli("service", "update", "--secret-add", "source=api_key,target=key,uid=1000,gid=1000,mode=0440",
                "--config-add", "app.conf", "web", timeout=120))
    after = running(m, "web")
    assert len(after) == 2 and not before & {t["id"] for t in after}  # every task replaced by the updater
    spec = check(m.cli("service", "inspect", "web")).json()["spec"]["task"]
    assert [(s["secret_name"], s["target"], s["mode"]) for s in spec["secrets"]] == [("api_key", "key", 0o440)]
    assert spec["configs"][0]["target"] == "/app.conf"
    for container in client.containers.list(filters={"label": "swarmctl.service.name=web"}):
        code, out = container.exec_run(["cat", "/run/secrets/key", "/app.conf"])
        assert code == 0 and out.decode() == token + "listen 8080\n"
        code, out = container.exec_run(["ls", "-ln", "/run/secrets/key"])
        assert mode_owner(out.decode()) == ("-r--r-----", "1000", "1000")

    refused = m.cli("config", "rm", "app.conf")
    assert "config 'app.conf' is in use by the following service: web" in refused.err
    unknown = m.cli("service", "update", "--secret-add", "nope", "web")
    assert unknown.code == 1 and "secret not found: nope" in unknown.err and "Traceback" not in unknown.err
    # --secret-rm rolls again, and then the secret can go
    check(m.cli("service", "update", "--secret-rm", "api_key", "--config-rm", "app.conf", "web", timeout=120))
    check(m.cli("secret", "rm", "api_key"))
    check(m.cli("config", "rm", "app.conf"))


def test_bad_input_and_docker_texts(swarm):
    """One line and a non-zero exit for every bad input; the API keeps the data immutable and says whether a
    file matches without giving the data out."""
    import base64

    from swarmctl.cli.client import Client, DaemonError
    cluster, _client = swarm
    (m,), _ = cluster.form(1, 0)
    big = os.path.join(cluster.root, "big")
    with open(big, "wb") as f:
        f.write(b"x" * (500 * 1024))
    small = os.path.join(cluster.root, "small")
    with open(small, "w") as f:
        f.write("hunter2")
    cases = [(("secret", "create", "s", big), "secret data must be larger than 0 and less than 512000 bytes"),
             (("secret", "create", "bad-", small), "invalid name, only 64 [a-zA-Z0-9-_.] characters allowed"),
             (("secret", "create", "s", "/nonexistent"), "open /nonexistent: No such file or directory"),
             (("secret", "inspect", "ghost"), "secret ghost not found"),
             (("config", "rm", "ghost"), "config ghost not found"),
             (("secret", "create", "--label", "novalue", "s", small), "invalid --label 'novalue'"),
             (("service", "create", "--secret", "source=ghost", IMAGE), "secret not found: ghost"),
             (("service", "create", "--config", "source=c,mode=0999", IMAGE), "invalid mode specified")]
    for args, text in cases:
        result = m.cli(*args)
        assert result.code == 1 and text in result.err and result.err.count("\n") == 1, (args, result)
    check(m.cli("secret", "create", "s", small))
    dup = m.cli("secret", "create", "s", small)
    assert dup.code == 1 and dup.err == "Error response from daemon: secret s already exists\n"
    api = Client(f"unix://{m.socket}")
    try:
        with pytest.raises(DaemonError, match="only updates to Labels are allowed"):
            api.post("/v1/secrets/s/update", {"labels": {}, "data": base64.b64encode(b"other").decode()})
        assert api.post("/v1/secrets/s/update", {"labels": {"a": "b"}})["spec"] == {"name": "s", "labels": {"a": "b"}}
        assert api.post("/v1/secrets/s/matches", {"data": base64.b64encode(b"hunter2").decode()}) == {"matches": True}
        assert api.post("/v1/secrets/s/matches", {"data": base64.b64encode(b"hunter3").decode()}) == {"matches": False}
        assert "hunter2" not in json.dumps(api.get("/v1/secrets")) + json.dumps(api.get("/v1/secrets/s"))
    finally:
        api.close()
    assert [r["spec"]["name"] for r in check(m.cli("secret", "ls", "--format", "json")).json()] == ["s"]
    assert check(m.cli("secret", "ls")).out.split("\n")[0].split() == ["ID", "NAME", "DRIVER", "CREATED", "UPDATED"]

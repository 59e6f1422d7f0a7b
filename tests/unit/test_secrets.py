"""manager/secrets.py on a real one-member Raft store: sealing, Docker's names, sizes and texts, immutability,
references from services, removal while in use, delivery to the task's node only; the CLI's parsing
(cli/secret_cmds.py, service --secret); the agent's tmpfs files (agent/taskfiles.py)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import time

import pytest

from swarmctl.agent.taskfiles import TaskFiles, _is_tmpfs, container_path
from swarmctl.cli import secret_cmds, service_cmds
from swarmctl.cli.client import CLIError
from swarmctl.cli.main import build_parser
from swarmctl.cli.units import UnitError
from swarmctl.errors import BadRequest, Conflict, Forbidden, NotFound
from swarmctl.manager import secrets, services
from swarmctl.manager.keys import ClusterKeys
from swarmctl.security import seal
from swarmctl.security.seal import Keyring, SealError
from tests.unit.test_cluster_keys import Holder
from tests.unit.test_versions import store  # noqa: F401  (the fixture)

PLAIN = b"correct horse battery staple"


def run(coro):
    return asyncio.run(coro)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def keys():
    return ClusterKeys(Holder(Keyring.generate()))


def test_secret_data_is_sealed_bound_to_its_place_and_never_shown(store, keys):  # noqa: F811
    made = run(secrets.create(store, keys, "secret", {"name": "db_pw", "labels": {"a": "1"}, "data": b64(PLAIN)}))
    record = store.get("secret", made["id"])
    assert seal.is_sealed(record["data"]) and "spec" in record and "data" not in record["spec"]
    stored = repr(store.list("secret"))
    assert PLAIN.decode() not in stored and b64(PLAIN) not in stored
    assert keys.unseal("secret", made["id"], secrets.DATA, record["data"]) == PLAIN
    with pytest.raises(SealError):  # moved to another record, it does not open
        keys.ring.unseal(record["data"], "secret/other/data")
    view = secrets.view(record)
    assert view["spec"] == {"name": "db_pw", "labels": {"a": "1"}} and "data" not in repr(view)
    assert run(_matches(store, keys, "db_pw", PLAIN)) is True
    assert run(_matches(store, keys, "db_pw", b"nope")) is False


async def _matches(store, keys, ref, data):  # noqa: F811
    return secrets.matches(store, keys, "secret", ref, b64(data))["matches"]


def test_config_view_carries_its_data(store, keys):  # noqa: F811
    made = run(secrets.create(store, keys, "config", {"name": "app.conf", "data": b64(b"listen 80\n")}))
    view = secrets.view(store.get("config", made["id"]))
    assert view["spec"]["data"] == b64(b"listen 80\n")
    assert secrets.resolve(store, "config", made["id"][:6])["id"] == made["id"]


def test_docker_names_sizes_and_conflicts(store, keys):  # noqa: F811
    def create(kind, name, data):
        return run(secrets.create(store, keys, kind, {"name": name, "data": b64(data)}))
    create("secret", "ok", b"x" * (500 * 1024 - 1))
    with pytest.raises(BadRequest, match=r"^secret data must be larger than 0 and less than 512000 bytes$"):
        create("secret", "big", b"x" * (500 * 1024))
    with pytest.raises(BadRequest, match="larger than 0"):
        create("secret", "empty", b"")
    create("config", "okc", b"x" * (1000 * 1024 - 1))
    with pytest.raises(BadRequest, match=r"^config data must be larger than 0 and less than 1024000 bytes$"):
        create("config", "bigc", b"x" * (1000 * 1024))
    for bad in ("-x", "x-", "a b", "x" * 65, "é"):
        with pytest.raises(BadRequest, match=r"invalid name, only 64 \[a-zA-Z0-9-_.\] characters allowed"):
            create("secret", bad, b"1")
    with pytest.raises(Conflict, match="^secret ok already exists$"):
        create("secret", "ok", b"1")
    create("config", "ok", b"1")  # the kinds have names of their own
    with pytest.raises(BadRequest, match="base64"):
        run(secrets.create(store, keys, "secret", {"name": "b", "data": "%%%"}))
    with pytest.raises(NotFound, match="^secret nope not found$"):
        secrets.resolve(store, "secret", "nope")


def test_only_labels_change(store, keys):  # noqa: F811
    run(secrets.create(store, keys, "secret", {"name": "s", "data": b64(PLAIN)}))
    view = run(secrets.update(store, keys, "secret", "s", {"labels": {"k": "v"}}))
    assert view["spec"]["labels"] == {"k": "v"}
    same = run(secrets.update(store, keys, "secret", "s", {"labels": {"k": "v"}, "data": b64(PLAIN), "name": "s"}))
    assert same["version"] == view["version"]  # nothing changed, nothing written
    for change in ({"data": b64(b"other")}, {"name": "t"}):
        with pytest.raises(BadRequest, match="^only updates to Labels are allowed$"):
            run(secrets.update(store, keys, "secret", "s", dict(change, labels={})))


def _service(name, **task):
    return {"name": name, "mode": "replicated", "replicas": 1, "task": dict({"image": "busybox"}, **task)}


def test_services_name_secrets_get_their_ids_and_pin_them(store, keys):  # noqa: F811
    sid = run(secrets.create(store, keys, "secret", {"name": "pw", "data": b64(PLAIN)}))["id"]
    run(secrets.create(store, keys, "config", {"name": "conf", "data": b64(b"c")}))
    with pytest.raises(BadRequest, match="^secret not found: nope$"):
        run(services.create(store, _service("x", secrets=[{"secret_name": "nope"}])))
    web = run(services.create(store, _service("web", secrets=[{"secret_name": "pw", "mode": 0o400}],
                                              configs=[{"config_name": "conf"}])))
    [ref] = web["spec"]["task"]["secrets"]
    assert ref == {"secret_id": sid, "secret_name": "pw", "target": "pw", "uid": "0", "gid": "0", "mode": 0o400}
    assert web["spec"]["task"]["configs"][0]["target"] == "/conf"
    run(services.create(store, _service("api", secrets=[{"secret_name": "pw", "target": "/etc/pw"}])))
    with pytest.raises(BadRequest, match="^secret 'pw' is in use by the following services: api, web$"):
        run(secrets.remove(store, "secret", "pw"))
    run(services.remove(store, "api"))
    with pytest.raises(BadRequest, match="^secret 'pw' is in use by the following service: web$"):
        run(secrets.remove(store, "secret", "pw"))
    # removing the reference is a task-spec change (a rolling update), and then the secret can go
    answer = run(services.update(store, "web", {"task": {"secrets": []}}))
    assert "task.secrets" in answer["changes"] and "secrets" not in answer["service"]["spec"]["task"]
    assert answer["service"]["spec_version"] == web["spec_version"] + 1
    run(secrets.remove(store, "secret", "pw"))
    assert store.list("secret") == []


def test_reference_checks():
    task = {"secrets": [{"secret_name": "a"}, {"secret_name": "b", "target": "/etc/b", "uid": "33", "mode": 0o440}],
            "configs": [{"config_name": "c", "target": "conf/c"}]}
    secrets.check_refs(task)
    assert [(r["target"], r["uid"], r["mode"]) for r in task["secrets"]] == [("a", "0", 0o444), ("/etc/b", "33", 0o440)]
    assert container_path("secret", "a") == "/run/secrets/a"
    assert container_path("secret", "/etc/b") == "/etc/b"
    assert container_path("config", "c") == "/c" and container_path("config", "conf/c") == "/conf/c"
    for refs, text in (([{"secret_name": "a"}, {"secret_name": "b", "target": "a"}], "duplicate secret target"),
                       ([{"secret_name": "a", "target": "../x"}], "without '..'"),
                       ([{"secret_name": "a", "uid": "root"}], "numeric id"),
                       ([{"secret_name": "a", "mode": 0o10000}], "invalid secret mode"),
                       ([{}], "secret_name or secret_id")):
        with pytest.raises(BadRequest, match=text):
            secrets.check_refs({"secrets": refs})
    empty = {"secrets": [], "configs": None}
    secrets.check_refs(empty)
    assert empty == {}  # a service without files keeps the spec it had


def test_task_files_only_for_the_task_of_the_asking_node(store, keys):  # noqa: F811
    run(secrets.create(store, keys, "secret", {"name": "pw", "data": b64(PLAIN)}))
    web = run(services.create(store, _service("web", secrets=[{"secret_name": "pw"}])))
    task = {"id": "t1", "service_id": web["id"], "service_name": "web", "slot": 1, "node_id": "n1",
            "spec": web["spec"]["task"], "spec_version": 1, "desired_state": "running",
            "status": {"state": "assigned", "message": "", "err": "", "timestamp": time.time()}}
    run(store.write([{"op": "create", "kind": "task", "id": "t1", "record": task}]))
    files = secrets.task_files(store, keys, "n1", "t1")
    assert base64.b64decode(files["secrets"][0]["data"]) == PLAIN and files["configs"] == []
    with pytest.raises(Forbidden):
        secrets.task_files(store, keys, "n2", "t1")
    run(store.write([{"op": "patch", "kind": "task", "id": "t1", "set": [(["desired_state"], "shutdown")]}]))
    with pytest.raises(Forbidden):
        secrets.task_files(store, keys, "n1", "t1")


# ---- the CLI -------------------------------------------------------------------------------------------
def test_secret_and_config_commands_parse():
    parser = build_parser()
    args = parser.parse_args(["secret", "create", "-l", "a=b", "--label", "c=", "pw", "-"])
    assert (args.kind, args.name, args.file, args.label) == ("secret", "pw", "-", ["a=b", "c="])
    assert parser.parse_args(["config", "ls", "-q"]).kind == "config"
    assert parser.parse_args(["secret", "rm", "a", "b"]).refs == ["a", "b"]
    body = secret_cmds.create_body("secret", "pw", ["a=b"], b"xyz")
    assert body == {"name": "pw", "labels": {"a": "b"}, "data": b64(b"xyz")}
    assert secret_cmds.read_data("secret", "-", io.BytesIO(b"hello")) == b"hello"
    with pytest.raises(CLIError, match="^secret data must be larger than 0 and less than 512000 bytes$"):
        secret_cmds.read_data("secret", "-", io.BytesIO(b"x" * 512000))
    with pytest.raises(CLIError, match="^open /nonexistent/x: No such file or directory$"):
        secret_cmds.read_data("config", "/nonexistent/x")
    record = {"id": "abc", "spec": {"name": "pw"}, "created_at": 100.0, "updated_at": 160.0}
    assert secret_cmds.ls_rows("secret", [record], 220.0) == [["abc", "pw", "", "2 minutes ago", "About a minute ago"]]
    assert secret_cmds.ls_rows("config", [record], 220.0) == [["abc", "pw", "2 minutes ago", "About a minute ago"]]


def test_service_secret_flags():
    assert service_cmds.file_ref("secret", "pw", "--secret") == {"secret_name": "pw"}
    assert service_cmds.file_ref("secret", "source=pw,target=t,uid=1,gid=2,mode=0400", "--secret") == {
        "secret_name": "pw", "target": "t", "uid": "1", "gid": "2", "mode": 0o400}
    assert service_cmds.file_ref("config", "src=c,mode=292", "--config")["mode"] == 292
    for text, why in (("target=t", "source is required"), ("source=a,x=1", "invalid field in secret request: x"),
                      ("source=a,mode=9z", "invalid mode specified"), ("source=a,junk", "must be a key=value pair")):
        with pytest.raises(UnitError, match=why):
            service_cmds.file_ref("secret", text, "--secret")
    old = [{"secret_id": "1", "secret_name": "a", "target": "a"}, {"secret_id": "2", "secret_name": "b", "target": "b"}]
    assert [r["secret_name"] for r in service_cmds.updated_refs("secret", old, ["c", "source=a,target=z"], ["b"])] == \
        ["c", "a"]
    parser = build_parser()
    args = parser.parse_args(["service", "create", "--secret", "pw", "--config", "source=c,target=/etc/c", "img"])
    body = service_cmds.build_create_body(args, "web")
    assert body["task"]["secrets"] == [{"secret_name": "pw"}]
    assert body["task"]["configs"] == [{"config_name": "c", "target": "/etc/c"}]
    args = parser.parse_args(["service", "update", "--secret-add", "pw", "--config-rm", "c", "web"])
    body = service_cmds.build_update_body(args, {"spec": {"task": {"configs": [{"config_name": "c"}]}}})
    assert body["task"] == {"secrets": [{"secret_name": "pw"}], "configs": []}
    assert ("spec", "task", "secrets") in service_cmds.update_paths(args)


def test_bad_secret_input_is_one_line_and_nonzero(capsys):
    from swarmctl.cli.main import main
    assert main(["secret", "create", "x", "/nonexistent/file"]) == 1
    assert capsys.readouterr().err == "Error: open /nonexistent/file: No such file or directory\n"
    assert main(["service", "create", "--secret", "source=", "img"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


# ---- the agent's files ---------------------------------------------------------------------------------
@pytest.mark.skipif(not _is_tmpfs("/dev/shm"), reason="no tmpfs at /dev/shm")
def test_task_files_on_a_tmpfs_with_owner_and_mode(tmp_path):
    files = TaskFiles(None, fallback_name=f"swarmctl-unit-{os.getpid()}")  # no mount: the /dev/shm fallback
    try:
        mounts = files.write("t1", [{"name": "secret-0", "data": PLAIN, "uid": "0", "gid": "0", "mode": 0o400,
                                     "path": "/run/secrets/pw"}])
        [(host, target)] = mounts
        assert target == "/run/secrets/pw" and _is_tmpfs(host)
        assert open(host, "rb").read() == PLAIN and oct(os.stat(host).st_mode & 0o7777) == oct(0o400)
        assert files.tasks() == ["t1"]
        files.remove("t1")
        assert not os.path.exists(host) and files.tasks() == []
        files.write("t2", [{"name": "config-0", "data": b"c", "uid": "0", "gid": "0", "mode": 0o444, "path": "/c"}])
    finally:
        files.close()
    assert not os.path.exists(files.fallback)


def test_never_on_disk(tmp_path):
    """A place that is not a tmpfs is refused (the task fails) rather than used."""
    from swarmctl.agent.taskfiles import FilesUnavailable
    files = TaskFiles(None)
    files.fallback = str(tmp_path / "files")  # tmp_path is on disk here
    if _is_tmpfs(str(tmp_path)):
        pytest.skip("tmp_path is on a tmpfs")
    with pytest.raises(FilesUnavailable, match="not on a tmpfs"):
        files.write("t1", [])


@pytest.mark.skipif(not _is_tmpfs("/dev/shm"), reason="no tmpfs at /dev/shm")
def test_worker_fetches_a_tasks_files_mounts_them_and_removes_them_when_it_ends():
    """The worker on the simulated runtime: it asks the session for the task's files, writes them, passes the
    read-only mounts to the runtime, and removes them once the task is shut down; stopping removes the rest."""
    from swarmctl.agent.worker import Worker
    from swarmctl.runtime.simulated import SimulatedRuntime
    from tests.unit.test_simulated_runtime import FakeManager, _task, _until

    task = _task("t1")
    task["spec"]["secrets"] = [{"secret_id": "s1", "secret_name": "pw", "target": "pw", "uid": "0", "gid": "0",
                                "mode": 0o400}]
    task["spec"]["configs"] = [{"config_id": "c1", "config_name": "app", "target": "/app", "uid": "0", "gid": "0",
                                "mode": 0o444}]
    asked = []

    class Manager(FakeManager):
        async def call(self, method, path, body=None, timeout=10):
            if path == "/v1/session/files":
                asked.append(body["task_id"])
                return {"secrets": [{"id": "s1", "data": b64(PLAIN)}], "configs": [{"id": "c1", "data": b64(b"c")}]}
            return await super().call(method, path, body, timeout)

    manager = Manager([task])
    rt = SimulatedRuntime(start_latency=0)
    files = TaskFiles(None, fallback_name=f"swarmctl-unit-worker-{os.getpid()}")

    async def scenario():
        worker = Worker("n1", lambda: rt, manager.call, poll_wait=0.05, files=files)
        worker.start()
        try:
            assert await _until(lambda: manager.states()["t1"] == "running")
            [container] = rt.list({})
            mounts = dict((target, host) for host, target in rt._containers[container.id].spec.mounts)
            assert set(mounts) == {"/run/secrets/pw", "/app"} and asked == ["t1"]
            assert open(mounts["/run/secrets/pw"], "rb").read() == PLAIN
            assert os.stat(mounts["/run/secrets/pw"]).st_mode & 0o777 == 0o400
            manager.tasks["t1"]["desired_state"] = "shutdown"
            manager.version += 1
            assert await _until(lambda: manager.states()["t1"] == "shutdown")
            assert await _until(lambda: files.tasks() == [])
        finally:
            await worker.stop()
    asyncio.run(scenario())
    assert not os.path.exists(files.fallback)

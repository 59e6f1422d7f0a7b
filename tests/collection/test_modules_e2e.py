"""End to end: the swarmctl.cluster modules run by real `ansible` / `ansible-playbook` against real daemons.

Two daemons on 127.0.0.81 (the manager, with the private Docker engine) and 127.0.0.82 (a worker), each with
its own data dir and socket under a temp dir. Ansible finds the collection through a temporary
ansible_collections/swarmctl/cluster symlink to this checkout, and gets its own ansible.cfg.

For each module: check mode predicts a change and makes none, the real run changes, a second run and a
check-mode rerun change nothing, --diff shows before/after, bad parameters fail with a clear message,
and a join token given as a parameter never appears in the output (not even at -vvv).

The tests run in file order and share one module-scoped swarm. Skipped without ansible-core unless
SWARMCTL_REQUIRE_ANSIBLE is set; skipped without the Docker engine unless SWARMCTL_REQUIRE_DOCKER is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from swarmctl.cli.client import Client
from tests.integration.harness import Daemon, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANSIBLE = shutil.which("ansible")
ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook")
TOKEN_RE = re.compile(r"SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}")

if not (ANSIBLE and ANSIBLE_PLAYBOOK):
    if os.environ.get("SWARMCTL_REQUIRE_ANSIBLE"):
        pytest.fail("ansible-core is required (SWARMCTL_REQUIRE_ANSIBLE is set) but `ansible` is not installed; "
                    "pip install 'ansible-core>=2.19,<2.20'", pytrace=False)
    pytest.skip("ansible-core is not installed (pip install 'ansible-core>=2.19,<2.20')", allow_module_level=True)

pytestmark = pytest.mark.integration

MANAGER_INDEX, WORKER_INDEX = 71, 72  # harness addresses 127.0.0.(10 + index): 127.0.0.81 and .82

# ansible-core 2.19 has no JSON stdout callback of its own (it moved to ansible.posix): this one prints each
# task result as one JSON list at the end, as the module returned it (no_log masking included).
JSON_CALLBACK = """
import json

from ansible.parsing.ajson import AnsibleJSONEncoder
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "e2e_json"

    def __init__(self):
        super().__init__()
        self.results = []

    def _add(self, result, status):
        self.results.append(dict(result._result, _status=status))

    def v2_runner_on_ok(self, result):
        self._add(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._add(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._add(result, "unreachable")

    def v2_runner_on_skipped(self, result):
        self._add(result, "skipped")

    def v2_playbook_on_stats(self, stats):
        self._display.display(json.dumps(self.results, cls=AnsibleJSONEncoder))
"""


class Env:
    """The daemons, the Ansible setup, and a runner for modules and playbooks."""

    def __init__(self, root: str, docker_host: str, image: str, indexes: tuple = (MANAGER_INDEX, WORKER_INDEX)):
        self.root = root
        self.image = image
        self.manager = Daemon(indexes[0], root, heartbeat=0.5, extra_args=["--docker-host", docker_host])
        self.worker = Daemon(indexes[1], root, heartbeat=0.5)
        collections = os.path.join(root, "collections")
        os.makedirs(os.path.join(collections, "ansible_collections", "swarmctl"))
        os.symlink(REPO, os.path.join(collections, "ansible_collections", "swarmctl", "cluster"))
        callbacks = os.path.join(root, "callback_plugins")
        os.makedirs(callbacks)
        with open(os.path.join(callbacks, "e2e_json.py"), "w") as f:
            f.write(JSON_CALLBACK)
        self.cfg = os.path.join(root, "ansible.cfg")
        with open(self.cfg, "w") as f:
            f.write("[defaults]\n"
                    f"collections_path = {collections}\n"
                    f"callback_plugins = {callbacks}\n"
                    "host_key_checking = False\n"
                    "retry_files_enabled = False\n"
                    f"local_tmp = {os.path.join(root, 'ansible-tmp')}\n"
                    f"remote_tmp = {os.path.join(root, 'ansible-remote-tmp')}\n")
        self.env = dict(os.environ, ANSIBLE_CONFIG=self.cfg, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                        ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_LOCALHOST_WARNING="0",
                        ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
        self.env.pop("SWARMCTL_HOST", None)
        self.node_ids: set = set()  # nodes whose containers are removed at the end

    def host(self, daemon: Daemon) -> str:
        return f"unix://{daemon.socket}"

    def api(self, daemon: Daemon | None = None) -> Client:
        """The daemon's API in-process (the CLI's client), to observe state without the modules."""
        return Client(self.host(daemon or self.manager), timeout=30)

    def tokens(self) -> dict:
        api = self.api()
        return {"Worker": api.get("/v1/swarm/join-token/worker")["token"],
                "Manager": api.get("/v1/swarm/join-token/manager")["token"]}

    def ansible(self, module: str, args: dict, daemon: Daemon | None = None, check: bool = False,
                diff: bool = False, verbose: str = "", raw: bool = False):
        """Run one module on localhost; returns the module's result dict (or the plain output with raw=True)."""
        args = dict(args, swarmctl_host=self.host(daemon or self.manager))
        cmd = [ANSIBLE, "localhost", "-i", "localhost,", "-c", "local", "-m", f"swarmctl.cluster.{module}",
               "-a", json.dumps(args)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if verbose:
            cmd.append(verbose)
        env = dict(self.env)
        if not raw:
            env.update(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="e2e_json")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=self.root, timeout=180,
                              stdin=subprocess.DEVNULL, check=False)
        if raw:
            return proc.stdout + proc.stderr
        try:
            out = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f"no JSON from ansible (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        assert len(out) == 1, out
        result = out[0]
        result["_rc"] = proc.returncode
        return result

    def batch(self, calls: list, check: bool = False) -> list:
        """Run several (module, args[, daemon[, task keywords]]) calls as the tasks of one playbook
        (ignore_errors), much faster than one `ansible` process each; returns their results in order."""
        tasks = []
        for call in calls:
            module, args = call[0], call[1]
            daemon = (call[2] if len(call) > 2 else None) or self.manager
            keywords = call[3] if len(call) > 3 else {}
            tasks.append(dict({"name": f"{module} {len(tasks)}", "ignore_errors": True,
                               f"swarmctl.cluster.{module}": dict(args, swarmctl_host=self.host(daemon))},
                              **keywords))
        path = os.path.join(self.root, "batch.yml")
        with open(path, "w") as f:
            json.dump([{"name": "batch", "hosts": "localhost", "gather_facts": False, "tasks": tasks}], f)
        cmd = [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", path] + (["--check"] if check else [])
        env = dict(self.env, ANSIBLE_STDOUT_CALLBACK="e2e_json")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=self.root, timeout=300,
                              stdin=subprocess.DEVNULL, check=False)
        try:
            results = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f"no JSON from ansible-playbook (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        assert len(results) == len(calls), results
        for result in results:
            result["_rc"] = 0 if result["_status"] == "ok" else 2
        return results

    def playbook(self, text: str, *extra: str) -> subprocess.CompletedProcess:
        path = os.path.join(self.root, "play.yml")
        with open(path, "w") as f:
            f.write(text)
        return subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", path, *extra],
                              capture_output=True, text=True, env=self.env, cwd=self.root, timeout=300,
                              stdin=subprocess.DEVNULL, check=False)

    def cycle(self, module: str, args: dict, daemon: Daemon | None = None, observe=None) -> dict:
        """check mode (predicts, changes nothing) -> real run (changes) -> rerun and check rerun (no change).

        observe(): a snapshot of the daemon state the module is about, compared before and after check mode."""
        before = observe() if observe else None
        predicted = self.ansible(module, args, daemon, check=True, diff=True)
        assert ok(predicted) and predicted["changed"], predicted
        assert "before" in predicted["diff"] and "after" in predicted["diff"], predicted
        if observe:
            assert observe() == before, "check mode changed something"
        # the real run and both reruns as the tasks of one playbook (task-level check_mode and diff)
        real, *again = self.batch([(module, args, daemon, {"diff": True}),
                                   (module, args, daemon, {"diff": True}),
                                   (module, args, daemon, {"diff": True, "check_mode": True})])
        assert ok(real) and real["changed"], real
        assert real["diff"]["before"] == predicted["diff"]["before"], (predicted["diff"], real["diff"])
        if module in ("node", "service"):  # check mode predicted exactly what the daemon stored
            assert real["diff"]["after"] == predicted["diff"]["after"], (predicted["diff"], real["diff"])
        for result in again:
            assert ok(result) and not result["changed"], result
            assert not result.get("diff"), result
        return real


def ok(result: dict) -> bool:
    return result["_rc"] == 0 and result["_status"] == "ok"


def failed_with(result: dict, text: str) -> bool:
    """The module failed (and ansible with it) with text in its message."""
    if result["_rc"] != 0 and result["_status"] == "failed" and text in result.get("msg", ""):
        return True
    print("unexpected result:", json.dumps(result, indent=1))
    return False


@pytest.fixture(scope="module")
def env(docker_engine):
    from tests import docker_engine as engine
    root = tempfile.mkdtemp(prefix="swcol-", dir="/tmp")  # short: unix socket paths are limited
    e = Env(root, docker_engine, engine.TEST_IMAGE)
    try:
        e.manager.start()
        e.worker.start()
        yield e
    finally:
        for d in (e.worker, e.manager):
            d.stop()
        _remove_containers(docker_engine, e.node_ids)
        if os.environ.get("SWARMCTL_KEEP_LOGS") is None:
            shutil.rmtree(root, ignore_errors=True)


def _remove_containers(docker_host: str, node_ids: set) -> None:
    """Remove the containers of this test's nodes only (other tests may share the engine)."""
    import docker
    client = docker.DockerClient(base_url=docker_host)
    try:
        for node_id in node_ids:
            for container in client.containers.list(all=True, filters={"label": f"swarmctl.node.id={node_id}"}):
                try:
                    container.remove(force=True)
                except docker.errors.APIError:
                    pass
    finally:
        client.close()


# ---- info outside a swarm, then swarm init ------------------------------------------------------
def test_info_outside_a_swarm(env):
    result = env.ansible("info", {"nodes": True, "services": True})
    assert ok(result) and not result["changed"]
    assert result["swarm_active"] is False and result["swarm_manager"] is False
    assert result["swarm_facts"] == {} and "nodes" not in result


def test_swarm_init(env):
    args = {"state": "present", "advertise_addr": env.manager.ip}
    real = env.cycle("swarm", args, observe=lambda: env.manager.info()["local_node_state"])
    assert real["actions"] == ["Swarm cluster created"]
    assert real["diff"]["before"]["local_node_state"] == "inactive"
    assert real["diff"]["after"]["local_node_state"] == "active"
    assert real["diff"]["after"]["role"] == "manager"
    facts = real["swarm_facts"]
    assert TOKEN_RE.fullmatch(facts["JoinTokens"]["Worker"]) and TOKEN_RE.fullmatch(facts["JoinTokens"]["Manager"])
    assert facts["manager_addrs"] == [env.manager.addr]
    assert real["node_id"] == env.manager.info()["node_id"]
    env.node_ids.add(real["node_id"])


def test_swarm_rotate_worker_token(env):
    old = env.tokens()
    args = {"state": "present", "rotate_worker_token": True}
    predicted = env.ansible("swarm", args, check=True, diff=True)
    assert ok(predicted) and predicted["changed"] and predicted["actions"] == ["Worker join token rotated"]
    assert predicted["diff"]["after"]["join_tokens"] == {"worker": "rotated"}
    assert env.tokens() == old
    real = env.ansible("swarm", args)
    assert ok(real) and real["changed"]
    new = real["swarm_facts"]["JoinTokens"]
    assert new["Worker"] != old["Worker"] and new["Manager"] == old["Manager"]


def test_swarm_node_cert_expiry(env):
    def expiry():
        return env.ansible("info", {})["swarm_facts"]["spec"]["node_cert_expiry"]
    assert expiry() == 7776000
    args = {"state": "present", "node_cert_expiry": 2592000}
    predicted = env.ansible("swarm", args, check=True, diff=True)
    assert ok(predicted) and predicted["changed"]
    assert predicted["actions"] == ["Swarm settings updated: node_cert_expiry"]
    assert predicted["diff"]["before"]["node_cert_expiry"] == 7776000
    assert predicted["diff"]["after"]["node_cert_expiry"] == 2592000
    assert expiry() == 7776000
    assert ok(env.ansible("swarm", args)) and expiry() == 2592000
    again = env.ansible("swarm", args)
    assert ok(again) and not again["changed"]
    assert failed_with(env.ansible("swarm", {"state": "present", "node_cert_expiry": 30}),
                       "node_cert_expiry must be at least 60 seconds")
    assert expiry() == 2592000


# ---- join (through a playbook that hands the token over), bad tokens, no token in output -------------
JOIN_PLAY = """
- name: Join a worker with the manager's token
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Read the swarm on the manager
      swarmctl.cluster.info:
        swarmctl_host: "{{{{ manager_host }}}}"
      register: manager
    - name: Join the worker
      swarmctl.cluster.swarm:
        swarmctl_host: "{{{{ worker_host }}}}"
        state: join
        join_token: "{{{{ manager.swarm_facts.JoinTokens.Worker }}}}"
        remote_addrs: {remotes}
"""


def test_swarm_join_bad_input(env):
    token = env.tokens()["Worker"]
    base = {"state": "join", "remote_addrs": [env.manager.addr]}
    wrong = token[:-1] + ("a" if token[-1] != "a" else "b")
    cases = [
        (dict(base, join_token="SWMTKN-1-abc-def"), "join_token is malformed"),
        (dict(base, join_token=wrong), "invalid join token"),  # the daemon's 403 message, passed through
        (dict(base, join_token=token, remote_addrs=["127.0.0.81"]), "HOST:PORT"),
        ({"state": "join"}, "state is join but all of the following are missing: remote_addrs, join_token"),
    ]
    results = env.batch([("swarm", args, env.worker) for args, _message in cases])
    for result, (_args, message) in zip(results, cases):
        assert failed_with(result, message)
    assert wrong not in json.dumps(results) and token not in json.dumps(results)
    assert env.ansible("swarm", cases[0][0], env.worker, check=True)["msg"].startswith("join_token is malformed")
    assert env.worker.info()["local_node_state"] == "inactive"


def test_swarm_join_via_playbook(env):
    remotes = json.dumps(["127.0.0.89:2377", env.manager.addr])  # nothing listens on .89: the next one is used
    extra = ["-e", f"manager_host={env.host(env.manager)}", "-e", f"worker_host={env.host(env.worker)}",
             "-e", f"ansible_python_interpreter={sys.executable}"]
    play = JOIN_PLAY.format(remotes=remotes)
    checked = env.playbook(play, "--check", "--diff", *extra)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "changed=1" in checked.stdout and env.worker.info()["local_node_state"] == "inactive"
    real = env.playbook(play, "-vvv", *extra)
    assert real.returncode == 0, real.stdout + real.stderr
    assert "changed=1" in real.stdout
    worker_info = env.worker.info()
    assert worker_info["local_node_state"] == "active" and worker_info["role"] == "worker"
    # the join_token parameter is masked in the -vvv invocation; the manager's info result (register) does
    # show the token as its documented return value, so look at the join task's part of the output only
    join_part = real.stdout[real.stdout.index("TASK [Join the worker]"):]
    assert not TOKEN_RE.search(join_part), join_part
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in join_part
    again = env.playbook(play, *extra)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout
    again = env.playbook(play, "--check", *extra)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout
    wait_for(lambda: any(n["description"]["hostname"] == env.worker.name and n["status"]["state"] == "ready"
                         for n in env.api().get("/v1/nodes")), what="the worker to be ready")


def test_join_token_never_printed_by_adhoc_verbose(env):
    token = env.tokens()["Worker"]
    # already in the swarm: unchanged, and the token given as parameter appears nowhere, even at -vvv
    out = env.ansible("swarm", {"state": "join", "join_token": token, "remote_addrs": [env.manager.addr]},
                      env.worker, verbose="-vvv", raw=True)
    assert '"changed": false' in out and token not in out and not TOKEN_RE.search(out), out


def test_info_on_worker(env):
    result = env.ansible("info", {"nodes": True, "services": True, "tasks": True}, env.worker)
    assert ok(result) and result["swarm_active"] is True and result["swarm_manager"] is False
    assert result["swarm_facts"] == {} and not {"nodes", "services", "tasks"} & set(result)
    manager = env.ansible("info", {"nodes": True, "nodes_filters": {"role": "worker"}, "verbose_output": True})
    assert [n["description"]["hostname"] for n in manager["nodes"]] == [env.worker.name]
    assert failed_with(env.ansible("info", {"nodes_filters": {"colour": "red"}}), "unknown nodes_filters key")


# ---- node ---------------------------------------------------------------------------------------------
def test_node_labels_and_availability(env):
    def observe():
        return env.api().get(f"/v1/nodes/{env.worker.name}")["spec"]
    args = {"hostname": env.worker.name, "availability": "pause", "labels": {"zone": "a", "disk": "ssd"}}
    real = env.cycle("node", args, observe=observe)
    assert real["changes"] == ["availability", "labels"]
    assert real["diff"]["before"] == {"role": "worker", "availability": "active", "labels": {}}
    assert real["diff"]["after"] == {"role": "worker", "availability": "pause", "labels": {"zone": "a", "disk": "ssd"}}
    assert observe() == {"role": "worker", "availability": "pause", "labels": {"zone": "a", "disk": "ssd"}}
    real = env.cycle("node", {"hostname": env.worker.name, "labels_to_remove": ["disk", "missing"],
                              "availability": "active"}, observe=observe)
    assert observe()["labels"] == {"zone": "a"} and real["changes"] == ["availability", "labels"]
    env.cycle("node", {"hostname": env.worker.name, "labels": {"rack": "1"}, "labels_state": "replace"},
              observe=observe)
    assert observe()["labels"] == {"rack": "1"}


def test_node_errors(env):
    cases = [
        (("node", {"hostname": "nope", "availability": "drain"}), "No such node: nope"),
        (("node", {"hostname": env.manager.name, "role": "worker"}), "last manager"),
        (("node", {"hostname": env.worker.name, "labels": {"bad key": "x"}}), "invalid label key"),
        (("node", {"hostname": env.worker.name, "availability": "sleeping"}), "value of availability must be one of"),
        (("node", {"hostname": env.worker.name}, env.worker), "not a swarm manager"),
    ]
    for result, (_call, message) in zip(env.batch([call for call, _message in cases]), cases):
        assert failed_with(result, message)
    assert env.api().get(f"/v1/nodes/{env.manager.name}")["spec"]["role"] == "manager"


# ---- service --------------------------------------------------------------------------------------------
def test_service_lifecycle(env):
    def observe():
        return [s["spec"] for s in env.api().get("/v1/services")]
    base = {"name": "e2e", "image": env.image, "command": ["sleep", "3600"], "stop_grace_period": "1s",
            "placement": {"constraints": [f"node.hostname=={env.manager.name}"]}}
    created = env.cycle("service", dict(base, replicas=2, limits={"memory": "64M"}, env={"A": "1"}),
                        observe=observe)
    assert created["changes"] == [] and created["rebuilt"] is False and created["diff"]["before"] == {}
    spec = created["swarm_service"]["spec"]
    assert spec["replicas"] == 2 and spec["task"]["resources"]["limits"]["memory"] == 64 * 1024 ** 2
    assert spec["task"]["env"] == {"A": "1"} and spec["task"]["stop_grace_period"] == 1.0
    wait_for(lambda: env.api().get("/v1/services/e2e")["replicas_status"]["running"] == 2,
             timeout=60, what="2 running tasks")

    updated = env.cycle("service", dict(base, replicas=1, env=["A=2"], restart_config={"delay": "1s"}),
                        observe=observe)
    assert updated["changes"] == ["env", "replicas", "restart_config.delay"]
    assert updated["diff"]["before"]["replicas"] == 2 and updated["diff"]["after"]["replicas"] == 1
    # the same spec written differently is no change; options left out keep their values
    same = env.ansible("service", dict(base, command="sleep 3600", stop_grace_period="1000ms",
                                       limits={"memory": str(64 * 1024 ** 2)}))
    assert ok(same) and not same["changed"], same

    forced = env.ansible("service", dict(base, force_update=True))
    assert ok(forced) and forced["changed"] and forced["changes"] == ["force_update"]

    args = {"name": "e2e", "state": "absent"}
    removed = env.cycle("service", args, observe=observe)
    assert removed["swarm_service"] is None and removed["diff"]["after"] == {}
    assert observe() == []


def test_service_rolling_update_waits_and_fails_when_paused(env):
    """A changed image or command is a rolling update: the module waits for it (update_config as
    community.docker's), and a paused one fails the task with the update's message; wait: false returns."""
    base = {"name": "roll", "image": env.image, "command": ["sleep", "3600"], "stop_grace_period": "1s",
            "replicas": 2, "placement": {"constraints": [f"node.hostname=={env.manager.name}"]},
            "update_config": {"parallelism": 1, "monitor": "1s", "failure_action": "pause", "order": "start-first"}}
    created = env.ansible("service", base)
    assert ok(created) and created["changed"], created
    wait_for(lambda: env.api().get("/v1/services/roll")["replicas_status"]["running"] == 2,
             timeout=60, what="2 running tasks")
    updated = env.ansible("service", dict(base, env={"V": "2"}))
    assert ok(updated) and updated["changed"] and updated["update_status"]["state"] == "completed", updated
    paused = env.ansible("service", dict(base, env={"V": "3"}, command=["sh", "-c", "exit 3"]))
    assert failed_with(paused, "update paused due to failure or early termination of task"), paused
    assert env.api().get("/v1/services/roll")["update_status"]["state"] == "paused"
    back = env.ansible("service", dict(base, env={"V": "4"}, wait=False))
    assert ok(back) and back["changed"] and "update_status" not in back, back
    assert ok(env.ansible("service", {"name": "roll", "state": "absent"}))


def test_service_bad_input(env):
    base = {"name": "bad", "image": env.image}
    cases = [
        (dict(base, placement={"constraints": ["node.rack==1"]}), "unknown key 'node.rack'"),
        (dict(base, limits={"memory": "lots"}), "invalid limits.memory"),
        (dict(base, restart_config={"delay": "soon"}), "invalid restart_config.delay"),
        (dict(base, mode="global", replicas=2), "replicas can only be used with mode=replicated"),
        (dict(base, env={"DEBUG": True}), "quote values"),
        (dict(base, publish=[{"published_port": 80}]), "missing required arguments: target_port"),
        (dict(base, publish=[{"target_port": 80, "published_port": 70000}]), "must be in range 1-65535"),
        (dict(base, networks=["overlay"]), 'network "overlay" is not available: swarmctl runs tasks on the host'),
        ({"name": "bad"}, "image"),
    ]
    cases.append((dict(base, image="no-such/image:1"), "not found on any node"))  # the daemon's message
    for check_mode in (True, False):
        calls = [("service", args) for args, _message in cases]
        if check_mode:
            calls.pop()  # the image check is the daemon's, which check mode does not ask
        for result, (_args, message) in zip(env.batch(calls, check=check_mode), cases):
            assert failed_with(result, message)
    assert env.api().get("/v1/services") == []


# ---- leave and remove ----------------------------------------------------------------------------------
def test_worker_leaves_and_is_removed(env):
    def worker_state():
        return env.worker.info()["local_node_state"]
    env.cycle("swarm", {"state": "absent"}, env.worker, observe=worker_state)
    assert worker_state() == "inactive"
    node_id = next(n["id"] for n in env.api().get("/v1/nodes")
                   if n["description"]["hostname"] == env.worker.name)
    wait_for(lambda: env.api().get(f"/v1/nodes/{node_id}")["status"]["state"] == "down",
             what="the worker to be down")

    def node_ids():
        return sorted(n["id"] for n in env.api().get("/v1/nodes"))
    real = env.cycle("swarm", {"state": "remove", "node_id": node_id}, observe=node_ids)
    assert real["actions"] == ["Node is removed from swarm cluster."]
    assert node_id not in node_ids()


def test_manager_leave_needs_force(env):
    for check_mode in (True, False):
        assert failed_with(env.batch([("swarm", {"state": "absent"})], check=check_mode)[0], "force=true")
    env.cycle("swarm", {"state": "absent", "force": True}, observe=lambda: env.manager.info()["local_node_state"])
    assert env.ansible("info", {})["swarm_active"] is False  # the module's view of it

"""community.docker's own documented EXAMPLES, run against swarmctl.cluster with real ansible-playbook and daemons.

The 62 example tasks of docker_swarm, docker_node, docker_swarm_service, docker_swarm_info, docker_node_info,
docker_swarm_service_info, docker_stack, docker_secret and docker_config are stored verbatim in
community_docker_examples/ (see its README.md). Each task is run with its module renamed
(community.docker.docker_swarm -> swarmctl.cluster.swarm, ...; MODULES below) and only what is specific to an
environment substituted (substitutions()):

- addresses: 192.168.1.1 -> the manager's address, 192.168.1.2 -> the second daemon's;
- the join token SWMTKN-1--xxxxx -> the manager's real worker token;
- every image (the `image` key, in module options and in compose files) -> swarmctl-test/busybox:latest;
- file paths (the compose file, the secret and config files, the env files) -> files in a temp dir
  (prefix swarmctl-c-);
- interface names: eth0 -> lo:sw181, ens10 -> lo:sw184, loopback labels the test adds for that example and
  removes in a finally (`ip addr add 127.0.0.181/32 dev lo label lo:sw181`; the numbers follow
  SWARMCTL_TEST_IP_OFFSET);
- node names and ids: mynode -> the second daemon (node72), mynode1/mynode2 -> node71/node72; docker_swarm's
  `node_id: mynode` -> the second daemon's node id.
The daemon a task talks to is given by the task keyword `environment: {SWARMCTL_HOST: unix://...}` (the
modules' fallback for swarmctl_host, as DOCKER_HOST is community.docker's), so no option of an example is changed.
The stack module finds this checkout's `swarmctl` on the PATH (a wrapper in the temp dir).

Daemons: harness indexes 71 (manager) and 72 (a second node), 127.0.0.(10 + SWARMCTL_TEST_IP_OFFSET + index),
both on the private Docker engine. The groups run in this order, each with its setup and teardown:

1. docker_swarm, one ansible-playbook each, on daemons outside any swarm:
   Init (default) on the manager -> Update swarm configuration -> Add nodes (run on the second daemon: it joins)
   -> Leave swarm for a node (the second daemon) -> Remove node from swarm (on the manager, once the left node
   is down) -> Remove a swarm manager (the manager leaves with force) -> Init ... data path interface (setup:
   the two loopback labels; teardown: leave, labels removed) -> Init ... data path port (teardown: leave).
   When an example fails, its setup's result is brought about with the CLI so the next ones still have theirs.
2. A fresh swarm for the rest (CLI: init on the manager, the second daemon joins as a worker).
3. docker_node, one playbook, in order (mynode = the worker: it is promoted, drained, relabelled);
   teardown: availability active again.
4. docker_swarm_info, one playbook, in order (the debug tasks read what the call before registered); setup:
   autolock on (so that the unlock key example has a key to show); teardown: autolock off.
5. docker_node_info, then docker_swarm_service_info, one playbook each; setup: a running service myservice; teardown:
   it is removed.
6. docker_swarm_service, one playbook each; setup: no service myservice (each example creates it afresh), plus
   for "Set environment variables" the env files, for "Set configs" the config myconfig_name, for "Set secrets"
   the secret mysecret_name, for "Remove service" a service myservice; teardown: myservice removed.
7. docker_stack, one playbook (deploy, deploy with the inline override, remove).
8. docker_secret and docker_config, one playbook each, in order (they share the object foo).

An example passes when its task did not fail; an info module's result must have community.docker's return keys
(RETURN_KEYS), a debug task must find the variables it prints. Examples that cannot pass here, for a reason a
user would accept (no overlay networks, no overlay data path), are in KNOWN_EXCEPTIONS: they must still fail (so the list stays true). At least 58 must pass.

Skipped without ansible-core unless SWARMCTL_REQUIRE_ANSIBLE is set. SWARMCTL_EXAMPLES_REPORT=FILE writes the
per-example outcome as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

from tests.collection.test_modules_e2e import ANSIBLE_PLAYBOOK, Env, _remove_containers
from tests.integration.harness import IP_OFFSET, Daemon, check, wait_for

pytestmark = pytest.mark.integration

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXAMPLES_DIR = os.path.join(HERE, "community_docker_examples")
sys.path.insert(0, EXAMPLES_DIR)
import extract  # noqa: E402  (community_docker_examples/extract.py)

sys.path.remove(EXAMPLES_DIR)

MODULES = {
    "docker_swarm": "swarm",
    "docker_node": "node",
    "docker_swarm_service": "service",
    "docker_swarm_info": "info",
    "docker_node_info": "node_info",
    "docker_swarm_service_info": "service_info",
    "docker_stack": "stack",
    "docker_secret": "secret",
    "docker_config": "config",
}
EXPECTED_COUNT = 62
MIN_PASSING = 58
PLAY_TIMEOUT = 240  # seconds, each ansible-playbook run

# "module/example name": why it cannot pass on swarmctl. Keep it short; every entry must still fail.
KNOWN_EXCEPTIONS = {
    "docker_swarm/Init a new swarm with different data path interface":
        "swarmctl has no overlay data path (data_path_addr is refused with that message): other nodes reach a "
        "node's tasks at its advertise address",
    "docker_swarm/Init a new swarm with a different data path port":
        "swarmctl has no VXLAN overlay (data_path_port is refused with that message): task traffic goes over the "
        "host network",
    "docker_swarm_service/Set networks":
        "swarmctl has no overlay networks: a task runs on the host's network or none, so a network "
        "'mynetwork' does not exist (the module says so)",
    "docker_swarm_service/Set networks as a dictionary":
        "swarmctl has no overlay networks (as 'Set networks'): the network 'mynetwork', its aliases and "
        "driver options do not exist",
}

# community.docker's return values the info examples must find in the result
RETURN_KEYS = {
    "docker_swarm_info": ["can_talk_to_docker", "docker_swarm_active", "docker_swarm_manager", "swarm_facts"],
    "docker_node_info": ["nodes"],
    "docker_swarm_service_info": ["exists", "service"],
}

CLI_WRAPPER = """#!/bin/sh
PYTHONPATH={repo}${{PYTHONPATH:+:$PYTHONPATH}} exec {python} -m swarmctl.cli.main "$@"
"""
COMPOSE = """version: '3'
services:
  web:
    image: swarmctl-test/busybox:latest
    command: ["sleep", "3600"]
    stop_grace_period: 1s
"""
MANAGER_INDEX, SECOND_INDEX = 71, 72
LABELS = {"eth0": 71, "ens10": 74}  # interface name -> harness index of the loopback label's address


def label_of(index: int) -> tuple:
    """(label name, address) of a loopback label for a harness index: ('lo:sw181', '127.0.0.181')."""
    last = 10 + IP_OFFSET + index
    return f"lo:sw{last}", f"127.0.0.{last}"


# ---- the examples ---------------------------------------------------------------------------------------
def load_examples() -> list:
    """[(module, name, task)] in file order, from the vendored EXAMPLES."""
    found = []
    for module in extract.MODULES:
        with open(os.path.join(EXAMPLES_DIR, f"{module}.yml"), encoding="utf-8") as f:
            for task in yaml.safe_load(f):
                found.append((module, task["name"], task))
    return found


EXAMPLES = load_examples()


def key(module: str, name: str) -> str:
    return f"{module}/{name}"


def task_module(task: dict) -> str | None:
    """docker_swarm for a task of community.docker.docker_swarm; None for other tasks (debug)."""
    for k in task:
        if k.startswith("community.docker."):
            return k.split(".")[-1]
    return None


def substitute(value, exact: dict, inside: dict, image: str):
    """value with environment-specific strings replaced: a string equal to a key of `exact`, substrings
    of `inside` (longest first), and the value of every `image` key."""
    if isinstance(value, dict):
        return {k: image if k == "image" else substitute(v, exact, inside, image) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, exact, inside, image) for v in value]
    if isinstance(value, str):
        if value in exact:
            return exact[value]
        for old in sorted(inside, key=len, reverse=True):
            value = value.replace(old, inside[old])
        return value
    return value


def adapt(task: dict, host: str, exact: dict, inside: dict, image: str) -> dict:
    """The example task for swarmctl.cluster: module renamed, environment-specific values substituted, the
    daemon given by the task's environment, ignore_errors so that one failure does not hide the others."""
    out = {}
    for k, v in task.items():
        if k.startswith("community.docker."):
            out["swarmctl.cluster." + MODULES[k.split(".")[-1]]] = substitute(v or {}, exact, inside, image)
        else:
            out[k] = v
    if task_module(task):
        out["environment"] = {"SWARMCTL_HOST": host}
    out["ignore_errors"] = True
    return out


def judge(module: str, task: dict, result: dict) -> tuple:
    """(passed, message) of one example's result."""
    if result is None:
        return False, "no result (the play ended before this task)"
    if result.get("_status") != "ok":
        return False, one_line(result.get("msg") or result.get("_status"))
    if task_module(task) is None:  # a debug task: the variables it prints must exist
        var = (task.get("ansible.builtin.debug") or {}).get("var")
        value = result.get(var) if var else None
        if var and (var not in result or (isinstance(value, str) and (
                value.startswith("<< error") or "VARIABLE IS NOT DEFINED" in value))):
            return False, f"debug: {var} is not defined ({one_line(value)})"
        for warning in result.get("warnings") or []:
            if "template error" in str(warning):
                return False, f"debug: {one_line(warning)}"
        return True, ""
    args = task[f"community.docker.{module}"] or {}
    wanted = list(RETURN_KEYS.get(module, []))
    if module == "docker_swarm_info":
        wanted += ["nodes"] if args.get("nodes") else []
        wanted += ["swarm_unlock_key"] if args.get("unlock_key") else []
    missing = [k for k in wanted if k not in result]
    if missing:
        return False, "result lacks " + ", ".join(missing)
    if module == "docker_node_info":
        names = args.get("name")
        expected = 1 if args.get("self") else (len(names) if isinstance(names, list) else 1 if names else None)
        if expected is not None and len(result["nodes"]) != expected:
            return False, f"{len(result['nodes'])} nodes returned, {expected} expected"
    if module == "docker_swarm_service_info" and not result.get("exists"):
        return False, "exists is not true for a service that exists"
    return True, ""


def one_line(text) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= 300 else text[:297] + "..."


# ---- the environment ------------------------------------------------------------------------------------
class Examples:
    """Two daemons, the Ansible setup (test_modules_e2e.Env), the files the examples name, and the runner."""

    def __init__(self, docker_host: str, image: str):
        self.root = tempfile.mkdtemp(prefix="swarmctl-c-", dir="/tmp")  # short: unix socket paths are limited
        self.image = image
        self.docker_host = docker_host
        self.ansible = Env(self.root, docker_host, image)
        self.manager = self.ansible.manager
        self.second = Daemon(SECOND_INDEX, self.root, heartbeat=0.5, extra_args=["--docker-host", docker_host])
        self.ansible.worker = self.second
        self.labels_added: list = []
        self.outcomes: dict = {}  # "module/name" -> (passed, message)
        self.runs = 0
        self.token = "SWMTKN-1--xxxxx"  # the manager's worker token once there is a swarm
        bindir = os.path.join(self.root, "bin")
        os.makedirs(bindir)
        cli = os.path.join(bindir, "swarmctl")
        with open(cli, "w") as f:
            f.write(CLI_WRAPPER.format(repo=REPO, python=sys.executable))
        os.chmod(cli, 0o755)
        self.env = dict(self.ansible.env, ANSIBLE_STDOUT_CALLBACK="e2e_json",
                        PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
        files = os.path.join(self.root, "files")
        os.makedirs(os.path.join(files, "envs", "apps"))
        self.paths = {
            "/opt/docker-compose.yml": os.path.join(files, "docker-compose.yml"),
            "/path/to/secret/file": os.path.join(files, "secret-file"),
            "/path/to/config/file": os.path.join(files, "config-file"),
            "envs/common.env": os.path.join(files, "envs", "common.env"),
            "envs/apps/web.env": os.path.join(files, "envs", "apps", "web.env"),
        }
        contents = {"/opt/docker-compose.yml": COMPOSE, "/path/to/secret/file": "Hello, secret world!\n",
                    "/path/to/config/file": "listen = 8080\n", "envs/common.env": "COMMON=1\nLEVEL=info\n",
                    "envs/apps/web.env": "LEVEL=debug\nWEB=1\n"}
        for name, text in contents.items():
            with open(self.paths[name], "w") as f:
                f.write(text)
        self.object_file = os.path.join(files, "object-data")
        with open(self.object_file, "w") as f:
            f.write("setup data\n")

    # -- state helpers (the CLI, not the modules) --
    def host(self, daemon: Daemon) -> str:
        return f"unix://{daemon.socket}"

    def state(self, daemon: Daemon) -> str:
        return daemon.info()["local_node_state"]

    def remember_node(self, daemon: Daemon) -> None:
        node_id = daemon.info().get("node_id")
        if node_id:
            self.ansible.node_ids.add(node_id)

    def ensure_swarm(self) -> None:
        if self.state(self.manager) != "active":
            check(self.manager.cli("swarm", "init", "--advertise-addr", self.manager.ip))
        self.remember_node(self.manager)

    def ensure_left(self, daemon: Daemon) -> None:
        if self.state(daemon) != "inactive":
            check(daemon.cli("swarm", "leave", "--force"))
        wait_for(lambda: self.state(daemon) == "inactive", what=f"{daemon.name} to leave")

    def join_second(self, role: str = "worker") -> None:
        if self.state(self.second) == "active":
            return
        token = check(self.manager.cli("swarm", "join-token", "-q", role)).out.strip()
        check(self.second.cli("swarm", "join", "--token", token, self.manager.addr))
        self.remember_node(self.second)
        wait_for(lambda: self.node(self.second.name)["status"]["state"] == "ready", what="the second node ready")

    def node(self, ref: str) -> dict:
        return json.loads(check(self.manager.cli("node", "inspect", "--format", "json", ref)).out)

    def worker_token(self) -> str:
        return check(self.manager.cli("swarm", "join-token", "-q", "worker")).out.strip()

    def remove_service(self, name: str = "myservice") -> None:
        self.manager.cli("service", "rm", name)
        wait_for(lambda: not self.manager.cli("service", "inspect", name).ok, what=f"service {name} removed")

    def add_label(self, index: int) -> None:
        label, address = label_of(index)
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo", "label", label],
                       check=True, capture_output=True, timeout=10)
        self.labels_added.append(index)

    def remove_labels(self) -> None:
        while self.labels_added:
            label, address = label_of(self.labels_added.pop())
            subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo", "label", label],
                           check=False, capture_output=True, timeout=10)

    # -- the runner --
    def substitutions(self, extra: dict | None = None) -> tuple:
        exact = {
            "SWMTKN-1--xxxxx": self.token,
            "mynode": self.second.name,
            "mynode1": self.manager.name,
            "mynode2": self.second.name,
            "envs/common.env": self.paths["envs/common.env"],
            "envs/apps/web.env": self.paths["envs/apps/web.env"],
            "/opt/docker-compose.yml": self.paths["/opt/docker-compose.yml"],
            "eth0": label_of(LABELS["eth0"])[0],
            "ens10": label_of(LABELS["ens10"])[0],
        }
        exact.update(extra or {})
        inside = {
            "192.168.1.1": self.manager.ip,
            "192.168.1.2": self.second.ip,
            "/path/to/secret/file": self.paths["/path/to/secret/file"],
            "/path/to/config/file": self.paths["/path/to/config/file"],
        }
        return exact, inside

    def run(self, examples: list, daemon: Daemon | None = None, extra: dict | None = None) -> list:
        """Run examples [(module, name, task)] as the tasks of one ansible-playbook on daemon (the manager by
        default); record and return their outcomes."""
        exact, inside = self.substitutions(extra)
        host = self.host(daemon or self.manager)
        tasks = [adapt(task, host, exact, inside, self.image) for _module, _name, task in examples]
        self.runs += 1
        path = os.path.join(self.root, f"play{self.runs}.yml")
        with open(path, "w") as f:
            json.dump([{"name": "community.docker examples", "hosts": "localhost", "gather_facts": False,
                        "tasks": tasks}], f, indent=1)
        results: list = []
        problem = ""
        try:
            proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", path], capture_output=True,
                                  text=True, env=self.env, cwd=self.root, timeout=PLAY_TIMEOUT,
                                  stdin=subprocess.DEVNULL, check=False)
            try:
                results = json.loads(proc.stdout)
            except ValueError:
                problem = (f"no JSON from ansible-playbook (exit {proc.returncode}): "
                           f"{proc.stdout[-500:]} {proc.stderr[-500:]}")
        except subprocess.TimeoutExpired:
            problem = f"ansible-playbook did not end within {PLAY_TIMEOUT} s"
        outcomes = []
        for i, (module, name, task) in enumerate(examples):
            if problem:
                outcome = (False, one_line(problem))
            else:
                outcome = judge(module, task, results[i] if i < len(results) else None)
            self.outcomes[key(module, name)] = outcome
            outcomes.append(outcome)
        return outcomes

    def group(self, module: str) -> list:
        return [e for e in EXAMPLES if e[0] == module]

    def example(self, module: str, name: str) -> list:
        found = [e for e in EXAMPLES if e[0] == module and e[1] == name]
        assert len(found) == 1, (module, name)
        return found


# ---- the groups -------------------------------------------------------------------------------------------
def run_swarm_examples(x: Examples) -> None:
    def one(name, daemon=None, extra=None):
        return x.run(x.example("docker_swarm", name), daemon, extra)[0][0]

    one("Init a new swarm with default parameters")
    x.ensure_swarm()
    one("Update swarm configuration")

    x.token = x.worker_token()
    if one("Add nodes", x.second):
        x.remember_node(x.second)
    x.join_second()
    second_id = x.second.info()["node_id"]

    one("Leave swarm for a node", x.second)
    x.ensure_left(x.second)
    wait_for(lambda: x.node(second_id)["status"]["state"] == "down", timeout=30, what="the left node to be down")
    one("Remove node from swarm", extra={"mynode": second_id})
    if x.manager.cli("node", "inspect", second_id).ok:
        x.manager.cli("node", "rm", "--force", second_id)

    one("Remove a swarm manager")
    x.ensure_left(x.manager)

    try:
        x.add_label(LABELS["eth0"])
        x.add_label(LABELS["ens10"])
        one("Init a new swarm with different data path interface")
    finally:
        x.remove_labels()
    x.ensure_left(x.manager)

    one("Init a new swarm with a different data path port")
    x.ensure_left(x.manager)


def run_cluster_examples(x: Examples) -> None:
    x.ensure_swarm()
    x.token = x.worker_token()
    x.join_second()

    x.run(x.group("docker_node"))
    x.manager.cli("node", "update", "--availability", "active", x.second.name)

    check(x.manager.cli("swarm", "update", "--autolock=true"))
    try:
        x.run(x.group("docker_swarm_info"))
    finally:
        x.manager.cli("swarm", "update", "--autolock=false")

    check(x.manager.cli("service", "create", "-d", "--name", "myservice", "--stop-grace-period", "1s",
                        x.image, "sleep", "3600"))
    try:
        x.run(x.group("docker_node_info"))  # two plays: a module that cannot be found fails its whole play
        x.run(x.group("docker_swarm_service_info"))
    finally:
        x.remove_service()

    for example in x.group("docker_swarm_service"):
        name = example[1]
        if name == "Set configs":
            check(x.manager.cli("config", "create", "myconfig_name", x.object_file))
        if name == "Set secrets":
            check(x.manager.cli("secret", "create", "mysecret_name", x.object_file))
        if name == "Remove service":
            check(x.manager.cli("service", "create", "-d", "--name", "myservice", "--stop-grace-period", "1s",
                                x.image, "sleep", "3600"))
        try:
            x.run([example])
        finally:
            x.remove_service()
            if name == "Set configs":
                x.manager.cli("config", "rm", "myconfig_name")
            if name == "Set secrets":
                x.manager.cli("secret", "rm", "mysecret_name")

    x.run(x.group("docker_stack"))
    x.manager.cli("stack", "rm", "mystack")
    x.run(x.group("docker_secret"))
    x.run(x.group("docker_config"))


@pytest.fixture(scope="module")
def outcomes(docker_engine):
    from tests import docker_engine as engine
    x = Examples(docker_engine, engine.TEST_IMAGE)
    started = time.monotonic()
    try:
        x.manager.start()
        x.second.start()
        run_swarm_examples(x)
        run_cluster_examples(x)
        report = {k: {"passed": v[0], "message": v[1]} for k, v in x.outcomes.items()}
        print(f"\n{len(EXAMPLES)} examples in {x.runs} ansible-playbook runs, {time.monotonic() - started:.0f} s")
        for k, (passed, message) in x.outcomes.items():
            print(f"{'PASS' if passed else 'FAIL'}  {k}  {message}")
        if os.environ.get("SWARMCTL_EXAMPLES_REPORT"):
            with open(os.environ["SWARMCTL_EXAMPLES_REPORT"], "w") as f:
                json.dump(report, f, indent=1)
        yield x.outcomes
    finally:
        try:
            x.remove_labels()
        finally:
            for d in (x.second, x.manager):
                d.stop()
            _remove_containers(docker_engine, x.ansible.node_ids)
            if os.environ.get("SWARMCTL_KEEP_LOGS") is None:
                shutil.rmtree(x.root, ignore_errors=True)


# ---- the tests --------------------------------------------------------------------------------------------
def test_vendored_examples_are_verbatim():
    """The stored files are the EXAMPLES of the recorded commit (checked when the git copy is here)."""
    if not os.path.isdir(extract.DEFAULT_GIT_DIR):
        pytest.skip(f"no git copy of community.docker at {extract.DEFAULT_GIT_DIR}")
    assert extract.extract() == extract.vendored()


def test_example_count():
    assert len(EXAMPLES) == EXPECTED_COUNT
    assert len({key(m, n) for m, n, _t in EXAMPLES}) == EXPECTED_COUNT, "example names are not unique"
    assert set(KNOWN_EXCEPTIONS) <= {key(m, n) for m, n, _t in EXAMPLES}
    assert {task_module(t) for _m, _n, t in EXAMPLES} - {None} == set(MODULES)


def test_examples_summary(outcomes):
    """Every example ran; at least MIN_PASSING pass; the full table is in the message when not."""
    assert set(outcomes) == {key(m, n) for m, n, _t in EXAMPLES}
    table = "\n".join(f"{'PASS' if p else 'FAIL'}  {k}  {m}" for k, (p, m) in outcomes.items())
    passing = sum(1 for p, _m in outcomes.values() if p)
    assert passing >= MIN_PASSING, f"{passing} of {len(outcomes)} examples pass:\n{table}"


@pytest.mark.parametrize("example", [key(m, n) for m, n, _t in EXAMPLES])
def test_example(outcomes, example):
    passed, message = outcomes[example]
    if example in KNOWN_EXCEPTIONS:
        assert not passed, f"{example} passes now: remove it from KNOWN_EXCEPTIONS ({KNOWN_EXCEPTIONS[example]})"
    else:
        assert passed, f"{example} failed: {message}"

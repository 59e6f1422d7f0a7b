"""`service logs` and `node ps` on real daemons and the real engine: a service of 3 replicas on 3 workers
printing timestamped lines. The logs come merged in time order, `--tail` is per task, `-f` picks up a task
that a scale-up adds and ends on SIGINT, and with one node killed the other nodes' lines still come (the
missing tasks named on stderr, exit 0)."""

import collections
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import docker
import pytest

from tests.integration.harness import SWARMCTL, Cluster, check, wait_for

SERVICE = "logweb"
# one line every 0.2 s, numbered, naming the task's slot
PRINTER = ["sh", "-c", 'i=0; while true; do i=$((i+1)); echo "slot=$SLOT line=$i"; sleep 0.2; done']


@pytest.fixture
def logs_cluster(docker_engine, test_image):
    root = tempfile.mkdtemp(prefix="swarmctl-logs-", dir="/tmp")
    c = Cluster(root, heartbeat=0.5, docker_host=docker_engine)
    node_ids = []
    c.node_ids = node_ids
    try:
        yield c
    finally:
        c.stop_all()
        client = docker.DockerClient(base_url=docker_engine)
        for node_id in node_ids:  # only this test's containers: other sessions share the engine
            for container in client.containers.list(all=True, filters={"label": f"swarmctl.node.id={node_id}"}):
                try:
                    container.remove(force=True)
                except docker.errors.APIError:
                    pass
        client.close()
        if os.environ.get("SWARMCTL_KEEP_LOGS") is None:
            shutil.rmtree(root, ignore_errors=True)


def prefixes(out: str) -> collections.Counter:
    return collections.Counter(line.split("    | ", 1)[0].split(" ", 1)[-1]
                               for line in out.splitlines() if "    | " in line)


def stamps(out: str) -> list[str]:
    return [line.split(" ", 1)[0] for line in out.splitlines() if "    | " in line]


def test_logs_merged_tail_follow_and_node_down(logs_cluster, test_image):
    managers, workers = logs_cluster.form(1, 3)
    m = managers[0]
    logs_cluster.node_ids.extend(n["id"] for n in check(m.cli("node", "ls", "--format", "json")).json())
    check(m.cli("node", "update", "--availability", "drain", "node1"))
    check(m.cli("service", "create", "--name", SERVICE, "--replicas", "3", "--stop-grace-period", "0s",
                "-e", "SLOT={{.Task.Slot}}", test_image, *PRINTER, timeout=120))
    time.sleep(3)  # some lines on every task

    # merged in time order, from the three workers
    out = check(m.cli("service", "logs", "-t", SERVICE)).out
    seen = prefixes(out)
    assert len(seen) == 3 and {p.rsplit("@", 1)[1] for p in seen} == {"node2", "node3", "node4"}, seen
    ts = stamps(out)
    assert ts == sorted(ts) and len(ts) >= 15, out[-2000:]
    for p in seen:
        service, slot, task_id = p.split("@")[0].split(".")
        assert service == SERVICE and slot in ("1", "2", "3") and len(task_id) == 12

    # --tail is per task
    out = check(m.cli("service", "logs", "--tail", "5", SERVICE)).out
    assert sorted(prefixes(out).values()) == [5, 5, 5], out
    # --raw, --no-task-ids, one task
    raw = check(m.cli("service", "logs", "--raw", "--tail", "1", SERVICE)).out.splitlines()
    assert len(raw) == 3 and all(line.startswith("slot=") for line in raw)
    some = next(iter(seen))
    task_prefix = some.split("@")[0].split(".")[2]
    one = check(m.cli("service", "logs", "--no-task-ids", "--tail", "2", task_prefix)).out
    assert list(prefixes(one)) == [".".join(some.split("@")[0].split(".")[:2]) + "@" + some.rsplit("@", 1)[1]]

    # -f follows a task added by a scale-up, and ends on SIGINT without a traceback
    env = dict(os.environ, SWARMCTL_HOST=f"unix://{m.socket}")
    follow = subprocess.Popen(SWARMCTL + ["service", "logs", "-f", "--tail", "1", SERVICE], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: [lines.append(line) for line in follow.stdout], daemon=True)
    reader.start()
    try:
        wait_for(lambda: len(prefixes("".join(lines))) == 3, timeout=20, what="the first lines of 3 tasks")
        check(m.cli("service", "scale", f"{SERVICE}=4", timeout=120))
        wait_for(lambda: any(p.startswith(f"{SERVICE}.4.") for p in prefixes("".join(lines))), timeout=30,
                 what="a line of the new task")
        count = len(lines)
        wait_for(lambda: len(lines) > count + 8, timeout=10, what="following goes on")
    finally:
        follow.send_signal(signal.SIGINT)
        code = follow.wait(15)
    reader.join(5)
    err = follow.stderr.read()
    assert code in (0, 130) and "Traceback" not in err, err
    # a followed task's lines come in order: its line numbers only grow
    numbers = collections.defaultdict(list)
    for line in lines:
        if "    | " in line:
            p, text = line.rstrip("\n").split("    | ", 1)
            numbers[p].append(int(text.split("line=")[1]))
    assert all(n == sorted(n) and len(set(n)) == len(n) for n in numbers.values()), numbers

    # node ps: a node's tasks (default this node), Docker's columns, filters on the server
    check(m.cli("service", "scale", f"{SERVICE}=3", timeout=120))
    all_tasks = check(m.cli("service", "ps", "--format", "json", SERVICE)).json()
    running = {t["id"] for t in all_tasks if t["desired_state"] == "running"}
    on = {w.name: {t["id"] for t in all_tasks if t["node_name"] == w.name} for w in workers}
    table = check(m.cli("node", "ps", "node2")).out.splitlines()
    assert table[0].split() == ["ID", "NAME", "IMAGE", "NODE", "DESIRED", "STATE", "CURRENT", "STATE", "ERROR",
                                "PORTS"]
    assert len(table) - 1 == len(on["node2"]) and all(" node2 " in row for row in table[1:])
    assert check(m.cli("node", "ps")).out.splitlines()[1:] == []  # node1 (self) is drained: no task
    assert "not a swarm manager" in workers[0].cli("node", "ps").err  # as Docker: managers only
    quiet = check(m.cli("node", "ps", "-q", "--no-trunc", "-f", "desired-state=running", "node2", "node3")).out
    assert set(quiet.split()) == (on["node2"] | on["node3"]) & running
    by_json = check(m.cli("node", "ps", "--format", "json", "-f", "name=" + SERVICE, "node3")).json()
    assert {t["id"] for t in by_json} == on["node3"]
    bad = m.cli("node", "ps", "-f", "bogus=1", "node2")
    assert bad.code == 1 and bad.err.strip() == "Error response from daemon: invalid filter 'bogus'", bad.err
    missing = m.cli("node", "ps", "nosuchnode")
    assert missing.code == 1 and "No such node: nosuchnode" in missing.err and "Traceback" not in missing.err
    ps_node = check(m.cli("service", "ps", "-q", "--no-trunc", "-f", "node=node4", SERVICE)).out
    assert set(ps_node.split()) == on["node4"]
    assert len(check(m.cli("node", "ls", "-q", "-f", "role=worker")).out.split()) == 3

    # one node killed: the other nodes' lines still come, the missing tasks are named on stderr, exit 0
    victim = workers[2]
    victim_tasks = [t for t in check(m.cli("service", "ps", "--format", "json", SERVICE)).json()
                    if t["node_name"] == victim.name and t["desired_state"] == "running"]
    assert victim_tasks
    victim.kill()
    for _ in range(2):  # right after the kill (connection refused), and once the node is down
        started = time.monotonic()
        result = m.cli("service", "logs", "--tail", "3", SERVICE)
        assert result.code == 0, result.err
        assert time.monotonic() - started < 20
        alive = {p.rsplit("@", 1)[1] for p in prefixes(result.out)}
        assert alive >= {"node2", "node3"} and victim.name not in alive, result.out
        assert "are missing" in result.err and f"@{victim.name}" in result.err, result.err
        assert victim_tasks[0]["id"][:12] in result.err
        assert "Traceback" not in result.err
        wait_for(lambda: any(n["description"]["hostname"] == victim.name and n["status"]["state"] == "down"
                             for n in check(m.cli("node", "ls", "--format", "json")).json()),
                 timeout=30, what="the killed node down")

    # following with the node down: the other tasks' lines keep coming, the missing ones are named once
    follow = subprocess.Popen(SWARMCTL + ["service", "logs", "-f", "--tail", "0", SERVICE], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: [lines.append(line) for line in follow.stdout], daemon=True)
    reader.start()
    try:
        wait_for(lambda: {p.rsplit("@", 1)[1] for p in prefixes("".join(lines))} >= {"node2", "node3"},
                 timeout=20, what="new lines of the live nodes' tasks")
    finally:
        follow.send_signal(signal.SIGINT)
        code = follow.wait(15)
    reader.join(5)
    err = follow.stderr.read()
    assert code in (0, 130) and "Traceback" not in err, err
    assert f"@{victim.name} are missing" in err and err.count(victim_tasks[0]["id"][:12]) == 1, err

"""Services on real containers: orchestration, scheduling, agents, failures, bad input.

Several nodes share the private test engine; each only touches containers labelled with its node id.
"""

import collections
import time
import urllib.request

import docker
import pytest

from swarmctl.errors import NOT_A_MANAGER_MESSAGE
from tests.integration.harness import check, nodes_json, wait_for

SLEEP = ["sleep", "3600"]
FAST_STOP = ["--stop-grace-period", "0s"]


@pytest.fixture
def engine(docker_engine):
    client = docker.DockerClient(base_url=docker_engine)
    yield client
    client.close()


def containers(engine, service, running=True):
    return engine.containers.list(all=not running, filters={"label": f"swarmctl.service.name={service}"})


def tasks(manager, service):
    return check(manager.cli("service", "ps", "--format", "json", service)).json()


def live(manager, service):
    return [t for t in tasks(manager, service) if t["desired_state"] == "running"]


def per_node(manager, service):
    return collections.Counter(t["node_name"] for t in live(manager, service) if t["status"]["state"] == "running")


def create(manager, name, *args, image=None, command=SLEEP):
    return manager.cli("service", "create", "--name", name, *FAST_STOP, *args, image or IMAGE, *command, timeout=120)


IMAGE = "swarmctl-test/busybox:latest"


def test_seed_walkthrough(docker_cluster, engine):
    managers, workers = docker_cluster.form(3, 2)
    m = managers[0]
    out = check(create(m, "web", "--replicas", "1", command=["httpd", "-f", "-p", "127.0.0.1:0"])).out
    assert "verify: Service converged" in out
    assert len(containers(engine, "web")) == 1
    ps = check(m.cli("service", "ps", "web")).out
    assert "web.1" in ps and "Running" in ps and any(f"node{i}" in ps for i in range(1, 6))
    check(m.cli("service", "scale", "web=3"))
    wait_for(lambda: len(containers(engine, "web")) == 3, what="3 containers")
    assert len({t["node_name"] for t in live(m, "web")}) == 3  # spread over three nodes
    check(m.cli("service", "scale", "web=1"))
    wait_for(lambda: len(containers(engine, "web", running=False)) == 1, what="1 container")
    assert len(live(m, "web")) == 1
    check(m.cli("service", "rm", "web"))
    wait_for(lambda: len(containers(engine, "web", running=False)) == 0, what="no container")
    assert "web" not in check(m.cli("service", "ls")).out
    # a service answering HTTP, its logs, and worker refusal
    check(create(m, "hello", "--replicas", "1",
                 command=["sh", "-c", "echo hello-from-task; exec httpd -f -p 127.0.0.1:18181 -h /etc"]))
    body = wait_for(lambda: urllib.request.urlopen("http://127.0.0.1:18181/passwd", timeout=2).read(),
                    what="an HTTP answer")
    assert b"root" in body
    logs = check(m.cli("service", "logs", "hello")).out
    assert "hello.1" in logs and "hello-from-task" in logs
    result = workers[0].cli("service", "ls")
    assert result.code != 0 and NOT_A_MANAGER_MESSAGE in result.err


def test_strategies(docker_cluster, engine):
    managers, workers = docker_cluster.form(1, 3, extra_args=["--resources", "cpus=2,memory=1G"])
    m = managers[0]
    check(m.cli("node", "update", "--availability", "drain", "node1"))
    check(create(m, "spread6", "--replicas", "6"))
    assert sorted(per_node(m, "spread6").values()) == [2, 2, 2]
    check(m.cli("service", "rm", "spread6"))
    check(create(m, "pack", "--replicas", "4", "--placement-strategy", "binpack", "--reserve-memory", "300M"))
    counts = per_node(m, "pack")
    assert sorted(counts.values()) == [1, 3], counts  # 3 x 300M fill one 1G node before the next is used
    check(m.cli("service", "rm", "pack"))
    used = set()
    for run in range(3):
        check(create(m, f"rnd{run}", "--replicas", "4", "--placement-strategy", "random"))
        used |= set(per_node(m, f"rnd{run}"))
        check(m.cli("service", "rm", f"rnd{run}"))
    assert len(used) >= 2
    # the cluster default strategy applies when a service names none
    check(m.cli("swarm", "update", "--default-strategy", "binpack"))
    check(create(m, "dflt", "--replicas", "2", "--reserve-memory", "300M"))
    assert sorted(per_node(m, "dflt").values()) == [2]


def test_constraints_max_replicas_and_pending(docker_cluster, engine):
    managers, workers = docker_cluster.form(1, 2)
    m = managers[0]
    check(create(m, "eu", "--detach", "--constraint", "node.labels.zone==eu"))
    reason = wait_for(lambda: [t["status"]["message"] for t in live(m, "eu")
                               if t["status"]["message"].startswith("no suitable node")], what="a pending reason")
    assert reason == ["no suitable node (constraint not satisfied on 3 nodes)"]
    ps = check(m.cli("service", "ps", "--no-trunc", "eu")).out
    assert "Pending" in ps and "constraint not satisfied on 3 nodes" in ps
    check(m.cli("node", "update", "--label-add", "zone=eu", "node3"))
    wait_for(lambda: per_node(m, "eu") == {"node3": 1}, what="eu task running on node3")
    check(create(m, "onepernode", "--detach", "--replicas", "4", "--replicas-max-per-node", "1"))
    wait_for(lambda: sum(per_node(m, "onepernode").values()) == 3, what="3 running")
    pending = [t for t in live(m, "onepernode") if t["status"]["state"] == "pending"]
    assert len(pending) == 1
    assert "max replicas per node limit exceeded on 3 nodes" in pending[0]["status"]["message"]
    assert max(per_node(m, "onepernode").values()) == 1
    # engine labels and node.role constraints
    check(create(m, "mgr", "--constraint", "node.role==manager", "--replicas", "2"))
    assert per_node(m, "mgr") == {"node1": 2}


def test_drain_and_node_failure(docker_cluster, engine):
    managers, workers = docker_cluster.form(1, 3)
    m = managers[0]
    check(m.cli("node", "update", "--availability", "drain", "node1"))
    check(create(m, "app", "--replicas", "3"))
    assert sorted(per_node(m, "app")) == ["node2", "node3", "node4"]
    check(m.cli("node", "update", "--availability", "drain", "node2"))
    wait_for(lambda: sum(per_node(m, "app").values()) == 3 and "node2" not in per_node(m, "app"),
             what="tasks moved off node2")
    wait_for(lambda: len(containers(engine, "app", running=False)) == 3, what="node2's container removed")
    check(m.cli("node", "update", "--availability", "active", "node2"))
    victim = workers[2]  # node4
    had = per_node(m, "app").get("node4", 0)
    assert had >= 1
    victim.kill()
    killed = time.monotonic()
    wait_for(lambda: sum(per_node(m, "app").values()) == 3 and "node4" not in per_node(m, "app"), timeout=10,
             what="tasks re-created elsewhere")
    assert time.monotonic() - killed < 3 * victim.heartbeat + 3
    victim.start()
    wait_for(lambda: {n["description"]["hostname"]: n["status"]["state"] for n in nodes_json(m)}["node4"] == "ready",
             what="node4 back")
    # no slot has two live tasks, and the engine runs exactly 3 containers once node4 cleaned up
    wait_for(lambda: len(containers(engine, "app", running=False)) == 3, timeout=15, what="3 containers")
    slots = collections.Counter(t["slot"] for t in live(m, "app"))
    assert set(slots.values()) == {1} and len(slots) == 3


def test_global_service_follows_nodes(docker_cluster, engine):
    managers, workers = docker_cluster.form(1, 2)
    m = managers[0]
    check(create(m, "agent", "--mode", "global"))
    assert sorted(per_node(m, "agent")) == ["node1", "node2", "node3"]
    docker_cluster.join(4)
    wait_for(lambda: sorted(per_node(m, "agent")) == ["node1", "node2", "node3", "node4"], what="task on node4")
    check(m.cli("node", "update", "--availability", "drain", "node2"))
    wait_for(lambda: sorted(per_node(m, "agent")) == ["node1", "node3", "node4"], what="drained node2")
    assert len(containers(engine, "agent")) == 3


def test_agent_restart_and_leader_kill(docker_cluster, engine):
    docker_cluster.heartbeat = 2.0  # a quick restart must not look like a node failure (Down after 6 s)
    managers, workers = docker_cluster.form(3, 2)
    m = managers[0]
    for d in managers:  # tasks on workers only: a killed manager's containers would outlive it in the engine
        check(m.cli("node", "update", "--availability", "drain", d.name))
    check(create(m, "steady", "--replicas", "4"))
    before = sorted(c.id for c in containers(engine, "steady"))
    for d in [workers[0], managers[1], workers[1]]:
        started = time.monotonic()
        d.stop()
        d.start()
        assert time.monotonic() - started < 3 * d.heartbeat
    time.sleep(3)
    assert sorted(c.id for c in containers(engine, "steady")) == before
    assert all(t["status"]["state"] == "running" for t in live(m, "steady"))
    # kill the leader while a scale-up is under way
    check(m.cli("service", "scale", "--detach", "steady=8"))
    leader = next(d for d in managers if d.info()["raft"]["is_leader"])
    leader.kill()
    other = next(d for d in managers if d is not leader)
    wait_for(lambda: sum(per_node(other, "steady").values()) == 8, timeout=30, what="8 running")
    wait_for(lambda: len(containers(engine, "steady", running=False)) == 8, timeout=10, what="8 containers")
    time.sleep(2)
    assert len(containers(engine, "steady", running=False)) == 8
    assert len(live(other, "steady")) == 8
    assert not [t for t in tasks(other, "steady") if t["status"]["state"] == "failed"]


def test_bad_service_input(docker_cluster, engine):
    managers, _ = docker_cluster.form(1, 1)
    m = managers[0]

    def refused(result, needle):
        assert result.code != 0, result
        assert needle in result.err, result.err
        assert "Traceback" not in result.err

    refused(create(m, "ghost", image="no-such-image:1"), "image no-such-image:1 not found on any node")
    refused(create(m, "badc", "--constraint", "node.labels.zone=eu"), "invalid constraint")
    refused(create(m, "neg", "--replicas", "-1"), "replicas")
    check(create(m, "dup"))
    refused(create(m, "dup"), "already exists")
    refused(m.cli("service", "ps", "nope"), "service nope not found")
    refused(m.cli("service", "rm", "nope"), "service nope not found")
    refused(m.cli("service", "scale", "nope=2"), "service nope not found")
    refused(m.cli("service", "scale", "dup=x"), "invalid")
    refused(m.cli("service", "update", "--image", "no-such-image:1", "dup"), "not found on any node")
    names = [s["spec"]["name"] for s in check(m.cli("service", "ls", "--format", "json")).json()]
    assert names == ["dup"]
    assert check(m.cli("service", "inspect", "dup")).json()["spec"]["task"]["image"] == IMAGE
    assert len(containers(engine, "dup")) == 1


def test_healthchecks(docker_cluster, engine):
    """Docker's semantics end to end: starting until healthy, an unhealthy task fails and is replaced."""
    managers, _ = docker_cluster.form(1, 0)
    m = managers[0]
    began = time.monotonic()
    out = check(create(m, "hc", "--health-cmd", "test -f /tmp/ok", "--health-interval", "500ms",
                       "--health-start-period", "30s", command=["sh", "-c", "sleep 3; touch /tmp/ok; exec sleep 3600"])).out
    assert "verify: Service converged" in out and time.monotonic() - began >= 3  # running only once healthy
    status = live(m, "hc")[0]["status"]
    assert (status["state"], status["health"]) == ("running", "healthy")
    health = check(m.cli("service", "inspect", "hc")).json()["spec"]["task"]["healthcheck"]
    assert health == {"test": ["CMD-SHELL", "test -f /tmp/ok"], "interval": 0.5, "timeout": 30.0, "retries": 3,
                      "start_period": 30.0, "start_interval": 5.0}

    check(create(m, "slow", "-d", "--health-cmd", "test -f /tmp/ok", "--health-interval", "500ms",
                 "--health-start-period", "60s", command=SLEEP))
    wait_for(lambda: [t["status"].get("health") for t in live(m, "slow")] == ["starting"], what="a starting task")
    assert "Starting" in check(m.cli("service", "ps", "slow")).out

    check(create(m, "sick", "-d", "--health-cmd", "echo sick; exit 1", "--health-interval", "300ms",
                 "--health-retries", "1", "--restart-delay", "0s", command=SLEEP))
    wait_for(lambda: [t for t in tasks(m, "sick") if t["status"]["state"] == "failed"], timeout=30, what="a failure")
    failed = [t for t in tasks(m, "sick") if t["status"]["state"] == "failed"][0]["status"]
    assert (failed["err"], failed["health"], failed["health_output"]) == ("unhealthy container", "unhealthy", "sick")
    assert '"unhealthy container (last health check: sick)"' in check(m.cli("service", "ps", "--no-trunc", "sick")).out
    assert '"unhealthy container"' in check(m.cli("service", "ps", "sick")).out
    wait_for(lambda: len(tasks(m, "sick")) >= 2, timeout=30, what="a replacement task")

    check(m.cli("service", "update", "-d", "--no-healthcheck", "sick"))
    assert check(m.cli("service", "inspect", "sick")).json()["spec"]["task"]["healthcheck"]["test"] == ["NONE"]
    wait_for(lambda: [t["status"]["state"] for t in live(m, "sick")] == ["running"], timeout=30, what="sick runs")
    result = m.cli("service", "update", "--no-healthcheck", "--health-retries", "2", "sick")
    assert result.code != 0 and result.err == "Error: --no-healthcheck conflicts with --health-* options\n"

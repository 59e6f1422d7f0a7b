"""Partitions: 5 rounds that cut the leader off from the other managers with nftables, under load, with a
replicated service running on the private Docker engine.

In each round: the minority leader must stop accepting writes within its fallback timeout
(leaderFallbackTimeout, 2 s), and the majority must elect a new leader and go on. After the last heal
every manager must hold the same records. The history must be linearizable. No slot may have two
running tasks, neither in the store nor among the engine's containers."""

import json
import time
from collections import Counter

import docker
import pytest

from tests.faults import scenario
from tests.faults.load import Lost, NotSent, request
from tests.integration.harness import check

ROUNDS = 5
HOLD = 10.0              # seconds each partition lasts
FALLBACK = 2.0           # state/raft.py: leaderFallbackTimeout
FALLBACK_SLACK = 1.0     # polling, and a loaded 2-core machine
REPLICAS = 3
SERVICE = "faultweb"


def records(d) -> str | None:
    """This manager's nodes, services and tasks as one canonical string (None: no answer)."""
    out = {}
    for path in ("/v1/nodes", "/v1/services", "/v1/tasks"):
        try:
            status, data = request(d.socket, "GET", path, timeout=5.0)
        except (NotSent, Lost):
            return None
        if status != 200:
            return None
        if path == "/v1/nodes":  # manager_status is this replica's live view of Raft, not a record
            data = [{k: v for k, v in n.items() if k != "manager_status"} for n in data]
        if path == "/v1/services":  # replicas_status counts tasks: derived from the records compared below
            data = [{k: v for k, v in s.items() if k != "replicas_status"} for s in data]
        out[path] = data
    return json.dumps(out, sort_keys=True)


def wait_same_records(managers, timeout: float = 30.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        views = [records(d) for d in managers]
        if None not in views and len(set(views)) == 1:
            return time.monotonic() - start
        time.sleep(0.3)
    raise AssertionError(f"the managers' records did not converge within {timeout}s")


def slots(engine, manager) -> tuple[Counter, Counter]:
    """Running tasks per slot: (among the engine's containers, in the store as one manager shows it)."""
    containers = engine.containers.list(filters={"label": f"swarmctl.service.name={SERVICE}", "status": "running"})
    in_engine = Counter(c.labels.get("swarmctl.task.slot") for c in containers)
    status, tasks = request(manager.socket, "GET", "/v1/tasks", timeout=5.0)
    in_store = Counter(str(t["slot"]) for t in (tasks if status == 200 else [])
                       if t["service_name"] == SERVICE and t["status"]["state"] == "running")
    return in_engine, in_store


def one_per_slot(counter: Counter) -> bool:
    return sorted(counter) == [str(i) for i in range(1, REPLICAS + 1)] and set(counter.values()) == {1}


@pytest.mark.faults_cluster(managers=3, docker=True, network=True)
def test_partitioned_leader_under_load(cluster, figures, docker_engine):
    m = cluster.managers[0]
    check(m.cli("service", "create", "--name", SERVICE, "--replicas", str(REPLICAS), "--stop-grace-period", "0s",
                cluster.image, "sleep", "3600", timeout=120))
    run = scenario.start(cluster, clients=8, timeout=12.0, duration=110)
    rounds = []
    try:
        time.sleep(1.0)
        for _ in range(ROUNDS):
            rounds.append(scenario.partition_round(run, cluster, HOLD))
            time.sleep(2.0)
    finally:
        scenario.finish(run, cluster, name="partitions")
    outcomes = [scenario.partition_outcome(run, r, FALLBACK, FALLBACK_SLACK) for r in rounds]
    try:
        same_after = wait_same_records(cluster.managers)
    except AssertionError as exc:
        same_after = None
        run.problems.append(str(exc))
    engine = docker.DockerClient(base_url=docker_engine)
    deadline = time.monotonic() + 60  # the cut-off agent stops its stale container once it hears a manager again
    try:
        while time.monotonic() < deadline:
            in_engine, in_store = slots(engine, cluster.managers[0])
            if one_per_slot(in_engine) and one_per_slot(in_store):
                break
            time.sleep(0.5)
    finally:
        engine.close()
    fmt = lambda xs: ", ".join("-" if x is None else f"{x:.2f}" for x in xs)  # noqa: E731
    figures(f"{len(rounds)} partitions of {HOLD:.0f} s; {scenario.summary(run)}")
    figures(f"minority leader stepped down after [{fmt(r['stepped_down'] for r in rounds)}] s; its last acknowledged "
            f"write (answered during the partition) was invoked at [{fmt(o['last_minority_ack'] for o in outcomes)}] s; "
            f"its first error answer came at [{fmt(o['first_minority_error'] for o in outcomes)}] s; the majority "
            f"elected after [{fmt(r['elected'] for r in rounds)}] s and acknowledged a write after "
            f"[{fmt(o['first_majority_ack'] for o in outcomes)}] s (all from the split)")
    figures(f"records identical on every manager {'after ' + format(same_after, '.2f') + ' s' if same_after is not None else 'never'}; "
            f"running per slot: engine {dict(in_engine)}, store {dict(in_store)}; errors: {scenario.errors(run)}")
    if not one_per_slot(in_engine) or not one_per_slot(in_store):
        run.problems.append(f"after healing, slots do not have exactly one running task each: "
                            f"engine {dict(in_engine)}, store {dict(in_store)}")
    if len(rounds) < ROUNDS:
        run.problems.append(f"only {len(rounds)} of {ROUNDS} partitions")
    run.fail_if_problems()

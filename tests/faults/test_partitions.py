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
from tests.faults.linearizability import OK, WRITE
from tests.faults.load import Lost, NotSent, info, request
from tests.faults.nemesis import leader_of
from tests.integration.harness import check

ROUNDS = 5
HOLD = 8.0               # seconds each partition lasts
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
    engine = docker.DockerClient(base_url=docker_engine)
    net = cluster.network
    run = scenario.start(cluster, clients=8, timeout=12.0, duration=110)
    rounds = []
    try:
        time.sleep(1.0)
        for _ in range(ROUNDS):
            leader = leader_of(cluster.managers, timeout=15)
            others = [d for d in cluster.managers if d is not leader]
            run.load.faulty.add(leader.name)
            split = net.split([leader], others)
            stepped_down = elected = None
            while time.monotonic() - split < HOLD:
                now = time.monotonic()
                if stepped_down is None:
                    answer = info(leader, timeout=0.5)
                    if answer is not None and not (answer.get("raft") or {}).get("is_leader"):
                        stepped_down = now - split
                if elected is None:
                    try:
                        leader_of(others, timeout=0.2)
                        elected = time.monotonic() - split
                    except AssertionError:
                        pass
                time.sleep(0.05)
            healed = net.heal()
            run.load.faulty.discard(leader.name)
            rounds.append(dict(leader=leader, split=split, healed=healed, stepped_down=stepped_down, elected=elected))
            scenario.wait_following(leader, cluster.managers, timeout=20)
            time.sleep(2.0)
    finally:
        scenario.finish(run, cluster)
    ops = run.history.snapshot()
    minority_acks, first_refusals, majority_first = [], [], []
    for r in rounds:
        name, split, healed = r["leader"].name, r["split"], r["healed"]
        # writes sent to the cut-off manager during the partition; an answer after the heal proves nothing
        mine = [op for op in ops if op.kind == WRITE and op.node == name and split <= op.invoke < healed]
        acked = [op.invoke - split for op in mine if op.status == OK and op.complete < healed]
        minority_acks.append(max(acked) if acked else None)
        refused = [op.answered - split for op in mine if op.status != OK and op.answered < healed]
        first_refusals.append(min(refused) if refused else None)
        theirs = [op.complete - split for op in ops if op.kind == WRITE and op.status == OK and op.node != name
                  and split <= op.invoke and op.complete < healed]
        majority_first.append(min(theirs) if theirs else None)
        down = r["stepped_down"]
        if down is None or down > FALLBACK + FALLBACK_SLACK:
            when = "through the whole partition" if down is None else f"for {down:.2f} s"
            run.problems.append(f"the minority leader {name} claimed leadership {when} (fallback timeout {FALLBACK} s)")
        late = [t for t in acked if t > FALLBACK]
        if late:
            run.problems.append(f"the minority leader {name} acknowledged writes invoked {max(late):.2f} s after "
                                f"the partition began (fallback timeout {FALLBACK} s)")
        if r["elected"] is None or majority_first[-1] is None:
            run.problems.append(f"the majority did not elect a leader and go on while {name} was cut off")
    try:
        same_after = wait_same_records(cluster.managers)
    except AssertionError as exc:
        same_after = None
        run.problems.append(str(exc))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        in_engine, in_store = slots(engine, cluster.managers[0])
        if one_per_slot(in_engine) and one_per_slot(in_store):
            break
        time.sleep(0.5)
    engine.close()
    fmt = lambda xs: ", ".join("-" if x is None else f"{x:.2f}" for x in xs)  # noqa: E731
    figures(f"{len(rounds)} partitions of {HOLD:.0f} s; {scenario.summary(run)}")
    figures(f"minority leader stepped down after [{fmt(r['stepped_down'] for r in rounds)}] s; its last acknowledged "
            f"write (answered during the partition) was invoked at [{fmt(minority_acks)}] s; its first error "
            f"answer came at [{fmt(first_refusals)}] s; "
            f"the majority elected after [{fmt(r['elected'] for r in rounds)}] s and acknowledged a write after "
            f"[{fmt(majority_first)}] s (all from the split)")
    figures(f"records identical on every manager {'after ' + format(same_after, '.2f') + ' s' if same_after is not None else 'never'}; "
            f"running per slot: engine {dict(in_engine)}, store {dict(in_store)}; errors: {scenario.errors(run)}")
    if not one_per_slot(in_engine) or not one_per_slot(in_store):
        run.problems.append(f"after healing, slots do not have exactly one running task each: "
                            f"engine {dict(in_engine)}, store {dict(in_store)}")
    if len(rounds) < ROUNDS:
        run.problems.append(f"only {len(rounds)} of {ROUNDS} partitions")
    run.fail_if_problems()

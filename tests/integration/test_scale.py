"""The short version of bench/scale.py, in CI: 200 hollow nodes and 10,000 tasks converge on 3 real managers, no
node of a live process is ever marked Down, and no manager's event loop stalls for more than 0.5 s.

Hollow nodes have real ids, certificates, mTLS sessions, heartbeats and status reports; only their container
runtime is simulated (the stand-in of swarmctl/runtime/simulated.py). Managers are drained, so every task runs on a
hollow node. Every process started here is stopped at the end.
"""

from __future__ import annotations

import os
import tempfile

import pytest

from tests.integration.harness import Cluster, check, wait_for
from tests.integration.scale import Hollow, Watch, api, leader_of, node_states, ready_count, running_total

NODES = int(os.environ.get("SWARMCTL_SCALE_NODES", "200"))
PER_PROCESS = 100
SERVICES = 5
TASKS = int(os.environ.get("SWARMCTL_SCALE_TASKS", "10000"))
STALL = 0.5

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def scale_cluster():
    root = tempfile.mkdtemp(prefix="swarmctl-scale-test-")
    cluster = Cluster(root, heartbeat=1.0)
    hollows: list[Hollow] = []
    try:
        managers, _ = cluster.form(managers=3, workers=0)
        for m in managers:
            check(managers[0].cli("node", "update", "--availability", "drain", m.name))
        token = check(managers[0].cli("swarm", "join-token", "-q", "worker")).out.strip()
        for i in range(NODES // PER_PROCESS):
            h = Hollow(root, i + 1, PER_PROCESS, managers[i % 3].addr, token)
            h.start()
            hollows.append(h)
        yield managers, hollows
    finally:
        for h in hollows:
            h.stop()
        cluster.stop_all()


def test_200_hollow_nodes_run_10000_tasks_without_false_down_or_stall(scale_cluster):
    managers, hollows = scale_cluster
    try:
        wait_for(lambda: ready_count(managers[0]) >= NODES, timeout=180, interval=1, what=f"{NODES} nodes Ready")
    except AssertionError:
        raise AssertionError("hollow nodes did not all become Ready:\n" + "\n".join(h.tail() for h in hollows))
    watch = Watch(managers, hollows, interval=1.0, limit=500).start()
    try:
        leader = leader_of(managers)
        for i in range(SERVICES):
            api(leader, 120).post("/v1/services", {"name": f"scale{i}", "replicas": TASKS // SERVICES,
                                                   "task": {"image": "busybox", "args": ["sleep", "1d"]}})
        wait_for(lambda: running_total(leader) == (TASKS, TASKS), timeout=300, interval=1,
                 what=f"{TASKS} tasks running")
        # every hollow node still Ready, and the tasks spread over them
        states = node_states(leader)
        assert sum(1 for h, (_i, s, _a) in states.items() if h.startswith("hollow") and s == "ready") == NODES
        tasks = api(leader, 120).get("/v1/tasks?filter=desired-state%3Drunning")
        per_node: dict[str, int] = {}
        for t in tasks:
            per_node[t["node_name"]] = per_node.get(t["node_name"], 0) + 1
        idle = sorted(h for h, (_i, s, _a) in states.items() if h.startswith("hollow") and h not in per_node)
        assert not idle, f"{len(idle)} Ready nodes got no task: {idle[:10]}; " + \
            str([n for n in api(leader).get("/v1/nodes") if n["description"]["hostname"] in idle[:2]])
        assert max(per_node.values()) - min(per_node.values()) <= 1, per_node
        # the server applies filters: one node's tasks only
        one = sorted(per_node)[0]
        mine = api(leader, 60).get(f"/v1/tasks?filter=node%3D{one}&filter=desired-state%3Drunning")
        assert len(mine) == per_node[one] and {t["node_name"] for t in mine} == {one}
    finally:
        watch.stop()
    assert not watch.false_down, f"nodes of live processes marked Down: {sorted(watch.false_down)[:10]}"
    worst = max(watch.worst_lag.values(), default=0.0)
    assert worst <= STALL and not any(watch.stalls.values()), \
        f"a manager's event loop stalled: worst lag {worst:.2f}s, stalls {watch.stalls}"
    assert watch.worst_lag, "the loop-lag probe was never read"
    wall, _cpu, where = watch.worst_held()
    assert watch.held, "no manager reported its planning steps (GET /v1/info loop_held)"
    assert wall <= STALL, f"a planning step held {where}'s event loop for {wall:.2f}s"

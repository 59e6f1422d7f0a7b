"""Leader kills under load: kill -9 of the current leader at least 20 times, under 8 clients that write
and read node labels on random managers. Every op is recorded and the history is checked per key: no
acknowledged write lost, none applied twice, no read going back in time."""

import time

import pytest

from tests.faults import scenario
from tests.faults.load import first_ok_write_after

KILLS = 20
BUDGET = 85.0  # seconds for the kill loop; the whole test stays under 2 minutes


@pytest.mark.faults_cluster(managers=3)
def test_leader_kills_under_load(cluster, figures):
    run = scenario.start(cluster, clients=8, timeout=8.0, duration=BUDGET + 20)
    deadline = time.monotonic() + BUDGET
    kills, elections = [], []
    try:
        time.sleep(1.0)
        while len(kills) < KILLS and time.monotonic() < deadline:
            leader = run.nemesis.leader(timeout=10)
            kill = run.nemesis.kill(leader)
            survivors = [m for m in cluster.managers if m is not leader]
            new_leader = run.nemesis.leader(timeout=10)
            elections.append(time.monotonic() - kill.at)
            assert new_leader in survivors
            time.sleep(0.5)  # the cluster runs on two managers for a while
            run.nemesis.restart(leader)
            kills.append(kill)
            time.sleep(0.5)
    finally:
        scenario.finish(run, cluster)
    first_writes = [first_ok_write_after(run.history, k.at) for k in kills]
    rejoins = [e.detail["rejoin_s"] for e in run.nemesis.events if e.kind == "restart"]
    figures(f"{len(kills)} leader kills; {scenario.summary(run)}")
    figures(f"new leader seen after {scenario.spread(elections)}; first acknowledged write after a kill "
            f"{scenario.spread([t for t in first_writes if t is not None])}; killed daemon back and "
            f"followed after {scenario.spread(rejoins)}")
    figures(f"errors: {scenario.errors(run)}")
    if len(kills) < KILLS:
        run.problems.append(f"only {len(kills)} of {KILLS} leader kills within {BUDGET:.0f} s")
    missing = [i for i, t in enumerate(first_writes) if t is None]
    if missing:
        run.problems.append(f"no write was acknowledged after kills {missing}")
    run.fail_if_problems()

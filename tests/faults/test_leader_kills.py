"""Leader kills under load: kill -9 of the current leader at least 20 times, under 8 clients that write
and read node labels on random managers. Every op is recorded and the history is checked per key: no
acknowledged write lost, none applied twice, no read going back in time."""

import time

import pytest

from tests.faults import scenario
from tests.faults.load import first_ok_write_after

KILLS = 20
BUDGET = 90.0  # seconds for the kill loop; the whole test stays under 2 minutes


@pytest.mark.faults_cluster(managers=3)
def test_leader_kills_under_load(cluster, figures):
    run = scenario.start(cluster, clients=8, timeout=8.0, duration=BUDGET + 20)
    deadline = time.monotonic() + BUDGET
    kills = []
    try:
        time.sleep(1.0)
        while len(kills) < KILLS and time.monotonic() < deadline:
            kills.append(scenario.kill_round(run, cluster))
            time.sleep(0.3)
    finally:
        scenario.finish(run, cluster, name="leader_kills")
    first_writes = [first_ok_write_after(run.history, k["at"]) for k in kills]
    figures(f"{len(kills)} leader kills; {scenario.summary(run)}")
    figures(f"new leader seen after {scenario.spread([k['elected'] for k in kills])}; first acknowledged write "
            f"after a kill {scenario.spread([t for t in first_writes if t is not None])}; killed daemon back and "
            f"followed after {scenario.spread([k['rejoin'] for k in kills])}")
    figures(f"errors: {scenario.errors(run)}")
    if len(kills) < KILLS:
        run.problems.append(f"only {len(kills)} of {KILLS} leader kills within {BUDGET:.0f} s")
    missing = [i for i, t in enumerate(first_writes) if t is None]
    if missing:
        run.problems.append(f"no write was acknowledged after kills {missing}")
    run.fail_if_problems()

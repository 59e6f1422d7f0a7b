"""Pauses: SIGSTOP of the leader for 3-10 s, then SIGCONT, 5 times, under the same load as the kills.

While it is stopped, the others elect a new leader. When it continues, the old leader still believes it
leads for a moment, and it finds the requests that queued on its socket. Half of the clients wait for
it (their timeout is longer than the pause), so each request it answers is recorded with its true
outcome. A split brain shows in the history: a write that the old leader acknowledged in its old term
and that the new term overwrote or never had is lost, or reads go back in time."""

import time

import pytest

from tests.faults import scenario
from tests.faults.linearizability import OK, WRITE

PAUSES = [3.0, 10.0, 5.0, 8.0, 4.0]  # seconds, deterministic; 30 s in all
BUDGET = 85.0


@pytest.mark.faults_cluster(managers=3)
def test_leader_pauses_under_load(cluster, figures):
    run = scenario.start(cluster, clients=8, timeout=15.0, duration=BUDGET + 25)
    deadline = time.monotonic() + BUDGET
    pauses = []
    try:
        time.sleep(1.0)
        for seconds in PAUSES:
            if time.monotonic() + seconds > deadline:
                break
            pauses.append(scenario.pause_round(run, cluster, seconds))
            time.sleep(1.5)
    finally:
        scenario.finish(run, cluster, name="pauses")
    ops = run.history.snapshot()
    late_acks = 0  # writes the paused manager acknowledged after it continued, for requests sent while it was stopped
    for p in pauses:
        late_acks += sum(1 for op in ops if op.kind == WRITE and op.status == OK and op.node == p["node"]
                         and p["at"] <= op.invoke < p["resumed"] and op.complete >= p["resumed"])
    lengths = ", ".join(f"{p['seconds']:.0f}" for p in pauses)
    figures(f"{len(pauses)} pauses of {lengths} s; {scenario.summary(run)}")
    figures(f"writes sent to a stopped leader and acknowledged after it continued: {late_acks}; "
            f"errors: {scenario.errors(run)}")
    if len(pauses) < len(PAUSES):
        run.problems.append(f"only {len(pauses)} of {len(PAUSES)} pauses within {BUDGET:.0f} s")
    run.fail_if_problems()

"""Stale reads: a write acknowledged on manager A, then at once a read on manager B, must see the write.
200 rounds. A and B rotate over the three managers. Five times B is restarted just before its round
(kill -9 and SIGTERM in turn), and it is read as soon as its socket answers."""

import signal
import time

import pytest

from tests.faults.linearizability import OK, READ, WRITE, History, check_history
from tests.faults.load import Keyspace, Load, info, node_id_of
from tests.faults.nemesis import wait_following

ROUNDS = 200
RESTARTS = {20, 60, 100, 140, 180}  # B restarts just before these rounds
KEY = "stale.0.0"  # Keyspace([node], 1, "stale") has this one key


def wait_answering(daemon, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if info(daemon, timeout=1.0) is not None:
            return
        time.sleep(0.02)
    raise AssertionError(f"{daemon.name} did not answer within {timeout}s\n{daemon.tail()}")


@pytest.mark.faults_cluster(managers=3)
def test_read_on_another_manager_sees_the_write(cluster, figures):
    managers = cluster.managers
    node_id = node_id_of(managers[0])
    history = History()
    keyspace = Keyspace([node_id], keys_per_record=1, prefix="stale")
    assert list(keyspace.keys) == [KEY]
    client = Load(history, managers, keyspace, clients=0, timeout=8.0)  # used for its recorded requests only
    stale, stale_after_restart, refused_reads = [], [], 0
    start = time.monotonic()
    for r in range(ROUNDS):
        a, b = managers[r % 3], managers[(r + 1) % 3]
        restarted = r in RESTARTS
        if restarted:
            b.stop(signal.SIGKILL if sorted(RESTARTS).index(r) % 2 == 0 else signal.SIGTERM)
            b.start(wait=False)
            wait_answering(b)
        value, acked = None, False
        for attempt in range(100):  # bounded: a leader is elected within a few seconds
            value = f"{r}.{attempt}"
            if client.write(0, a, KEY, value) == OK:
                acked = True
                break
            time.sleep(0.1)
        assert acked, f"round {r}: no write was acknowledged on {a.name}"
        for _ in range(50):  # a refused read is not a stale one; retry it (bounded)
            if client.read(1, b, node_id) == OK:
                break
            refused_reads += 1
            time.sleep(0.05)
        else:
            raise AssertionError(f"round {r}: {b.name} refused every read")
        seen = next(op for op in reversed(history.ops) if op.kind == READ and op.status == OK).value
        if seen != value:
            (stale_after_restart if restarted else stale).append(f"round {r}: wrote {value} on {a.name}, "
                                                               f"{b.name} read {seen}")
        if restarted:
            wait_following(b, managers, timeout=20)
    elapsed = time.monotonic() - start
    report = check_history(history.snapshot(), t0=history.t0)
    writes = sum(1 for op in history.ops if op.kind == WRITE and op.status == OK)
    figures(f"{ROUNDS} rounds in {elapsed:.1f} s ({writes} acknowledged writes, {refused_reads} refused reads): "
            f"stale {len(stale)} of {ROUNDS - len(RESTARTS)} ordinary rounds and {len(stale_after_restart)} of "
            f"{len(RESTARTS)} rounds just after a restart; history linearizable: {report.ok}")
    problems = []
    if stale or stale_after_restart:
        problems.append(f"{len(stale) + len(stale_after_restart)} stale reads: "
                        + "; ".join((stale_after_restart + stale)[:8]))
    if not report.ok:
        problems.append(report.summary())
    assert not problems, "\n".join(problems)

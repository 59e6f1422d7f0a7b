"""The shared shape of the load-and-fault scenarios: start the load, run a nemesis, make the cluster whole
again, read everything back on every manager, and check the history per key.

A scenario collects its problems in a list and fails once with all of them. A run on a build that breaks
several guarantees then shows every broken one, with its figures.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field

from tests.faults.linearizability import OK, READ, WRITE, History, Report, check_history, stale_reads
from tests.faults.load import Keyspace, Load, final_reads, info, node_id_of, wait_converged
from tests.faults.nemesis import Nemesis, leader_of, wait_following


@dataclass
class Run:
    history: History
    load: Load
    nemesis: Nemesis
    problems: list[str] = field(default_factory=list)
    report: Report | None = None
    durable: Report | None = None     # the writes and the final reads only: lost or repeated writes
    stale: int = 0                    # reads the quick rules refute
    converge_s: float | None = None

    def fail_if_problems(self) -> None:
        assert not self.problems, "\n".join(self.problems)


FINAL = 99  # the process id of the final reads


def start(cluster, clients: int = 8, timeout: float = 8.0, duration: float = 110.0, seed: int = 1,
          keys_per_record: int = 8, prefix: str = "fault") -> Run:
    managers = cluster.managers
    records = [node_id_of(m) for m in managers]
    history = History()
    load = Load(history, managers, Keyspace(records, keys_per_record, prefix), clients=clients, timeout=timeout,
                duration=duration, seed=seed)
    nemesis = Nemesis(managers, load)
    load.start()
    return Run(history, load, nemesis)


def finish(run: Run, cluster, settle: float = 1.0, name: str = "history") -> Run:
    """Stop the load, make sure every manager runs and follows, converge, read back, check."""
    time.sleep(settle)
    run.load.stop()
    for d in cluster.managers:
        if not d.running:
            d.start(wait=False)
    if cluster.network is not None:
        cluster.network.heal()
    for d in cluster.managers:
        try:
            wait_following(d, cluster.managers, timeout=30)
        except AssertionError as exc:
            run.problems.append(f"after the faults: {exc}")
    try:
        run.converge_s = wait_converged(cluster.managers, run.load.keyspace.records, timeout=30)
    except AssertionError as exc:
        run.problems.append(str(exc))
    final_reads(run.load, process=FINAL)
    if os.environ.get("SWARMCTL_FAULTS_HISTORY_DIR"):  # keep the history for a closer look
        run.history.dump(os.path.join(os.environ["SWARMCTL_FAULTS_HISTORY_DIR"], f"{name}.jsonl"))
    ops = run.history.snapshot()
    run.report = check_history(ops, t0=run.history.t0)
    run.stale = stale_reads(ops)
    # The same writes against the final reads alone tell a lost or repeated write from a stale read.
    run.durable = check_history([op for op in ops if op.kind == WRITE or op.process == FINAL], t0=run.history.t0)
    if not run.durable.ok:
        run.problems.append("acknowledged writes lost or applied twice (writes against the final reads): "
                            + run.durable.summary())
    if not run.report.ok:
        run.problems.append(f"history is not linearizable ({run.stale} stale reads): " + run.report.summary())
    internal = run.load.internal_errors()
    if internal:
        run.problems.append(f"{internal} answers were HTTP 500 (internal error)")
    acked = run.load.statuses[WRITE, OK]
    if acked < 100:
        run.problems.append(f"only {acked} writes were acknowledged: the load did not run")
    return run


# ---- one fault each: the CI tests run a few, bench/fault_soak.py runs many, mixed ----------------------
def kill_round(run: Run, cluster) -> dict:
    """kill -9 of the leader; restart it once a new leader is seen, and wait until it follows."""
    leader = run.nemesis.leader(timeout=10)
    kill = run.nemesis.kill(leader)
    new_leader = run.nemesis.leader(timeout=10)
    elected = time.monotonic() - kill.at
    if new_leader is leader:
        run.problems.append(f"{leader.name} was killed and still leads")
    restart = run.nemesis.restart(leader)  # two managers serve while it starts (a second or more)
    return dict(kind="kill", node=leader.name, at=kill.at, elected=elected, rejoin=restart.detail["rejoin_s"])


def pause_round(run: Run, cluster, seconds: float) -> dict:
    """SIGSTOP of the leader for `seconds`, then SIGCONT; wait until it follows a leader again."""
    leader = run.nemesis.leader(timeout=15)
    event = run.nemesis.pause(leader, seconds)
    resumed = time.monotonic()
    new_leader = run.nemesis.leader(timeout=10)
    if new_leader is leader:
        run.problems.append(f"{leader.name} was stopped for {seconds:.1f} s and still leads after it continued")
    wait_following(leader, cluster.managers, timeout=20)
    return dict(kind="pause", node=leader.name, at=event.at, resumed=resumed, seconds=seconds)


def partition_round(run: Run, cluster, hold: float) -> dict:
    """Cut the leader off from the other managers for `hold` seconds; watch it step down and the majority
    elect; heal; wait until it follows again."""
    leader = run.nemesis.leader(timeout=15)
    others = [d for d in cluster.managers if d is not leader]
    run.load.faulty.add(leader.name)
    split = cluster.network.split([leader], others)
    stepped_down = elected = None
    try:
        while time.monotonic() - split < hold:
            if stepped_down is None:
                answer = info(leader, timeout=0.5)
                if answer is not None and not (answer.get("raft") or {}).get("is_leader"):
                    stepped_down = time.monotonic() - split
            if elected is None:
                try:
                    leader_of(others, timeout=0.2)
                    elected = time.monotonic() - split
                except AssertionError:
                    pass
            time.sleep(0.05)
    finally:
        healed = cluster.network.heal()
        run.load.faulty.discard(leader.name)
    wait_following(leader, cluster.managers, timeout=20)
    return dict(kind="partition", node=leader.name, at=split, healed=healed, stepped_down=stepped_down,
                elected=elected)


def partition_outcome(run: Run, r: dict, fallback: float, slack: float) -> dict:
    """What the history says of one partition round; adds its problems to the run.

    Only answers that came during the partition count: a write sent to the cut-off manager may be
    forwarded and acknowledged once the partition heals, which is correct."""
    ops = run.history.snapshot()
    name, split, healed = r["node"], r["at"], r["healed"]
    mine = [op for op in ops if op.kind == WRITE and op.node == name and split <= op.invoke < healed]
    acked = [op.invoke - split for op in mine if op.status == OK and op.complete < healed]
    refused = [op.answered - split for op in mine if op.status != OK and op.answered < healed]
    theirs = [op.complete - split for op in ops if op.kind == WRITE and op.status == OK and op.node != name
              and split <= op.invoke and op.complete < healed]
    out = dict(last_minority_ack=max(acked) if acked else None, first_minority_error=min(refused) if refused else None,
               first_majority_ack=min(theirs) if theirs else None)
    down = r["stepped_down"]
    if down is None or down > fallback + slack:
        when = "through the whole partition" if down is None else f"for {down:.2f} s"
        run.problems.append(f"the minority leader {name} claimed leadership {when} (fallback timeout {fallback} s)")
    late = [t for t in acked if t > fallback]
    if late:
        run.problems.append(f"the minority leader {name} acknowledged, during the partition, a write invoked "
                            f"{max(late):.2f} s after it began (fallback timeout {fallback} s)")
    if r["elected"] is None or out["first_majority_ack"] is None:
        run.problems.append(f"the majority did not elect a leader and go on while {name} was cut off")
    return out


def spread(values: list[float]) -> str:
    if not values:
        return "none"
    return (f"min {min(values):.2f} s, median {statistics.median(values):.2f} s, max {max(values):.2f} s "
            f"(n={len(values)})")


def summary(run: Run) -> str:
    recorded = run.history.snapshot()
    ops = len(recorded)
    r = run.report
    if r is None:
        return f"{run.load.figures()}; unchecked"
    biggest = max((x.ops for x in r.results), default=0)
    lost = len(run.durable.violations) if run.durable else "?"
    reads = sum(1 for op in recorded if op.kind == READ and op.status == OK)
    converged = "no" if run.converge_s is None else f"{run.converge_s:.2f} s"
    return (f"{run.load.figures()}; {ops} recorded ops (largest key {biggest}); {len(r.results)} keys checked "
            f"in {r.seconds:.2f} s: {len(r.violations)} not linearizable, {lost} with a lost or repeated write; "
            f"stale reads {run.stale} of {reads} key reads; converged after {converged}")


def errors(run: Run, limit: int = 4) -> str:
    return "; ".join(f"{n}x {text}" for text, n in run.load.errors.most_common(limit)) or "none"

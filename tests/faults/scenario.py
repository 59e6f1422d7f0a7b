"""The shared shape of the load-and-fault scenarios: start the load, run a nemesis, make the cluster whole
again, read everything back on every manager, and check the history per key.

A scenario collects its problems in a list and fails once with all of them. A run on a build that breaks
several guarantees then shows every broken one, with its figures.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from tests.faults.linearizability import OK, READ, WRITE, History, Report, check_history, stale_reads
from tests.faults.load import Keyspace, Load, final_reads, info, wait_converged
from tests.faults.nemesis import Nemesis, wait_following  # noqa: F401 (wait_following is used by the scenarios)


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
          keys_per_record: int = 8) -> Run:
    managers = cluster.managers
    records = [info(m)["node_id"] for m in managers]
    history = History()
    load = Load(history, managers, Keyspace(records, keys_per_record), clients=clients, timeout=timeout,
                duration=duration, seed=seed)
    nemesis = Nemesis(managers, load)
    load.start()
    return Run(history, load, nemesis)


def finish(run: Run, cluster, settle: float = 1.0) -> Run:
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

"""Fault soak: the long version of tests/faults. Kills, pauses and partitions, mixed, under load.

    python bench/fault_soak.py [--faults 200] [--duration 1800] [--epoch 20] [--seed 1]
                               [--kinds kill,pause,partition] [--keep]

It forms a real 3-manager cluster on 127.0.0.81-83, port 32377 (SWARMCTL_SOAK_INDEX / SWARMCTL_SOAK_PORT
move it). Eight clients write and read node labels while one fault follows another, chosen at random
(seeded): kill -9 of the leader and restart, SIGSTOP of the leader for 3-10 s, or an nftables partition
of the leader for 3-8 s (root and nft needed; without them, leave `partition` out of --kinds). The faults
run in epochs of --epoch. After each epoch the load stops, the cluster is made whole, every manager is
read back, and that epoch's history is checked for linearizability on keys of its own, so memory stays
bounded. --faults bounds the number of faults and --duration the time spent starting them. The checks
of the last epoch add up to a minute.

Figures, each beside its target: keys not linearizable (0), keys with a lost or repeated acknowledged
write (0), the first acknowledged write after a leader kill (median <= 1 s), the minority leader's
step-down (<= leaderFallbackTimeout 2 s + 1 s), and the checker's time.

Exits 0 when every safety target held, 2 when one was missed, 1 on a crash. Everything it starts
(daemons, the nftables table) is stopped or deleted in a finally block.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.faults import scenario  # noqa: E402
from tests.faults.cluster import FaultCluster  # noqa: E402
from tests.faults.load import first_ok_write_after  # noqa: E402

INDEX_OFFSET = int(os.environ.get("SWARMCTL_SOAK_INDEX", "70"))  # node i on 127.0.0.(10 + offset + i)
SOAK_PORT = int(os.environ.get("SWARMCTL_SOAK_PORT", "32377"))
FALLBACK = 2.0
FAILOVER_TARGET = 1.0


def log(msg: str) -> None:
    print(msg, flush=True)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def run_epoch(cluster, rng: random.Random, kinds: list[str], count: int, deadline: float, epoch: int,
              seed: int) -> dict:
    run = scenario.start(cluster, clients=8, timeout=15.0, duration=max(60.0, deadline - time.monotonic() + 120),
                         seed=seed + epoch, prefix=f"soak{epoch}")
    rounds, stuck = [], False
    try:
        time.sleep(1.0)
        while len(rounds) < count and time.monotonic() < deadline:
            kind = rng.choice(kinds)
            try:
                if kind == "kill":
                    rounds.append(scenario.kill_round(run, cluster))
                elif kind == "pause":
                    rounds.append(scenario.pause_round(run, cluster, round(rng.uniform(3, 10), 1)))
                else:
                    rounds.append(scenario.partition_round(run, cluster, round(rng.uniform(3, 8), 1)))
            except AssertionError as exc:  # the cluster did not recover in time: say so, check what we have
                run.problems.append(f"{kind} {len(rounds) + 1}: {exc}")
                stuck = True
                break
            time.sleep(rng.uniform(0.3, 2.0))
    finally:
        scenario.finish(run, cluster, name=f"soak-{epoch}")
    kills = [r for r in rounds if r["kind"] == "kill"]
    partitions = [r for r in rounds if r["kind"] == "partition"]
    outcomes = [scenario.partition_outcome(run, r, FALLBACK, 1.0) for r in partitions]
    return dict(run=run, rounds=rounds, outcomes=outcomes, stuck=stuck,
                failovers=[t for t in (first_ok_write_after(run.history, k["at"]) for k in kills) if t is not None],
                stepdowns=[r["stepped_down"] for r in partitions if r["stepped_down"] is not None])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faults", type=int, default=200, help="how many faults in all (default 200)")
    ap.add_argument("--duration", type=float, default=1800.0, help="seconds spent starting faults (default 1800)")
    ap.add_argument("--epoch", type=int, default=20, help="faults per checked history (default 20)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default="kill,pause,partition", help="which faults to mix (comma-separated)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (daemon logs) afterwards")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = set(kinds) - {"kill", "pause", "partition"}
    if not kinds or unknown:
        ap.error(f"--kinds: unknown fault {sorted(unknown)[0] if unknown else '(none given)'}; "
                 "use kill, pause, partition")
    if args.faults < 1 or args.epoch < 1 or args.duration <= 0:
        ap.error("--faults, --epoch and --duration must be positive")

    root = tempfile.mkdtemp(prefix="faultsoak-", dir="/tmp")
    cluster = FaultCluster(root, heartbeat=0.5, offset=INDEX_OFFSET, port=SOAK_PORT)
    rng = random.Random(args.seed)
    began = time.monotonic()
    deadline = began + args.duration
    totals = dict(faults=0, violations=0, lost=0, checker=0.0)
    failovers, stepdowns, by_kind = [], [], {}
    status = 0
    try:
        log(f"forming 3 managers on 127.0.0.{11 + INDEX_OFFSET}-{13 + INDEX_OFFSET}:{SOAK_PORT} under {root}")
        cluster.form_faults(3, 0, network="partition" in kinds)
        epoch = 0
        while totals["faults"] < args.faults and time.monotonic() < deadline:
            count = min(args.epoch, args.faults - totals["faults"])
            e = run_epoch(cluster, rng, kinds, count, deadline, epoch, args.seed)
            run = e["run"]
            for r in e["rounds"]:
                by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + 1
            totals["faults"] += len(e["rounds"])
            totals["violations"] += len(run.report.violations)
            totals["lost"] += len(run.durable.violations)
            totals["checker"] += run.report.seconds + run.durable.seconds
            failovers += e["failovers"]
            stepdowns += e["stepdowns"]
            log(f"epoch {epoch}: {len(e['rounds'])} faults "
                f"({', '.join(r['kind'] for r in e['rounds'])}); {scenario.summary(run)}")
            for problem in run.problems:
                log(f"    problem: {problem.splitlines()[0]}")
            epoch += 1
            if e["stuck"] or not e["rounds"]:
                status = 2  # a cluster that did not recover is a missed target too
                break
        log(f"\n{totals['faults']} faults ({', '.join(f'{k} {n}' for k, n in sorted(by_kind.items()))}) "
            f"in {time.monotonic() - began:.0f} s")
        lines = [
            f"keys not linearizable: {totals['violations']} (target 0) {verdict(totals['violations'] == 0)}",
            f"keys with a lost or repeated acknowledged write: {totals['lost']} (target 0) "
            f"{verdict(totals['lost'] == 0)}",
        ]
        if failovers:
            med = statistics.median(failovers)
            lines.append(f"first acknowledged write after a leader kill: median {med:.2f} s, max {max(failovers):.2f} s "
                         f"(target median <= {FAILOVER_TARGET:.1f} s) {verdict(med <= FAILOVER_TARGET)}")
        if stepdowns or "partition" in by_kind:
            worst = max(stepdowns) if stepdowns else float("inf")
            lines.append(f"minority leader stepped down after at most {worst:.2f} s "
                         f"(target <= {FALLBACK + 1.0:.1f} s) {verdict(worst <= FALLBACK + 1.0)}")
        lines.append(f"checker time: {totals['checker']:.1f} s in all")
        for line in lines:
            log(line)
        if totals["violations"] or totals["lost"]:
            status = 2
        elif status == 2:
            log("the soak stopped early: the cluster did not recover from a fault (see the problems above)")
    except Exception:
        traceback.print_exc()
        status = 1
    finally:
        cluster.close()
        if args.keep or status:
            log(f"daemon logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

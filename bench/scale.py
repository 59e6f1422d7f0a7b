"""Scale benchmark: 3 real manager daemons and 1,000 hollow nodes running 100,000 tasks (issue 8).

    python bench/scale.py [--nodes 1000] [--per-process 100] [--services 10] [--replicas 10000] [--quick] [--keep]

--quick is the short version (200 nodes, 10 services of 1,000 replicas) that the CI test also runs.

Managers are real daemons on 127.0.0.81-83:13377 (apart from the tests' addresses), with real Raft over TCP and
drained, so that every task runs on a hollow node. Hollow nodes are `swarmctl hollow` processes of --per-process
nodes each: real node ids, certificates, mTLS sessions, heartbeats and status reports; only their container
runtime is simulated (swarmctl/runtime/simulated.py, the stand-in named as such). Figures, each with its target:

  1. time until every hollow node is Ready
  2. create --services services of --replicas replicas at once: time until every task runs (<= 20 s at 100k)
  3. scheduling delay p50/p99, from a task's creation to its assignment (assigned_at)
  4. peak leader RSS (<= 1.5 GB) and the snapshot's size on disk
  5. `node ls` (<= 0.5 s), `service ps` of one service (<= 1 s at 10k tasks) and `service ls` (<= 0.5 s), CLI wall
  6. leader kill: time until a write succeeds again (<= 2 s), and until every node is Ready on the new leader
  7. restart of a follower: time until it has applied what the leader had
  8. drain 100 nodes: time until their tasks run elsewhere
  9. kill a hollow process of --per-process nodes: time until its nodes are Down and their tasks replaced
 10. false Downs (nodes of live processes marked Down) over the whole run: 0; the managers' worst event-loop lag

Every process started here is stopped in a finally block; every wait is bounded. Exits 0 when the figures were
measured (even if a target is missed), 1 on a crash.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from swarmctl.cli.client import DaemonError  # noqa: E402
from tests.integration.harness import SWARMCTL, Cluster, Daemon, check, wait_for  # noqa: E402
from tests.integration.scale import (Hollow, Watch, api, leader_of, node_states, ready_count, rss_mb,  # noqa: E402
                                     running_total)

INDEX_OFFSET = int(os.environ.get("SWARMCTL_BENCH_INDEX", "70"))  # managers on 127.0.0.81-83
BENCH_PORT = int(os.environ.get("SWARMCTL_BENCH_PORT", "13377"))

CONVERGE_TARGET = 20.0     # s, 100k tasks running
RSS_TARGET_MB = 1536.0     # peak leader RSS
NODE_LS_TARGET = 0.5
SERVICE_PS_TARGET = 1.0
SERVICE_LS_TARGET = 0.5
FAILOVER_TARGET = 2.0
STALL_TARGET = 0.05        # s, planning at 100k tasks must not hold the loop longer


class BenchCluster(Cluster):
    def daemon(self, index: int, start: bool = True, **kwargs) -> Daemon:
        kwargs.setdefault("port", BENCH_PORT)
        return super().daemon(index + INDEX_OFFSET, start=start, **kwargs)


def log(msg: str) -> None:
    print(msg, flush=True)


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def cli_time(d: Daemon, *args: str, runs: int = 3) -> float:
    env = dict(os.environ, SWARMCTL_HOST=f"unix://{d.socket}")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(SWARMCTL + list(args), capture_output=True, text=True, env=env, timeout=120)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise RuntimeError(f"swarmctl {' '.join(args)} failed: {proc.stderr.strip()}")
    return statistics.median(times)


def create_services(d: Daemon, count: int, replicas: int, prefix: str = "bench") -> list[str]:
    def one(i):
        body = {"name": f"{prefix}{i}", "replicas": replicas, "task": {"image": "busybox", "args": ["sleep", "1d"]}}
        return api(d, 120).post("/v1/services", body)["id"]
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def wait_converged(d: Daemon, desired: int, timeout: float, what: str) -> float:
    start = time.perf_counter()
    wait_for(lambda: running_total(d) == (desired, desired), timeout=timeout, interval=0.5, what=what)
    return time.perf_counter() - start


def scheduling_delays(d: Daemon, sample: int = 20000) -> list[float]:
    tasks = api(d, 120).get("/v1/tasks?filter=desired-state%3Drunning")
    return [t["assigned_at"] - t["created_at"] for t in tasks[:sample] if t.get("created_at") and t.get("assigned_at")]


def write_works(d: Daemon, node_id: str, n: int) -> bool:
    try:
        api(d, 2).post(f"/v1/nodes/{node_id}/update", {"labels_add": {"bench": str(n)}})
        return True
    except (DaemonError, OSError, Exception):
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--per-process", type=int, default=100)
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--replicas", type=int, default=10000)
    ap.add_argument("--quick", action="store_true", help="200 nodes, 10 services of 1,000 replicas")
    ap.add_argument("--heartbeat", type=float, default=None,
                    help="dispatcher heartbeat period in s (default: Docker's 5 s; 1 s with --quick)")
    ap.add_argument("--hollow-nice", type=int, default=0,
                    help="niceness of the hollow processes (default 0). A niceness starves their heartbeats while the "
                         "managers are busy (10 made 876 false Downs in the join storm)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs) afterwards")
    ap.add_argument("--skip-faults", action="store_true", help="stop after figure 5")
    args = ap.parse_args()
    # a SIGTERM (or a SIGINT to a background job, which starts with SIGINT ignored) still runs the cleanup below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.quick:
        args.nodes, args.replicas = 200, 1000
    if args.heartbeat is None:
        args.heartbeat = 1.0 if args.quick else 5.0
    total_tasks = args.services * args.replicas
    root = tempfile.mkdtemp(prefix="swarmctl-scale-")
    cluster = BenchCluster(root, heartbeat=args.heartbeat)
    hollows: list[Hollow] = []
    watch: Watch | None = None
    summary: list[str] = []

    def result(line: str) -> None:
        log("    " + line)
        summary.append(line)
    try:
        log(f"forming 3 managers under {root} ...")
        managers, _ = cluster.form(managers=3, workers=0)
        for m in managers:
            check(managers[0].cli("node", "update", "--availability", "drain", m.name))
        token = check(managers[0].cli("swarm", "join-token", "-q", "worker")).out.strip()
        joins = [m.addr for m in managers]

        # 1 -----------------------------------------------------------------------------------------
        log(f"\n[1] {args.nodes} hollow nodes in {-(-args.nodes // args.per_process)} processes (nice {args.hollow_nice})")
        start = time.perf_counter()
        left, index = args.nodes, 1
        while left > 0:
            count = min(args.per_process, left)
            h = Hollow(root, index, count, joins[(index - 1) % len(joins)], token, nice=args.hollow_nice)
            h.start()
            hollows.append(h)
            left -= count
            index += 1
        watch = Watch(managers, hollows).start()  # from the join storm on: a node Down while alive is a flap
        # polled on a follower: the bench's own polls are not the leader's load
        wait_for(lambda: ready_count(managers[1]) >= args.nodes, timeout=120 + args.nodes / 5, interval=1,
                 what=f"{args.nodes} hollow nodes Ready")
        ready = time.perf_counter() - start
        result(f"nodes Ready: {args.nodes} in {ready:.1f}s; hollow process RSS "
               f"{statistics.mean(h.rss_mb() for h in hollows):.0f} MB per {args.per_process} nodes")

        # 2 -----------------------------------------------------------------------------------------
        log(f"\n[2] {args.services} services of {args.replicas} replicas at once ({total_tasks} tasks)")
        start = time.perf_counter()
        create_services(managers[0], args.services, args.replicas)
        wait_converged(managers[0], total_tasks, timeout=600, what=f"{total_tasks} tasks running")
        converge = time.perf_counter() - start
        if total_tasks >= 100000:
            result(f"converged: {total_tasks} tasks running in {converge:.1f}s (target <= {CONVERGE_TARGET:.0f}s) "
                   f"{verdict(converge <= CONVERGE_TARGET)}")
        else:
            result(f"converged: {total_tasks} tasks running in {converge:.1f}s (the target, "
                   f"{CONVERGE_TARGET:.0f}s, is for 100k tasks)")

        # 3 -----------------------------------------------------------------------------------------
        delays = scheduling_delays(managers[0])
        if delays:
            result(f"scheduling delay: p50 {pct(delays, 50) * 1000:.0f} ms, p99 {pct(delays, 99) * 1000:.0f} ms "
                   f"({len(delays)} tasks)")
        else:
            result("scheduling delay: not measured (tasks carry no assigned_at)")

        # 4 -----------------------------------------------------------------------------------------
        leader = leader_of(managers)
        peak = rss_mb(leader.proc.pid, "VmHWM")
        snaps = [p for p in glob.glob(os.path.join(leader.data_dir, "**", "*snapshot*"), recursive=True)
                 if os.path.isfile(p)]
        snap = max((os.path.getsize(p) for p in snaps), default=0) / 1e6
        result(f"leader peak RSS: {peak:.0f} MB (target <= {RSS_TARGET_MB:.0f} MB) {verdict(peak <= RSS_TARGET_MB)};"
               f" snapshot {snap:.1f} MB")

        # 5 -----------------------------------------------------------------------------------------
        t_nodes = cli_time(leader, "node", "ls")
        t_ps = cli_time(leader, "service", "ps", "bench0")
        t_ls = cli_time(leader, "service", "ls")
        t_ps_f = cli_time(leader, "service", "ps", "--filter", "desired-state=running", "bench0")
        result(f"node ls ({args.nodes + 3} nodes): {t_nodes:.2f}s (target <= {NODE_LS_TARGET}s) "
               f"{verdict(t_nodes <= NODE_LS_TARGET)}")
        result(f"service ps ({args.replicas} tasks): {t_ps:.2f}s (target <= {SERVICE_PS_TARGET}s) "
               f"{verdict(t_ps <= SERVICE_PS_TARGET)}; with --filter desired-state=running {t_ps_f:.2f}s")
        result(f"service ls ({args.services} services): {t_ls:.2f}s (target <= {SERVICE_LS_TARGET}s) "
               f"{verdict(t_ls <= SERVICE_LS_TARGET)}")
        if args.skip_faults:
            return 0

        # 6 -----------------------------------------------------------------------------------------
        log("\n[6] leader kill")
        node_id = node_states(leader)[managers[0].name][0] if leader is not managers[0] else \
            node_states(leader)[managers[1].name][0]
        leader.kill()
        survivors = [m for m in managers if m.running]
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < 30:
            n += 1
            if write_works(survivors[n % len(survivors)], node_id, n):
                break
            time.sleep(0.02)
        failover = time.perf_counter() - start
        new_leader = wait_for(lambda: leader_of(survivors), timeout=30, what="a new leader")
        wait_for(lambda: ready_count(new_leader) >= args.nodes, timeout=120, interval=0.5,
                 what="every hollow node Ready on the new leader")
        all_back = time.perf_counter() - start
        result(f"leader kill: writes again after {failover:.2f}s (target <= {FAILOVER_TARGET}s) "
               f"{verdict(failover <= FAILOVER_TARGET)}; every node Ready on the new leader after {all_back:.1f}s")
        watch.managers = survivors
        leader.start()
        watch.managers = managers

        # 7 -----------------------------------------------------------------------------------------
        follower = next(m for m in managers if m.running and m is not new_leader and m is not leader)
        follower.stop()
        start = time.perf_counter()
        follower.start()
        target_index = (api(new_leader).get("/v1/info").get("raft") or {}).get("applied", 0)
        wait_for(lambda: (api(follower, 5).get("/v1/info").get("raft") or {}).get("applied", 0) >= target_index,
                 timeout=300, interval=0.2, what="the restarted follower caught up")
        result(f"follower restart with {total_tasks} tasks: caught up in {time.perf_counter() - start:.1f}s")

        # 8 -----------------------------------------------------------------------------------------
        states = node_states(new_leader)
        drain_count = min(100, args.nodes // 10)  # --quick: 20 of 200, so the kill below leaves nodes to run on
        drained = [states[h][0] for h in sorted(states) if h.startswith("hollow")][:drain_count]
        start = time.perf_counter()
        for node_id in drained:
            api(new_leader).post(f"/v1/nodes/{node_id}/update", {"availability": "drain"})

        def moved():
            tasks = api(new_leader, 120).get("/v1/tasks?filter=desired-state%3Drunning")
            on_drained = sum(1 for t in tasks if t.get("node_id") in set(drained))
            return on_drained == 0 and running_total(new_leader) == (total_tasks, total_tasks)
        wait_for(moved, timeout=600, interval=1, what="the drained nodes' tasks running elsewhere")
        result(f"drain {drain_count} nodes: their tasks run elsewhere after {time.perf_counter() - start:.1f}s")
        for node_id in drained:
            api(new_leader).post(f"/v1/nodes/{node_id}/update", {"availability": "active"})

        # 9 -----------------------------------------------------------------------------------------
        victim = hollows[-1]
        watch.expected_down.update(h for h in states if victim.owns(h))
        start = time.perf_counter()
        victim.kill()
        wait_for(lambda: sum(1 for h, (_i, s, _a) in node_states(new_leader).items()
                             if victim.owns(h) and s == "down") == victim.count,
                 timeout=120, interval=0.5, what="the killed process's nodes Down")
        down = time.perf_counter() - start
        wait_converged(new_leader, total_tasks, timeout=600, what="their tasks replaced")
        result(f"hollow process kill ({victim.count} nodes): Down after {down:.1f}s, tasks replaced after "
               f"{time.perf_counter() - start:.1f}s")
        return 0
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        if watch is not None:
            watch.stop()
            worst = max(watch.worst_lag.values(), default=0.0)
            summary.append(f"false Downs: {len(watch.false_down)} (target 0) {verdict(not watch.false_down)}"
                           + (f" e.g. {sorted(watch.false_down)[:5]}" if watch.false_down else ""))
            wall, cpu, where = watch.worst_held()
            summary.append(f"longest planning step on a manager's loop: {wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms "
                           f"CPU ({where}) (target <= {STALL_TARGET * 1000:.0f} ms) {verdict(wall <= STALL_TARGET)}")
            summary.append(f"worst event-loop lag on a manager, any cause (TLS handshakes, CPU shared with the hollow "
                           f"processes): {worst * 1000:.0f} ms; stalls over 0.5 s: {sum(watch.stalls.values())} "
                           f"(target 0) {verdict(not sum(watch.stalls.values()))}")
        for h in hollows:
            h.stop()
        cluster.stop_all()
        log("\n=== summary")
        for line in summary:
            log(line)
        if args.keep:
            log(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

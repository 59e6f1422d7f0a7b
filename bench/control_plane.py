"""Control-plane benchmark: forms a real 3-manager cluster on loopback and prints its figures.

    python bench/control_plane.py [--quick]

1. API write throughput (node label updates, 8 concurrent clients spread over the 3 managers)
2. Leader failover time (SIGKILL the leader, time until a write through a survivor succeeds)
3. CLI wall time of `swarmctl node ls`
4. Idle resident memory per daemon
5. The Raft storage figures of bench/raft_storage.py: tick-thread stall during a snapshot at 100k tasks,
   and what group commit achieves (writes per leader fsync)

Exits 0 when the figures were measured (even if a target is missed), 1 on a crash.
Every daemon started here is stopped in a finally block.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from swarmctl.cli.client import Client, CLIError  # noqa: E402
from tests.integration.harness import Cluster, Daemon, nodes_json, wait_for  # noqa: E402

WRITE_TARGET = 500.0      # writes/s, >=
FAILOVER_TARGET = 1.0     # s, median <=
CLI_TARGET = 0.3          # s, median <=
RSS_TARGET_MB = 100.0     # MB, max <=
STALL_TARGET = 0.25 / 3   # s: a third of raftMinTimeout
HEARTBEAT = 1.0
# Integration tests may run concurrently on 127.0.0.11+:2377, so the bench uses its own
# addresses (127.0.0.61+) and port; override with SWARMCTL_BENCH_INDEX / SWARMCTL_BENCH_PORT.
INDEX_OFFSET = int(os.environ.get("SWARMCTL_BENCH_INDEX", "50"))
BENCH_PORT = int(os.environ.get("SWARMCTL_BENCH_PORT", "12377"))


class BenchCluster(Cluster):
    """The harness's Cluster on addresses and a port apart from the integration tests'."""

    def daemon(self, index: int, start: bool = True, **kwargs) -> Daemon:
        kwargs.setdefault("port", BENCH_PORT)
        return super().daemon(index + INDEX_OFFSET, start=start, **kwargs)


def log(msg: str) -> None:
    print(msg, flush=True)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


def client(d: Daemon, timeout: float = 10.0) -> Client:
    return Client(f"unix://{d.socket}", timeout=timeout)


def find_leader(managers: list[Daemon]) -> Daemon | None:
    for d in managers:
        if not d.running:
            continue
        try:
            info = client(d, timeout=2.0).get("/v1/info")
        except CLIError:
            continue
        if (info.get("raft") or {}).get("is_leader"):
            return d
    return None


def all_reachable(managers: list[Daemon]) -> bool:
    for d in managers:
        if not d.running:
            continue
        try:
            nodes = client(d, timeout=3.0).get("/v1/nodes")
        except CLIError:
            continue
        statuses = [n.get("manager_status") for n in nodes]
        statuses = [s for s in statuses if s]
        return (len(statuses) == len(managers)
                and all(s.get("reachability") == "reachable" for s in statuses)
                and sum(1 for s in statuses if s.get("leader")) == 1)
    return False


def cli_all_reachable(d: Daemon, count: int) -> bool:
    statuses = [n.get("manager_status") for n in nodes_json(d)]
    statuses = [s for s in statuses if s]
    return len(statuses) == count and all(s.get("reachability") == "reachable" for s in statuses)


def proc_cpu(pid: int) -> float:
    """user+system CPU seconds of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- 1. write throughput -----------------------------------------------------------------------
def bench_writes(managers: list[Daemon], node_ids: list[str], duration: float, nclients: int = 8) -> dict:
    leader = find_leader(managers)
    latencies: list[list[float]] = [[] for _ in range(nclients)]
    errors: list[list[str]] = [[] for _ in range(nclients)]
    counter = [0]
    lock = threading.Lock()
    start_evt = threading.Event()
    stop_at = [0.0]

    def worker(i: int) -> None:
        c = client(managers[i % len(managers)], timeout=10.0)
        node_id = node_ids[i % len(node_ids)]
        start_evt.wait()
        while time.perf_counter() < stop_at[0]:
            with lock:
                counter[0] += 1
                n = counter[0]
            t0 = time.perf_counter()
            try:
                c.post(f"/v1/nodes/{node_id}/update", {"labels_add": {"bench": str(n)}})
            except CLIError as exc:
                errors[i].append(str(exc))
                continue
            latencies[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(nclients)]
    for t in threads:
        t.start()
    dcpu0 = {d.name: proc_cpu(d.proc.pid) for d in managers}
    cpu0 = time.process_time()
    t_start = time.perf_counter()
    stop_at[0] = t_start + duration
    start_evt.set()
    for t in threads:
        t.join(duration + 30)
    elapsed = time.perf_counter() - t_start
    cpu = time.process_time() - cpu0
    daemon_cpu = {d.name: proc_cpu(d.proc.pid) - dcpu0[d.name] for d in managers}
    by_target: dict[str, list[float]] = {}
    for i, xs in enumerate(latencies):
        d = managers[i % len(managers)]
        key = f"{d.name}{' (leader)' if d is leader else ' (forwarded)'}"
        by_target.setdefault(key, []).extend(xs)
    lat = [x for xs in latencies for x in xs]
    errs = [e for es in errors for e in es]
    return {"ok": len(lat), "errors": errs, "elapsed": elapsed, "rate": len(lat) / elapsed,
            "p50": percentile(lat, 50), "p99": percentile(lat, 99), "client_cpu": cpu, "daemon_cpu": daemon_cpu,
            "by_target": by_target}


# ---- 2. failover -------------------------------------------------------------------------------
def write_once(d: Daemon, node_id: str, n: int, timeout: float = 2.0) -> None:
    client(d, timeout=timeout).post(f"/v1/nodes/{node_id}/update", {"labels_add": {"bench": f"fo{n}"}})


def failover_round(managers: list[Daemon], node_id: str, rnd: int) -> tuple[float, int, str]:
    leader = wait_for(lambda: find_leader(managers), timeout=20, what="a leader")
    survivors = [d for d in managers if d is not leader]
    probe = survivors[rnd % len(survivors)]
    t_kill = time.perf_counter()
    leader.kill()
    attempts = 0
    last_err = ""
    deadline = t_kill + 30.0
    while True:
        attempts += 1
        try:
            write_once(probe, node_id, rnd * 1000 + attempts)
            break
        except CLIError as exc:
            last_err = str(exc)
            if time.perf_counter() > deadline:
                raise RuntimeError(f"no write succeeded within 30s after killing {leader.name}: {last_err}")
            time.sleep(0.01)
    took = time.perf_counter() - t_kill
    # restart and wait for a healthy 3-manager cluster before the next round
    leader.start()
    wait_for(lambda: all_reachable(managers), timeout=30, interval=0.2, what="all managers reachable")
    wait_for(lambda: cli_all_reachable(probe, len(managers)), timeout=20, interval=0.2,
             what="all managers Reachable/Leader in `node ls --format json`")
    wait_for(lambda: (write_once(probe, node_id, rnd * 1000 + 999, timeout=5.0) or True), timeout=20,
             interval=0.2, what="a write after restart")
    return took, attempts, f"{leader.name} killed, probed via {probe.name}"


# ---- 3. CLI wall time ------------------------------------------------------------------------
def cli_command() -> list[str]:
    candidates = [os.path.join(os.path.dirname(sys.executable), "swarmctl"),
                  "/root/.pyenv/versions/3.11.7/bin/swarmctl"]
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return [c]
    return [sys.executable, "-m", "swarmctl.cli.main"]


def bench_cli(d: Daemon, runs: int) -> dict:
    cmd = cli_command() + ["node", "ls"]
    env = dict(os.environ, SWARMCTL_HOST=f"unix://{d.socket}")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return {"cmd": " ".join(cmd), "times": times, "median": statistics.median(times)}


# ---- 4. idle RSS -------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter run: 3 failover rounds, 3 s of writes")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (daemon logs) afterwards")
    ap.add_argument("--skip-storage", action="store_true", help="leave out [5] (bench/raft_storage.py's figures)")
    args = ap.parse_args()
    write_secs = 3.0 if args.quick else 5.0
    rounds = 3 if args.quick else 5
    cli_runs = 20

    root = tempfile.mkdtemp(prefix="swarmctl-bench-")
    cluster = BenchCluster(root, heartbeat=HEARTBEAT)
    t_begin = time.perf_counter()
    summary: list[str] = []
    try:
        log(f"forming a 3-manager cluster under {root} (heartbeat {HEARTBEAT}s) ...")
        managers, _ = cluster.form(managers=3, workers=0)
        wait_for(lambda: all_reachable(managers), timeout=30, interval=0.2, what="all managers reachable")
        node_ids = [n["id"] for n in nodes_json(managers[0])]
        leader = find_leader(managers)
        log(f"cluster up in {time.perf_counter() - t_begin:.1f}s; leader {leader.name if leader else '?'}; "
            f"nodes {len(node_ids)}")

        # 1 ---------------------------------------------------------------------------------
        log(f"\n[1] API writes: 8 clients over 3 managers' sockets, {write_secs:.0f}s of label updates")
        w = bench_writes(managers, node_ids, write_secs)
        log(f"    {w['ok']} writes ok, {len(w['errors'])} errors in {w['elapsed']:.2f}s")
        log(f"    bench client CPU {w['client_cpu']:.2f}s over {w['elapsed']:.2f}s wall "
            f"({100 * w['client_cpu'] / w['elapsed']:.0f}% of one core)")
        log("    daemon CPU: " + ", ".join(f"{k} {v:.2f}s ({100 * v / w['elapsed']:.0f}%)"
                                          for k, v in w["daemon_cpu"].items()))
        for key, xs in sorted(w["by_target"].items()):
            log(f"    via {key}: {len(xs)} writes, p50 {percentile(xs, 50) * 1000:.1f} ms, "
                f"p99 {percentile(xs, 99) * 1000:.1f} ms")
        if w["errors"]:
            distinct = sorted(set(w["errors"]))
            for e in distinct[:5]:
                log(f"    error ({w['errors'].count(e)}x): {e}")
        line1 = (f"writes/s: {w['rate']:.0f} (target >= {WRITE_TARGET:.0f}) {verdict(w['rate'] >= WRITE_TARGET)}"
                 f"  p50 {w['p50'] * 1000:.1f} ms  p99 {w['p99'] * 1000:.1f} ms  errors {len(w['errors'])}")
        log("    " + line1)
        summary.append(line1)

        # 2 ---------------------------------------------------------------------------------
        log(f"\n[2] leader failover: {rounds} rounds of SIGKILL leader -> first successful write via a survivor")
        times = []
        for r in range(1, rounds + 1):
            took, attempts, how = failover_round(managers, node_ids[0], r)
            times.append(took)
            log(f"    round {r}: {took:.3f}s ({attempts} attempts; {how})")
        med = statistics.median(times)
        line2 = (f"failover median: {med:.3f}s (target <= {FAILOVER_TARGET:.1f}s) {verdict(med <= FAILOVER_TARGET)}"
                 f"  rounds [{', '.join(f'{t:.3f}' for t in times)}]")
        log("    " + line2)
        summary.append(line2)

        # 3 ---------------------------------------------------------------------------------
        log(f"\n[3] CLI wall time: {cli_runs} runs of `node ls`")
        c = bench_cli(managers[0], cli_runs)
        log(f"    command: {c['cmd']}")
        log(f"    min {min(c['times']):.3f}s  max {max(c['times']):.3f}s")
        line3 = (f"CLI node ls median: {c['median']:.3f}s (target <= {CLI_TARGET:.1f}s) "
                 f"{verdict(c['median'] <= CLI_TARGET)}")
        log("    " + line3)
        summary.append(line3)

        # 4 ---------------------------------------------------------------------------------
        log("\n[4] idle RSS: settling 3s ...")
        wait_for(lambda: all_reachable(managers), timeout=20, interval=0.2, what="all managers reachable")
        time.sleep(3.0)
        rss = {}
        for d in managers:
            assert d.running, f"{d.name} is not running"
            rss[d.name] = rss_mb(d.proc.pid)
            log(f"    {d.name} pid {d.proc.pid}: {rss[d.name]:.1f} MB")
        mx = max(rss.values())
        line4 = (f"idle RSS max: {mx:.1f} MB (target <= {RSS_TARGET_MB:.0f} MB) {verdict(mx <= RSS_TARGET_MB)}  "
                 + "  ".join(f"{k} {v:.1f}" for k, v in rss.items()))
        log("    " + line4)
        summary.append(line4)

        # 5 ---------------------------------------------------------------------------------
        if not args.skip_storage:
            import asyncio
            import logging
            from bench import raft_storage  # the storage figures of bench/raft_storage.py, at 100k tasks
            logging.getLogger("pysyncobj.syncobj").setLevel(logging.CRITICAL + 1)
            log("\n[5] Raft storage: tick-thread stall during a snapshot at 100k tasks / 1,000 nodes; group commit")
            workdir = tempfile.mkdtemp(prefix="swbench-")
            try:
                st = asyncio.run(raft_storage.stall(raft_storage.build_state(100_000, 1_000), workdir))
                gc = asyncio.run(raft_storage.group_commit(workdir))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            line5 = (f"snapshot stall at 100k tasks: {st['stall'] * 1e3:.1f} ms (target < {STALL_TARGET * 1e3:.0f} ms, "
                     f"a third of the election timeout) {verdict(st['stall'] < STALL_TARGET)}  "
                     f"(without a snapshot {st['base_stall'] * 1e3:.1f} ms)")
            line6 = (f"group commit: {gc['writes'] / max(gc['fsyncs'], 1):.1f} writes per leader fsync, 8 writers "
                     f"on 3 in-process replicas, {gc['per_s']:,.0f} durable writes/s")
            for text in (line5, line6):
                log("    " + text)
                summary.append(text)

        log("\n==== control-plane bench summary" + (" (--quick)" if args.quick else "") + " ====")
        for i, s in enumerate(summary, 1):
            log(f"{i}. {s}")
        log(f"(total run {time.perf_counter() - t_begin:.1f}s)")
        return 0
    except BaseException:
        traceback.print_exc()
        for d in cluster.daemons.values():
            tail = d.tail(15)
            if tail:
                print(f"--- {d.name} log tail ---\n{tail}", file=sys.stderr)
        return 1
    finally:
        cluster.stop_all()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

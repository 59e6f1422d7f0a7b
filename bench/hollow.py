"""Hollow nodes at scale: N hollow nodes (default 200) joining one real manager daemon.

Prints each figure beside its target:
  - time from starting `swarmctl hollow --count N` until all N are Ready in `node ls`;
  - the hollow process's RSS and RSS per node (1,000 nodes in one process must fit in memory);
  - the manager's RSS with N nodes heartbeating;
  - optionally (--replicas R): a service of R replicas on the hollow nodes, time until all run;
  - optionally (--endpoints): every hollow node follows the mesh's endpoint stream through its session (a
    stand-in data plane records the tables); a service with a published port is scaled up 5 times, and for each
    new task the time from its start (its running timestamp) until the last of the N nodes holds it
    (target 1 s, issue 9), with the manager's CPU over that phase.

Runs in its own network namespace (see docs/design.md, "Hollow nodes"); the manager is on 127.0.0.91:42377. Everything it
starts is stopped in the finally block.

    python3 bench/hollow.py [--count 200] [--replicas 0] [--endpoints] [--heartbeat 5] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.integration.harness import SWARMCTL, Daemon, check, remove_mesh_table  # noqa: E402


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def node_states(manager: Daemon, prefix: str) -> dict[str, str]:
    result = manager.cli("node", "ls", "--format", "json")
    if not result.ok:
        return {}
    return {n["description"]["hostname"]: n["status"]["state"] for n in json.loads(result.out)
            if n["description"]["hostname"].startswith(prefix)}


def figure(name: str, value: str, target: str) -> None:
    print(f"{name:<44} {value:>14}   target: {target}", flush=True)


def endpoint_report(hollow_dir: str) -> dict:
    try:
        with open(os.path.join(hollow_dir, "endpoints.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def wait_held(hollow_dir: str, count: int, backends: int, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = endpoint_report(hollow_dir)
        entry = report.get("routes", {}).get("tcp/8080", {}).get(str(backends))
        if entry and entry[0] == count:
            return report
        time.sleep(0.1)
    raise SystemExit(f"not all {count} nodes held {backends} endpoints within {timeout:.0f} s: "
                     f"{endpoint_report(hollow_dir).get('routes')}")


def endpoint_phase(manager: Daemon, hollow_dir: str, count: int) -> None:
    check(manager.cli("service", "create", "--name", "meshbench", "-p", "8080:80", "--replicas", "1", "--detach",
                      "busybox", "sleep", "1d", timeout=120))
    wait_held(hollow_dir, count, 1)
    cpu0, t0 = cpu_seconds(manager.proc.pid), time.monotonic()
    lags = []
    for replicas in range(2, 7):
        check(manager.cli("service", "scale", f"meshbench={replicas}", timeout=120))
        report = wait_held(hollow_dir, count, replicas)
        tasks = json.loads(check(manager.cli("service", "ps", "--format", "json", "meshbench")).out)
        started = max(t["status"]["timestamp"] for t in tasks if t["status"]["state"] == "running")
        first, last = report["routes"]["tcp/8080"][str(replicas)][1:]
        lags.append((first - started, last - started))
    cpu = (cpu_seconds(manager.proc.pid) - cpu0) / (time.monotonic() - t0)
    worst = max(last for _, last in lags)
    figure(f"endpoints: a new task held by all {count} nodes (5 scale-ups, first / last node)",
           ", ".join(f"{a * 1000:.0f}/{b * 1000:.0f} ms" for a, b in lags),
           f"<= 1,000 ms: {'ok' if worst <= 1.0 else 'MISSED'}")
    figure("manager CPU during the endpoint phase", f"{cpu:.0%}", "(of one CPU; sessions and the stream)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=0)
    parser.add_argument("--heartbeat", type=float, default=5.0, help="heartbeat period of the nodes, seconds")
    parser.add_argument("--start-latency", default="0.2s")
    parser.add_argument("--join-concurrency", default="16")
    parser.add_argument("--endpoints", action="store_true", help="measure the endpoint stream to every node")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with the logs")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="swh-", dir="/tmp")
    manager = Daemon(81, root, heartbeat=args.heartbeat, port=42377)  # 127.0.0.91
    hollow = None
    try:
        manager.start()
        check(manager.cli("swarm", "init", "--advertise-addr", manager.ip))
        check(manager.cli("node", "update", "--availability", "drain", manager.name))
        token = check(manager.cli("swarm", "join-token", "-q", "worker")).out.strip()
        log_path = os.path.join(root, "hollow.log")
        began = time.monotonic()
        with open(log_path, "ab") as log:
            hollow = subprocess.Popen(SWARMCTL + [
                "hollow", "--count", str(args.count), "--join", manager.addr, "--token", token,
                "--data-dir", os.path.join(root, "hollow"), "--heartbeat-period", f"{args.heartbeat}s",
                "--advertise-addr", manager.ip, "--start-latency", args.start_latency,
                "--join-concurrency", args.join_concurrency, *(["--endpoints"] if args.endpoints else [])],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        ready_at = None
        deadline = began + 600
        while time.monotonic() < deadline:
            if hollow.poll() is not None:
                print(open(log_path).read(), file=sys.stderr)
                raise SystemExit("the hollow process exited")
            states = node_states(manager, "hollow-")
            if len(states) == args.count and set(states.values()) == {"ready"}:
                ready_at = time.monotonic()
                break
            time.sleep(0.5)
        if ready_at is None:
            raise SystemExit(f"not all {args.count} hollow nodes were Ready within 600 s")
        hollow_cpu, manager_cpu = cpu_seconds(hollow.pid), cpu_seconds(manager.proc.pid)
        summary = next((line for line in open(log_path) if "nodes running" in line), "").strip()
        time.sleep(args.heartbeat)  # settle: every node has heartbeated again
        idle_from = (time.monotonic(), cpu_seconds(hollow.pid), cpu_seconds(manager.proc.pid))
        time.sleep(2 * args.heartbeat)
        idle_for = time.monotonic() - idle_from[0]
        idle_hollow = (cpu_seconds(hollow.pid) - idle_from[1]) / idle_for
        idle_manager = (cpu_seconds(manager.proc.pid) - idle_from[2]) / idle_for
        rss = rss_of(hollow.pid)
        print(f"hollow nodes: {args.count} on one manager ({manager.addr}), heartbeat {args.heartbeat:g}s")
        print(f"  {summary}")
        figure(f"{args.count} hollow nodes Ready in node ls", f"{ready_at - began:.1f} s",
               "none set (bench/scale.py times 1,000)")
        figure("CPU while joining: hollow / manager", f"{hollow_cpu:.1f} / {manager_cpu:.1f} s", "(2 CPUs)")
        figure("CPU when idle (sessions only): hollow / manager", f"{idle_hollow:.0%} / {idle_manager:.0%}",
               "(of one CPU)")
        figure("hollow process RSS", f"{rss / 2**20:.0f} MiB", "1,000 nodes fit in one process")
        figure("hollow RSS per node", f"{rss / args.count / 2**10:.0f} KiB", "<= 1,024 KiB (1 GiB per 1,000 nodes)")
        figure("manager RSS", f"{rss_of(manager.proc.pid) / 2**20:.0f} MiB", "(leader at 1,000 nodes: <= 1.5 GB)")
        if args.replicas:
            began = time.monotonic()
            check(manager.cli("service", "create", "--name", "bench", "--replicas", str(args.replicas), "--detach",
                              "busybox", "sleep", "1d", timeout=120))
            while time.monotonic() - began < 600:
                tasks = json.loads(check(manager.cli("service", "ps", "--format", "json", "bench")).out)
                running = sum(1 for t in tasks if t["desired_state"] == "running" and t["status"]["state"] == "running")
                if running == args.replicas:
                    break
                time.sleep(0.5)
            figure(f"{args.replicas} replicas running", f"{time.monotonic() - began:.1f} s",
                   "(scale bench: 100k in 20 s)")
            figure("hollow RSS per node with tasks", f"{rss_of(hollow.pid) / args.count / 2**10:.0f} KiB", "")
        if args.endpoints:
            endpoint_phase(manager, os.path.join(root, "hollow"), args.count)
        return 0
    finally:
        if hollow is not None and hollow.poll() is None:
            hollow.send_signal(signal.SIGKILL)
            hollow.wait(15)
        manager.kill()
        remove_mesh_table(manager.ip)
        if args.keep:
            print(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""What the scale test and bench/scale.py share: hollow-node processes, and watchers for false Downs and stalls.

A hollow process (`swarmctl hollow`) runs many real nodes (own id, certificate, mTLS session, heartbeats) whose
container runtime is simulated: the stand-in named in swarmctl/runtime/simulated.py. Everything else is real:
the managers are real daemons with real Raft over TCP.

Watchers poll on a thread of their own, each loop bounded by `stop()` and by a deadline, and record what they
saw: a node of a live hollow process that a manager marks Down is a false Down (a flap); the managers' loop-lag
probes (GET /v1/info "loop_lag") give the worst stall.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from swarmctl.cli.client import Client
from tests.integration.harness import SWARMCTL, Daemon


def api(d: Daemon, timeout: float = 30.0) -> Client:
    return Client(f"unix://{d.socket}", timeout=timeout)


class Hollow:
    """One `swarmctl hollow` process of `count` nodes named PREFIX-N."""

    def __init__(self, root: str, index: int, count: int, join: str, token: str, *, start_latency: str = "0.05s",
                 fail_rate: float = 0.0, resources: str = "cpus=4,memory=8G", extra: list[str] | None = None,
                 nice: int = 0):
        self.index = index
        self.nice = nice  # hollow nodes stand in for other machines: a niceness keeps them off the managers' CPU
        self.count = count
        self.prefix = f"hollow{index}"
        self.data_dir = os.path.join(root, self.prefix)
        self.log_path = os.path.join(root, f"{self.prefix}.log")
        self.argv = SWARMCTL + ["hollow", "--count", str(count), "--join", join, "--token", token,
                                "--data-dir", self.data_dir, "--name-prefix", self.prefix,
                                "--start-latency", start_latency, "--fail-rate", str(fail_rate),
                                "--resources", resources] + list(extra or [])
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        nice = self.nice
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=(lambda: os.nice(nice)) if nice else None)
        log.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def owns(self, hostname: str) -> bool:
        return hostname.startswith(self.prefix + "-")

    def kill(self) -> None:
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if not self.running:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid) if self.running else 0.0


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def node_states(d: Daemon) -> dict[str, tuple[str, str, str]]:
    """hostname -> (id, state, availability), read through one manager's API (stale reads allowed: the watcher
    must see what this manager believes even while the swarm elects a leader)."""
    nodes = api(d).get("/v1/nodes?stale=1")
    return {n["description"]["hostname"]: (n["id"], n["status"]["state"], n["spec"]["availability"]) for n in nodes}


def ready_count(d: Daemon, prefix: str = "hollow") -> int:
    return sum(1 for host, (_id, state, _a) in node_states(d).items() if host.startswith(prefix) and state == "ready")


class Watch:
    """Polls the managers every `interval` s until stop() or `limit` s: false Downs and the worst loop lag."""

    def __init__(self, managers: list[Daemon], hollows: list[Hollow], interval: float = 1.0, limit: float = 3600.0):
        self.managers = managers
        self.hollows = hollows
        self.interval = interval
        self.limit = limit
        self.expected_down: set[str] = set()  # hostnames whose process was killed on purpose
        self.false_down: dict[str, float] = {}  # hostname -> when first seen Down while its process lived
        self.worst_lag: dict[str, float] = {}   # manager name -> worst recent lag seen (s)
        self.stalls: dict[str, int] = {}
        self.held: dict[str, dict] = {}         # manager name -> its latest "loop_held" (longest planning steps)
        self._baseline: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scale-watch", daemon=True)
        self.errors = 0

    def start(self) -> "Watch":
        for m in self.managers:
            try:
                self._baseline[m.name] = (api(m, 5).get("/v1/info").get("loop_lag") or {}).get("stalls", 0)
            except Exception:
                self._baseline[m.name] = 0
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def worst_held(self) -> tuple[float, float, str]:
        """(wall s, CPU s, "manager/component") of the longest planning step any manager ran on its loop."""
        worst = (0.0, 0.0, "-")
        for name, held in self.held.items():
            for component, step in (held.get("components") or {}).items():
                if step["wall"] > worst[0]:
                    worst = (step["wall"], step["cpu"], f"{name}/{component}")
        return worst

    def _live(self, hostname: str) -> bool:
        return any(h.owns(hostname) and h.running for h in self.hollows) and hostname not in self.expected_down

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            for m in self.managers:
                if not m.running:
                    continue
                try:
                    info = api(m, 5).get("/v1/info")
                    lag = info.get("loop_lag") or {}
                    if info.get("loop_held"):
                        self.held[m.name] = info["loop_held"]
                    # the last 5 s, polled every second: the watched window only (max_recent reaches back up to
                    # two minutes, into the joins before the watch began)
                    self.worst_lag[m.name] = max(self.worst_lag.get(m.name, 0.0),
                                                 lag.get("max_5s", lag.get("max_recent", 0.0)))
                    self.stalls[m.name] = lag.get("stalls", 0) - self._baseline.get(m.name, 0)
                except Exception:
                    self.errors += 1
            # node states from a follower (replicated, a moment behind at most): a list of 1,000 nodes every
            # second is the watcher's own load, which the leader should not carry
            running = [m for m in self.managers if m.running]
            source = next((m for m in running if not _is_leader(m)), running[0] if running else None)
            if source is not None:
                try:
                    for host, (_id, state, _avail) in node_states(source).items():
                        if state == "down" and self._live(host):
                            self.false_down.setdefault(host, time.time())
                except Exception:
                    self.errors += 1
            self._stop.wait(self.interval)


def _is_leader(d: Daemon) -> bool:
    try:
        return bool((api(d, 5).get("/v1/info").get("raft") or {}).get("is_leader"))
    except Exception:
        return False


def leader_of(managers: list[Daemon]) -> Daemon | None:
    return next((m for m in managers if m.running and _is_leader(m)), None)


def running_total(d: Daemon) -> tuple[int, int]:
    """(running, desired) summed over all services, from `service ls`'s counts."""
    services = api(d).get("/v1/services")
    return (sum(s["replicas_status"]["running"] for s in services),
            sum(s["replicas_status"]["desired"] for s in services))

"""Real daemon processes on loopback addresses, driven through the CLI, for integration tests and bench.

Each daemon gets its own 127.0.0.N address, data dir and socket. Everything started here is
stopped by stop_all(); tests use it through the `cluster` fixture, which always calls it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

SWARMCTL = [sys.executable, "-m", "swarmctl.cli.main"]
BASE_PORT = 2377
# Parallel development sessions shift every harness address by this much (127.0.0.(10 + offset + index)) so that
# their clusters do not meet; CI leaves it at 0.
IP_OFFSET = int(os.environ.get("SWARMCTL_TEST_IP_OFFSET", "0"))


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    def json(self):
        return json.loads(self.out)


@dataclass
class Daemon:
    index: int
    root: str
    heartbeat: float = 0.5
    port: int = BASE_PORT
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # extra environment of the daemon process
    group: int | None = None  # run the daemon with this gid (still root): the fault suite tells daemons' sockets apart by it
    proc: subprocess.Popen | None = None

    @property
    def ip(self) -> str:
        return f"127.0.0.{10 + IP_OFFSET + self.index}"

    @property
    def addr(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def data_dir(self) -> str:
        return os.path.join(self.root, self.name)

    @property
    def socket(self) -> str:
        return os.path.join(self.root, f"{self.name}.sock")

    @property
    def log_path(self) -> str:
        return os.path.join(self.root, f"{self.name}.log")

    def start(self, wait: bool = True) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if not os.path.exists(os.path.join(self.data_dir, "swarmctl.json")):
            ensure_free(self.ip, self.port, self.port + 1)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            SWARMCTL + ["daemon", "--data-dir", self.data_dir, "--advertise-addr", self.ip,
                        "--listen-addr", self.addr, "--socket", self.socket, "--hostname", self.name,
                        "--heartbeat-period", str(self.heartbeat), "--log-level",
                        os.environ.get("SWARMCTL_TEST_LOG_LEVEL", "info")] + self.extra_args,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ, **self.env),
            group=self.group)
        log.close()
        if wait:
            self.wait_socket()

    def wait_socket(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            if os.path.exists(self.socket) and self.cli("info").ok:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not come up:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def cli(self, *args: str, timeout: float = 60.0) -> Result:
        if args and args[0] == "info":  # a raw API read, for polling without the CLI's formatting
            args = ("node", "__info__")
        env = dict(os.environ, SWARMCTL_HOST=f"unix://{self.socket}")
        if args == ("node", "__info__"):
            return self._info(env)
        proc = subprocess.run(SWARMCTL + list(args), capture_output=True, text=True, env=env, timeout=timeout)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def _info(self, env) -> Result:
        code = ("import json,sys; from swarmctl.cli.client import Client\n"
                "try:\n print(json.dumps(Client().get('/v1/info')))\n"
                "except Exception as e:\n print(e, file=sys.stderr); sys.exit(1)")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def info(self) -> dict:
        return self.cli("info").json()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    def __init__(self, root: str, heartbeat: float = 0.5, docker_host: str | None = None):
        self.root = root
        self.heartbeat = heartbeat
        self.docker_host = docker_host
        self.daemons: dict[int, Daemon] = {}

    def daemon(self, index: int, start: bool = True, **kwargs) -> Daemon:
        if self.docker_host:
            kwargs["extra_args"] = ["--docker-host", self.docker_host] + list(kwargs.get("extra_args", []))
        d = Daemon(index, self.root, heartbeat=self.heartbeat, **kwargs)
        self.daemons[index] = d
        if start:
            d.start()
        return d

    def form(self, managers: int = 3, workers: int = 2, **daemon_kwargs) -> tuple[list[Daemon], list[Daemon]]:
        """init on node1, then join managers and workers; returns (managers, workers)."""
        total = managers + workers
        nodes = [self.daemon(i, **daemon_kwargs) for i in range(1, total + 1)]
        first = nodes[0]
        check(first.cli("swarm", "init", "--advertise-addr", first.ip))
        manager_token = check(first.cli("swarm", "join-token", "-q", "manager")).out.strip()
        worker_token = check(first.cli("swarm", "join-token", "-q", "worker")).out.strip()
        for d in nodes[1:managers]:
            check(d.cli("swarm", "join", "--token", manager_token, first.addr))
        for d in nodes[managers:]:
            check(d.cli("swarm", "join", "--token", worker_token, first.addr))
        return nodes[:managers], nodes[managers:]

    def join(self, index: int, role: str = "worker", **daemon_kwargs) -> Daemon:
        """Start one more daemon and join it through node1."""
        first = self.daemons[1]
        token = check(first.cli("swarm", "join-token", "-q", role)).out.strip()
        d = self.daemon(index, **daemon_kwargs)
        check(d.cli("swarm", "join", "--token", token, first.addr))
        return d

    def node_ids(self) -> set[str]:
        """The node ids the daemons of this cluster hold in their data dirs (swarmctl.json)."""
        ids = set()
        for d in self.daemons.values():
            try:
                with open(os.path.join(d.data_dir, "swarmctl.json")) as f:
                    node_id = (json.load(f).get("identity") or {}).get("node_id")
            except (OSError, ValueError):
                continue
            if node_id:
                ids.add(node_id)
        return ids

    def stop_all(self) -> None:
        for d in self.daemons.values():
            d.kill() if d.running else None
        for d in self.daemons.values():
            remove_mesh_table(d.ip)
            unmount_task_files(d.socket)


def unmount_task_files(socket_path: str) -> None:
    """A daemon killed with SIGKILL leaves the tmpfs of its tasks' secrets and configs mounted next to its socket
    (swarmctl/agent/taskfiles.py); the test that started it unmounts it."""
    path = os.path.splitext(socket_path)[0] + ".files"  # NodeConfig.files_dir: the socket's name without .sock
    if os.geteuid() == 0 and os.path.ismount(path):
        subprocess.run(["umount", "-l", path], capture_output=True, timeout=10)


def remove_mesh_table(ip: str) -> None:
    """A daemon killed with SIGKILL leaves its mesh table (swarmctl/mesh/nft.py) in the kernel; the test that
    started it removes it. Only that node's own table is touched."""
    from swarmctl.mesh.nft import table_name
    if os.geteuid() == 0 and shutil.which("nft"):
        subprocess.run(["nft", "delete", "table", "ip", table_name(ip)], capture_output=True, timeout=10)


def ensure_free(ip: str, *ports: int) -> None:
    """Fail clearly when an address a test needs is taken (never kill whoever holds it)."""
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError as exc:
            raise RuntimeError(f"{ip}:{port} is in use ({exc.strerror}): another swarmctl daemon or test holds it; "
                               "stop it, or run the tests in a network namespace of their own") from None
        finally:
            sock.close()


def check(result: Result) -> Result:
    assert result.ok, f"exit {result.code}\nstdout: {result.out}\nstderr: {result.err}"
    return result


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # keep polling through transient errors
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def nodes_json(daemon: Daemon) -> list[dict]:
    return check(daemon.cli("node", "ls", "--format", "json")).json()

"""Load for the fault suite: client threads that write and read node labels over the managers' unix sockets.

Every request goes through a fresh connection, which makes its outcome easy to classify:
- connect() fails (refused, no socket file): the request never reached a daemon, so it is a definite `fail`;
- an HTTP answer 2xx is `ok`, and 4xx is a definite refusal (`fail`);
- 5xx (above all 503, "no leader", which the write path also answers after a timeout while the entry may
  still commit), a timeout or a connection lost after connect are `unknown`: the write may have applied.

Writes are `POST /v1/nodes/{id}/update` with `labels_add {key: value}`. The value names the client and its
counter (`c3-17`), so every write is unique. Reads are `GET /v1/nodes/{id}`. One read returns every key
on that node, and it is recorded as one read op per key, all with the same times.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from swarmctl.cli.client import _UnixConnection
from tests.faults.linearizability import FAIL, OK, READ, UNKNOWN, WRITE, History, Op


class NotSent(Exception):
    """The request never reached the daemon."""


class Lost(Exception):
    """The request was sent but no answer came: it may or may not have taken effect."""


def request(socket_path: str, method: str, path: str, body=None, timeout: float = 5.0,
            request_id: str | None = None) -> tuple[int, object]:
    """One HTTP request on a fresh unix-socket connection: (status, decoded JSON body)."""
    conn = _UnixConnection(socket_path, timeout)
    try:
        try:
            conn.connect()
        except OSError as exc:
            raise NotSent(f"{exc.__class__.__name__}: {exc}") from None
        headers = {"X-Request-Id": request_id or os.urandom(16).hex()}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise Lost(f"{exc.__class__.__name__}: {exc}") from None
    finally:
        conn.close()
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = {"message": raw.decode(errors="replace")}
    return response.status, data


def message(data) -> str:
    return str(data.get("message")) if isinstance(data, dict) else str(data)


def info(daemon, timeout: float = 2.0) -> dict | None:
    """The daemon's /v1/info, or None when it does not answer."""
    try:
        status, data = request(daemon.socket, "GET", "/v1/info", timeout=timeout)
    except (NotSent, Lost):
        return None
    return data if status == 200 else None


def node_id_of(daemon, timeout: float = 15.0) -> str:
    """The daemon's node id, asked through /v1/info (bounded retries)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = info(daemon, timeout=2.0)
        if answer and answer.get("node_id"):
            return answer["node_id"]
        time.sleep(0.1)
    raise AssertionError(f"{daemon.name} did not tell its node id within {timeout}s")


@dataclass
class Keyspace:
    """Which label keys the load uses and on which node record each lives."""
    records: list[str]                  # node ids
    keys_per_record: int = 8
    prefix: str = "fault"
    keys: dict[str, str] = field(init=False)   # key -> node id

    def __post_init__(self):
        self.keys = {f"{self.prefix}.{r}.{j}": node_id
                     for r, node_id in enumerate(self.records) for j in range(self.keys_per_record)}

    def keys_of(self, node_id: str) -> list[str]:
        return [k for k, n in self.keys.items() if n == node_id]


class Load:
    """`clients` threads, each doing one request at a time until stop() or `duration` (both bound it).

    targets(client) gives the managers a client may pick from (at random, per op). A manager listed in
    `faulty` (the nemesis fills it) is avoided by the clients in `avoiding`: they model clients that fail
    over, and they keep the majority under load while the others wait on the faulty manager."""

    def __init__(self, history: History, managers: list, keyspace: Keyspace, clients: int = 8,
                 write_ratio: float = 0.5, timeout: float = 8.0, duration: float = 110.0, seed: int = 1,
                 avoiding: set[int] | None = None, max_ops: int = 200_000):
        self.history = history
        self.managers = managers
        self.keyspace = keyspace
        self.clients = clients
        self.write_ratio = write_ratio
        self.timeout = timeout
        self.duration = duration
        self.seed = seed
        self.avoiding = set(range(clients // 2, clients)) if avoiding is None else avoiding
        self.max_ops = max_ops
        self.faulty: set[str] = set()          # daemon names
        self.statuses: Counter = Counter()     # ("write"|"read", status) -> count
        self.errors: Counter = Counter()       # error text -> count (first 100 characters)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ops = 0
        self._lock = threading.Lock()

    # ---- life --------------------------------------------------------------------------------
    def start(self) -> "Load":
        self._deadline = time.monotonic() + self.duration
        for c in range(self.clients):
            t = threading.Thread(target=self._run, args=(c,), name=f"load-{c}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"load threads did not stop: {alive}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- one client ----------------------------------------------------------------------------
    def _run(self, c: int) -> None:
        rng = random.Random(self.seed * 1000 + c)
        counter = 0
        keys = sorted(self.keyspace.keys)
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            with self._lock:
                if self._ops >= self.max_ops:
                    return
                self._ops += 1
            targets = [d for d in self.managers if c not in self.avoiding or d.name not in self.faulty]
            daemon = rng.choice(targets or self.managers)
            if rng.random() < self.write_ratio:
                key = rng.choice(keys)
                counter += 1
                status = self.write(c, daemon, key, f"c{c}-{counter}")
            else:
                status = self.read(c, daemon, rng.choice(self.keyspace.records))
            if status != OK:
                self._stop.wait(0.02)  # do not spin on a dead socket

    def write(self, c: int, daemon, key: str, value: str, timeout: float | None = None) -> str:
        node_id = self.keyspace.keys[key]
        op = self.history.invoke(c, WRITE, key, value, node=daemon.name)
        return self._do(op, [op], daemon, "POST", f"/v1/nodes/{node_id}/update", {"labels_add": {key: value}},
                        timeout)

    def read(self, c: int, daemon, node_id: str, timeout: float | None = None) -> str:
        ops = self.history.invoke_read(c, self.keyspace.keys_of(node_id), node=daemon.name)
        return self._do(ops[0], ops, daemon, "GET", f"/v1/nodes/{node_id}", None, timeout)

    def _do(self, first: Op, ops: list[Op], daemon, method: str, path: str, body, timeout) -> str:
        try:
            status, data = request(daemon.socket, method, path, body, timeout=timeout or self.timeout)
        except NotSent as exc:
            return self._finish(first, ops, FAIL, f"not sent: {exc}")
        except Lost as exc:
            return self._finish(first, ops, UNKNOWN, f"no answer: {exc}")
        if 200 <= status < 300:
            if first.kind == READ:
                labels = ((data or {}).get("spec") or {}).get("labels") or {}
                self.history.ok_read(ops, labels)
            else:
                self.history.ok(first)
            self._count(first.kind, OK, "")
            return OK
        text = f"HTTP {status}: {message(data)}"
        return self._finish(first, ops, FAIL if 400 <= status < 500 else UNKNOWN, text)

    def _finish(self, first: Op, ops: list[Op], status: str, error: str) -> str:
        if status == FAIL:
            self.history.fail(ops, error)
        else:
            self.history.unknown(ops, error)
        self._count(first.kind, status, error)
        return status

    def _count(self, kind: str, status: str, error: str) -> None:
        with self._lock:
            self.statuses[(kind, status)] += 1
            if error:
                self.errors[error[:100]] += 1

    def figures(self) -> str:
        s = self.statuses
        return (f"writes ok/failed/unknown {s[WRITE, OK]}/{s[WRITE, FAIL]}/{s[WRITE, UNKNOWN]}, "
                f"reads ok/failed/unknown {s[READ, OK]}/{s[READ, FAIL]}/{s[READ, UNKNOWN]}")

    def internal_errors(self) -> int:
        return sum(n for text, n in self.errors.items() if text.startswith("HTTP 500"))


def labels_everywhere(managers: list, node_id: str, timeout: float = 3.0) -> dict[str, dict | None]:
    """The labels of one node record as each manager shows them (None: no answer)."""
    out = {}
    for d in managers:
        try:
            status, data = request(d.socket, "GET", f"/v1/nodes/{node_id}", timeout=timeout)
        except (NotSent, Lost):
            out[d.name] = None
            continue
        out[d.name] = data["spec"]["labels"] if status == 200 else None
    return out


def wait_converged(managers: list, node_ids: list[str], timeout: float = 30.0) -> float:
    """Wait until every manager shows the same labels on every record; returns the seconds it took."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout:
        views = {n: labels_everywhere(managers, n) for n in node_ids}
        if all(None not in v.values() and len({json.dumps(x, sort_keys=True) for x in v.values()}) == 1
               for v in views.values()):
            return time.monotonic() - start
        last = views
        time.sleep(0.2)
    diff = {n: {d: len(v) if v is not None else None for d, v in views.items()} for n, views in (last or {}).items()}
    raise AssertionError(f"managers did not converge within {timeout}s (label counts per manager: {diff})")


def final_reads(load: Load, process: int = 99, attempts: int = 50) -> None:
    """Read every record on every manager once more (recorded in the history): these reads must show
    every acknowledged write. Each read is retried (bounded) until it gets an answer."""
    for d in load.managers:
        for node_id in load.keyspace.records:
            for _ in range(attempts):
                if load.read(process, d, node_id, timeout=10.0) == OK:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"{d.name} never answered a read of {node_id}")


def first_ok_write_after(history: History, t: float) -> float | None:
    """Seconds from t until the first acknowledged write invoked at or after t completed."""
    best = None
    for op in history.snapshot():
        if op.kind == WRITE and op.status == OK and op.invoke >= t:
            if best is None or op.complete < best:
                best = op.complete
    return None if best is None else best - t

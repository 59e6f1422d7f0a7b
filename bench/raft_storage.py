"""Raft storage figures beside their targets (issue 7): snapshot stall, fsync'd appends, group commit,
snapshot write and load times.

    python bench/raft_storage.py [--tasks 100000] [--nodes 1000] [--dir DIR]

Everything is real: pysyncobj replicas over TCP on 127.0.0.1 (free ports), the durable journal fsync'ing
to DIR (default: a temp dir under /tmp, on whatever disk that is), snapshots written by SnapshotStore.

1. Tick stall: one replica whose state holds --tasks tasks and --nodes nodes, a light steady write load,
   and a forced snapshot, from the moment it starts until the journal is compacted. The stall is the
   longest time the tick thread could not react: its work between two polls plus any overrun of the poll
   before (waiting for the GIL); the idle wait in poll (up to autoTickPeriod, 50 ms) is not a stall. Also
   printed: the raw longest gap between tick callbacks, and both over an equal window without a snapshot.
   Target: a stall under a third of raftMinTimeout (83 ms).
2. Journal appends per second, one fdatasync each, and with 100 entries per fdatasync.
3. Group commit: 8 concurrent writers through RaftStore.write on the leader of 3 replicas; how many writes
   and how many Raft entries one leader fsync covers, and writes per second.
4. Writing (encode, compress, fsync) and loading (read, verify, decode, restore) a snapshot of that state.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import socket
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from swarmctl.state.journal import DurableJournal  # noqa: E402
from swarmctl.state.machine import StateMachine  # noqa: E402
from swarmctl.state.snapshot import SnapshotStore, write_snapshot  # noqa: E402
from tests.raft_helpers import PKI, tls_store  # noqa: E402  (the bench's replicas: real Raft over mutual TLS)

ELECTION_MIN = 0.25
STALL_TARGET = ELECTION_MIN / 3


def line(label: str, value: str, target: str, ok: bool | None = None) -> None:
    mark = "" if ok is None else ("  ok" if ok else "  MISSED")
    print(f"{label:<58} {value:>16}   target {target}{mark}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_state(tasks: int, nodes: int) -> StateMachine:
    m = StateMachine()
    batch = []
    for i in range(nodes):
        batch.append({"op": "create", "kind": "node", "id": f"n{i}", "record": {
            "spec": {"role": "worker", "availability": "active", "labels": {"zone": f"z{i % 3}"}},
            "description": {"hostname": f"node{i}", "resources": {"nano_cpus": 4e9, "memory_bytes": 8 << 30}},
            "status": {"state": "ready", "addr": f"10.0.{i // 250}.{i % 250}"}}})
    m.apply_batch([(None, 1.0, batch)])
    batch = []
    for i in range(tasks):
        batch.append({"op": "create", "kind": "task", "id": f"t{i}", "record": {
            "service_id": f"s{i % 100}", "node_id": f"n{i % nodes}", "slot": i, "desired_state": "running",
            "status": {"state": "running", "message": "started"}, "spec": {"image": "busybox", "env": {}}}})
        if len(batch) == 200:
            m.apply_batch([(f"load{i}", 1.0, batch)])
            batch = []
    if batch:
        m.apply_batch([(None, 1.0, batch)])
    return m


async def _until(predicate, timeout: float, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return False


async def stall(machine: StateMachine, workdir: str) -> tuple[float, float, dict]:
    addr = f"127.0.0.1:{free_port()}"
    store = tls_store(addr, [addr], os.path.join(workdir, "stall"), PKI(os.path.join(workdir, "pki-stall")),
                      machine=machine, logCompactionMinEntries=1_000_000, logCompactionMinTime=1_000_000)
    ticks: list[float] = []
    polls: list[tuple[float, float, float]] = []  # (called, returned, timeout) of the tick thread's poll
    store._sync.addOnTickCallback(lambda: ticks.append(time.perf_counter()))
    poller = store._sync._poller
    real_poll = poller.poll

    def timed_poll(timeout):  # instrumentation only: tells the idle wait apart from the thread's work
        called = time.perf_counter()
        real_poll(timeout)
        polls.append((called, time.perf_counter(), timeout))
    poller.poll = timed_poll
    stop = asyncio.Event()

    async def load():  # a light steady write load, bounded in count and time
        for i in range(20000):
            if stop.is_set():
                return
            try:
                await store.write([{"op": "patch", "kind": "task", "id": f"t{i % 1000}", "set": {"slot": i}}])
            except Exception:
                pass
            await asyncio.sleep(0.005)

    try:
        await _until(store.is_leader, 10)
        writer = asyncio.create_task(load())
        await asyncio.sleep(1.0)
        base_start = time.perf_counter()
        await asyncio.sleep(3.0)
        base_end = time.perf_counter()
        compactions = store.journal.stats["compactions"]
        snap_start = time.perf_counter()
        store._sync.forceLogCompaction()
        await _until(lambda: store.journal.stats["compactions"] > compactions, 60)
        snap_end = time.perf_counter()
        await asyncio.sleep(0.2)
        stop.set()
        await writer

        def longest_gap(start, end):
            inside = [t for t in ticks if start <= t <= end]
            return max((b - a for a, b in zip(inside, inside[1:])), default=float("nan"))

        def longest_stall(start, end):
            """The longest time the tick thread could not react: its work between two polls, plus how
            long the poll before overran its timeout (waiting for the GIL)."""
            inside = [p for p in polls if start <= p[0] <= end]
            return max((max(0.0, prev[1] - prev[0] - prev[2]) + (nxt[0] - prev[1])
                        for prev, nxt in zip(inside, inside[1:])), default=float("nan"))
        return {"stall": longest_stall(snap_start, snap_end), "base_stall": longest_stall(base_start, base_end),
                "gap": longest_gap(snap_start, snap_end), "base_gap": longest_gap(base_start, base_end),
                "last": dict(store.snapshots.last), "window": snap_end - snap_start}
    finally:
        store.destroy()
        await asyncio.sleep(0.3)


def appends(workdir: str) -> tuple[float, float]:
    path = os.path.join(workdir, "appends", "raft.journal")
    os.makedirs(os.path.dirname(path))
    j = DurableJournal(path)
    command = b"x" * 300
    idx = 1

    def run(per_sync: int, seconds: float) -> float:
        nonlocal idx
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            for _ in range(per_sync):
                j.add(command, idx, 1)
                idx += 1
            j.sync()
            count += per_sync
        return count / (time.perf_counter() - start)
    single, grouped = run(1, 2.0), run(100, 2.0)
    j._destroy()
    return single, grouped


async def group_commit(workdir: str, writers: int = 8, seconds: float = 5.0) -> dict:
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    pki = PKI(os.path.join(workdir, "pki-gc"))
    stores = [tls_store(a, addrs, os.path.join(workdir, f"gc{i}"), pki) for i, a in enumerate(addrs)]
    try:
        await _until(lambda: any(s.is_leader() for s in stores), 15)
        leader = next(s for s in stores if s.is_leader())
        await leader.write([])
        done = 0
        end = time.monotonic() + seconds
        before = dict(leader.journal.stats)

        async def writer(n):
            nonlocal done
            i = 0
            while time.monotonic() < end:
                await leader.write([{"op": "put", "kind": "task", "id": f"w{n}-{i}", "record": {"n": n}}])
                done += 1
                i += 1
        start = time.monotonic()
        await asyncio.gather(*(writer(n) for n in range(writers)))
        elapsed = time.monotonic() - start
        fsyncs = leader.journal.stats["fsyncs"] - before["fsyncs"]
        entries = leader.journal.stats["entries_synced"] - before["entries_synced"]
        return {"writes": done, "per_s": done / elapsed, "fsyncs": fsyncs, "entries": entries}
    finally:
        for s in stores:
            s.destroy()
        await asyncio.sleep(0.3)


def snapshot_io(machine: StateMachine, workdir: str) -> tuple[float, float, int]:
    path = os.path.join(workdir, "io.snapshot")
    meta = {"last": ["", 3, 1], "prev": ["", 2, 1], "cluster": [], "index": machine.index, "records": 0}
    start = time.perf_counter()
    size = write_snapshot(path, machine.snapshot(), meta)
    written = time.perf_counter() - start
    start = time.perf_counter()
    SnapshotStore(StateMachine(), path).deserialize(path)  # what pysyncobj calls: verify, decode, restore
    loaded = time.perf_counter() - start
    return written, loaded, size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=100000)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--dir", default=None, help="where the journals and snapshots go (default: a temp dir)")
    args = ap.parse_args()
    # pysyncobj logs re-sent, identical entries as critical; the daemon filters that (node/daemon.py)
    logging.getLogger("pysyncobj.syncobj").setLevel(logging.CRITICAL + 1)
    workdir = tempfile.mkdtemp(prefix="swbench-", dir=args.dir)
    try:
        t0 = time.perf_counter()
        machine = build_state(args.tasks, args.nodes)
        print(f"state: {args.tasks} tasks, {args.nodes} nodes, built in {time.perf_counter() - t0:.1f} s; "
              f"files in {workdir}")
        st = asyncio.run(stall(machine, workdir))
        line(f"longest tick-thread stall during a snapshot ({args.tasks // 1000}k tasks)",
             f"{st['stall'] * 1e3:.1f} ms", f"< {STALL_TARGET * 1e3:.0f} ms", st["stall"] < STALL_TARGET)
        line("  same, an equal window without a snapshot", f"{st['base_stall'] * 1e3:.1f} ms", "(for comparison)")
        line("  longest gap between ticks, with the idle poll (50 ms)", f"{st['gap'] * 1e3:.1f} ms",
             f"(without a snapshot: {st['base_gap'] * 1e3:.1f} ms)")
        if st["last"]:
            line("  that snapshot: background write time, size",
                 f"{st['last']['seconds']:.2f} s {st['last']['bytes'] / 1e6:.1f} MB",
                 f"(start to compaction: {st['window']:.2f} s)")
        single, grouped = appends(workdir)
        line("journal appends/s, one fdatasync each", f"{single:,.0f}/s", ">= 500/s", single >= 500)
        line("journal appends/s, 100 entries per fdatasync", f"{grouped:,.0f}/s", "(group commit)")
        gc = asyncio.run(group_commit(workdir))
        per_fsync = gc["writes"] / max(gc["fsyncs"], 1)
        line("writes per leader fsync, 8 writers, 3 replicas", f"{per_fsync:.1f}", "> 1 (group commit)",
             per_fsync > 1)
        line("  Raft entries per leader fsync", f"{gc['entries'] / max(gc['fsyncs'], 1):.2f}", "(info)")
        line("  writes/s, durable, 8 writers, 3 replicas in one process", f"{gc['per_s']:,.0f}/s",
             ">= 500/s (issue 7, 3 daemons: bench/control_plane.py)", gc["per_s"] >= 500)
        written, loaded, size = snapshot_io(machine, workdir)
        line(f"write a {args.tasks // 1000}k-task snapshot (encode, compress, fsync)", f"{written:.2f} s",
             "< 5 s, in the background", written < 5)
        line(f"load a {args.tasks // 1000}k-task snapshot (verify, decode, restore)", f"{loaded:.2f} s",
             "< 3 s", loaded < 3)
        line("  snapshot size", f"{size / 1e6:.1f} MB", "(info)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

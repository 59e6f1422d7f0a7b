"""Orchestrator benchmark at 100k tasks: pass times and the event loop's longest stall while planning.

    python bench/orchestrator.py [--tasks 100000] [--services 10] [--nodes 1000]

The orchestrator runs as in a manager (swarmctl/manager/orchestrator: event-driven passes planned in a
worker thread, commits in batches of 200), over a StateMachine with no Raft underneath (a stand-in for
RaftStore that applies writes at once: this measures planning, not replication). A probe on the event loop
wakes every 2 ms and records how late it ran; no planning step may hold the loop for more than 50 ms.

1. creation: N services of tasks/N replicas each, from nothing to every task created
2. full pass over 100k tasks that are running (the safety net)
3. one task fails: the pass replans its service only
4. a node is drained: the pass replans the services with tasks on it
5. history: 100k tasks with 5 ended ones per slot already kept, each slot fails once more: the reaper's pass

Prints each figure beside its target. Figure 0 is the probe alone: on a loaded machine every stall includes
the time the OS did not run this process at all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from swarmctl.manager.orchestrator import Orchestrator  # noqa: E402
from swarmctl.state.machine import StateMachine  # noqa: E402
from swarmctl.state.records import default_task_spec, new_node  # noqa: E402

STALL_TARGET = 0.050


class LocalStore:
    """RaftStore's read/watch/write interface over a bare StateMachine (a stand-in: no Raft, no journal)."""

    def __init__(self):
        self.machine = StateMachine()

    def get(self, kind, record_id):
        return self.machine.get(kind, record_id)

    def list(self, kind):
        return self.machine.list(kind)

    def find(self, kind, path, value):
        return self.machine.find(kind, path, value)

    def watch(self, callback):
        return self.machine.watch(callback)

    async def write(self, ops, request_id=None, timeout=3.0):
        # Applied here, on the event loop, a batch (<= 200 ops) at a time: RaftStore applies entries on its
        # tick thread instead, but a second busy thread would make the probe measure CPython's GIL handoff
        # between that thread and the planner, not what the orchestrator holds the loop for.
        result = self.machine.apply_batch([(request_id, time.time(), ops)])[0]
        await asyncio.sleep(0)
        return result

    async def apply(self, ops, size=200):
        """The bench's own changes (what agents and the API would write), 200 at a time on the loop;
        `ops` may be a function that yields them (then they are built batch by batch too)."""
        items = ops() if callable(ops) else iter(ops)
        while True:
            batch = [op for _, op in zip(range(size), items)]
            if not batch:
                return
            self.machine.apply_batch([(None, time.time(), batch)])
            await asyncio.sleep(0)


class Probe:
    """The event loop's lateness: a callback every 2 ms, and how much later than asked it ran."""

    def __init__(self):
        self.worst = 0.0
        self._task = None

    async def _run(self):
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.002)
            self.worst = max(self.worst, time.perf_counter() - start - 0.002)

    def start(self):
        self.worst = 0.0
        self._task = asyncio.ensure_future(self._run())

    async def stop(self):
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        return self.worst


class Counting(Orchestrator):
    interval = 0.5
    full_interval = 3600.0  # this bench asks for its full pass itself

    def __init__(self, store):
        super().__init__(store)
        self.passes = []
        self.busy = False

    async def reconcile(self):
        self.busy = True
        try:
            await super().reconcile()
        finally:
            self.busy = False

    def plan_changes(self, changed, full, waiting, pause=None):
        p = super().plan_changes(changed, full, waiting, pause)
        self.passes.append(dict(self.last_pass, service_ids=len(self.last_pass["service_ids"])))
        return p


def service(i, replicas):
    spec = default_task_spec()
    spec["image"] = "busybox"
    spec["restart_policy"]["delay"] = 0.0
    return {"id": f"svc{i}", "spec": {"name": f"s{i}", "mode": "replicated", "replicas": replicas, "labels": {},
                                      "task": spec}, "spec_version": 1}


async def settle(orch, quiet=0.3, limit=300.0):
    """Until no pass has run for `quiet` seconds."""
    deadline = time.monotonic() + limit
    last, since = len(orch.passes), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if len(orch.passes) != last or orch.busy or orch._dirty.is_set() or orch._pending:
            last, since = len(orch.passes), time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise RuntimeError("the orchestrator did not settle")


def line(name, value, target):
    print(f"{name:<58} {value:<22} target {target}", flush=True)


async def main(args):
    store = LocalStore()
    nodes = [new_node(f"node{i:04d}", "worker", f"h{i}", "127.0.0.1", resources={"cpus": 4, "memory": 8e9})
             for i in range(args.nodes)]
    for n in nodes:
        n["status"]["state"] = "ready"
    await store.apply([{"op": "put", "kind": "node", "id": n["id"], "record": n} for n in nodes])
    per = args.tasks // args.services
    orch = Counting(store)
    probe = Probe()

    # 0. the machine's own noise: the probe alone, nothing else running in this process
    probe.start()
    await asyncio.sleep(3.0)
    line("0. longest event-loop stall with nothing to do (3 s)", f"{await probe.stop() * 1000:.1f} ms",
         "the machine's noise; the figures below include it")

    # 1. creation
    probe.start()
    start = time.perf_counter()
    orch.start()
    await store.apply([{"op": "put", "kind": "service", "id": f"svc{i}", "record": service(i, per)}
                 for i in range(args.services)])
    await settle(orch)
    took = time.perf_counter() - start - 0.3
    stall = await probe.stop()
    count = len(store.list("task"))
    line(f"1. create {args.services} x {per} tasks: all created", f"{took:.2f} s ({count} tasks)", "-")
    line("   longest event-loop stall meanwhile", f"{stall * 1000:.1f} ms", f"<= {STALL_TARGET * 1000:.0f} ms")
    worst = stall

    # the tasks run (a stand-in for the scheduler and the agents), spread over the nodes
    await store.apply(lambda: ({"op": "patch", "kind": "task", "id": t["id"],
                                "set": [(["node_id"], nodes[i % len(nodes)]["id"]), (["status", "state"], "running")]}
                               for i, t in enumerate(store.list("task"))))
    await settle(orch)

    # 2. a full pass
    probe.start()
    before = len(orch.passes)
    orch._pending_full = True
    orch._dirty.set()
    await settle(orch)
    stall = await probe.stop()
    full = orch.passes[before]
    line(f"2. full pass over {full['tasks']} running tasks (in a thread)", f"{full['seconds'] * 1000:.0f} ms "
         f"({full['ops']} ops)", "safety net every 15 s")
    line("   longest event-loop stall meanwhile", f"{stall * 1000:.1f} ms", f"<= {STALL_TARGET * 1000:.0f} ms")
    worst = max(worst, stall)

    # 3. one task fails
    probe.start()
    before = len(orch.passes)
    victim = store.list("task")[12345 % count]
    start = time.perf_counter()
    await store.apply([{"op": "patch", "kind": "task", "id": victim["id"], "set": [(["status", "state"], "failed")]}])
    while len(orch.passes) == before:
        await asyncio.sleep(0.001)
    took = time.perf_counter() - start
    await settle(orch)
    stall = await probe.stop()
    one = orch.passes[before]
    line("3. one task fails: services replanned / tasks read", f"{one['service_ids']} / {one['tasks']}", "1 / its own")
    line("   its pass (from the event to the plan)", f"{took * 1000:.0f} ms", "-")
    worst = max(worst, stall)

    # 4. drain a node
    probe.start()
    before = len(orch.passes)
    await store.apply([{"op": "patch", "kind": "node", "id": nodes[7]["id"],
                        "set": [(["spec", "availability"], "drain")]}])
    await settle(orch)
    stall = await probe.stop()
    drained = orch.passes[before]
    line("4. drain a node: services replanned, ops", f"{drained['service_ids']}, {drained['ops']}",
         "those with tasks on it")
    worst = max(worst, stall)

    # 5. every slot of one service fails once more with its history full: the reaper's share
    probe.start()
    before = len(orch.passes)
    slots = per
    for _round in range(6):
        await store.apply(lambda: ({"op": "patch", "kind": "task", "id": t["id"],
                                    "set": [(["status", "state"], "failed")]}
                                   for t in store.find("task", "service_id", "svc0")
                                   if t["desired_state"] == "running" and t["status"]["state"] != "failed"))
        await settle(orch)
    stall = await probe.stop()
    kept = len(store.find("task", "service_id", "svc0"))
    deletes = sum(p["ops"] for p in orch.passes[before:])
    line(f"5. {slots} slots fail 6 times: tasks kept for the service", f"{kept} ({kept / per:.1f} per slot)",
         "<= 7 per slot (history 5 + current + replacement)")
    line("   ops of those passes", f"{deletes}", "-")
    line("   longest event-loop stall meanwhile", f"{stall * 1000:.1f} ms", f"<= {STALL_TARGET * 1000:.0f} ms")
    worst = max(worst, stall)

    await orch.stop()
    line("longest event-loop stall over the whole run", f"{worst * 1000:.1f} ms",
         f"<= {STALL_TARGET * 1000:.0f} ms " + ("(met)" if worst <= STALL_TARGET else "(MISSED)"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--no-full-gc", action="store_true",
                        help="freeze the heap and run no full collections (shows how much of a stall is the GC)")
    options = parser.parse_args()
    if options.no_full_gc:
        import gc
        gc.freeze()
        gc.set_threshold(700, 10, 10 ** 9)
    asyncio.run(main(options))

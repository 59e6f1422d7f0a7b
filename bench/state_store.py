"""State machine at the scale of the coming simulation work: 1,000 nodes, 100,000 tasks.

    python bench/state_store.py [--nodes 1000] [--tasks 100000]

Applies the tasks in batches of 200 (the reconcilers' chunk size), then times what the leader does per
node and per service on every change: a node's assignments (find by node_id) and a service's tasks (find by
service_id), through the secondary indexes and, for comparison, through a full scan. Prints the figures and
the process's peak RSS. No daemon, no network: the in-memory state machine only.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from swarmctl.state.machine import StateMachine, _get_path  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--tasks", type=int, default=100000)
    ap.add_argument("--services", type=int, default=100)
    args = ap.parse_args()
    m = StateMachine()
    started = time.perf_counter()
    batch = []
    for i in range(args.tasks):
        record = {"service_id": f"s{i % args.services}", "node_id": f"n{i % args.nodes}", "slot": i,
                  "desired_state": "running", "status": {"state": "running", "message": "started"},
                  "spec": {"image": "busybox", "env": {}}}
        batch.append({"op": "create", "kind": "task", "id": f"t{i}", "record": record})
        if len(batch) == 200:
            m.apply_batch([(None, 1.0, batch)])
            batch = []
    if batch:
        m.apply_batch([(None, 1.0, batch)])
    load = time.perf_counter() - started
    print(f"applied {args.tasks} task creates in batches of 200: {load:.2f} s ({args.tasks / load:,.0f} records/s)")

    def timed(label, fn, count):
        t0 = time.perf_counter()
        for i in range(count):
            fn(i)
        per = (time.perf_counter() - t0) / count
        print(f"{label:<48} {per * 1e3:9.3f} ms per call")
        return per

    indexed = timed("find(task, node_id) via index", lambda i: m.find("task", "node_id", f"n{i % args.nodes}"),
                    args.nodes)
    scanned = timed("find(task, node_id) via full scan",
                    lambda i: [r for r in m.list("task") if _get_path(r, "node_id") == f"n{i}"], 20)
    timed("find(task, service_id) via index", lambda i: m.find("task", "service_id", f"s{i % args.services}"),
          args.services)
    print(f"index speed-up for a node's assignments: {scanned / indexed:,.0f}x")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

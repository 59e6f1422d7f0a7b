#!/usr/bin/env python3
"""Dispatcher costs at 1,000 nodes (issue 8, point 4), each figure beside its target.

Drives the real Dispatcher on the real state machine applied directly, without Raft (a stand-in for the
RaftStore, so that what is measured is the dispatcher's own work, not consensus):
- the cost of one heartbeat with 1,000 nodes (target: independent of the number of nodes);
- one Down-detection pass with 1,000 nodes alive (target: no scan, well under 1 ms);
- the size of the answer to a node after its own status report (target: no full list: a delta of 0 tasks);
- Raft writes for 10,000 status reports from 1,000 nodes at once (target: a handful, not 1,000).
"""

import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from swarmctl.manager.dispatcher import Dispatcher
from swarmctl.state.machine import StateMachine
from swarmctl.state.records import new_node


class MachineStore:
    """Stand-in for RaftStore: the real state machine applied directly (no Raft), counting writes."""

    def __init__(self):
        self.machine = StateMachine()
        self.writes = 0

    def get(self, kind, record_id):
        return self.machine.get(kind, record_id)

    def list(self, kind):
        return self.machine.list(kind)

    def find(self, kind, path, value):
        return self.machine.find(kind, path, value)

    def watch(self, callback):
        return self.machine.watch(callback)

    async def write(self, ops, request_id=None, timeout=3.0):
        self.writes += 1
        return self.machine.apply_batch([(request_id, time.time(), ops)])[0]


def task(task_id, node_id):
    return {"id": task_id, "service_id": "s", "service_name": "web", "slot": int(task_id[1:]), "node_id": node_id,
            "spec": {"image": "nginx", "env": {"A": "x" * 50}}, "spec_version": 1, "desired_state": "running",
            "status": {"state": "assigned", "message": "", "err": "", "timestamp": 0.0, "container_id": None,
                       "exit_code": None}}


def line(name, value, target, ok):
    print(f"{name:<58} {value:>14}   target {target:<28} {'ok' if ok else 'MISSED'}")


async def main(nodes=1000, per_node=10):
    store = MachineStore()
    ops = []
    for i in range(nodes):
        node = new_node(f"n{i}", "manager" if i < 3 else "worker", f"w{i}", "10.0.0.1",
                        manager_addr=f"10.0.0.{i}:2377" if i < 3 else None)
        node["status"]["state"] = "ready"
        node["description"]["heartbeat_period"] = 5.0
        ops.append({"op": "put", "kind": "node", "id": node["id"], "record": node})
        for j in range(per_node):
            t = task(f"t{i * per_node + j}", node["id"])
            ops.append({"op": "put", "kind": "task", "id": t["id"], "record": t})
    store.machine.apply_batch([(None, 1.0, ops)])
    d = Dispatcher(store, 5.0)
    d.start()
    info = {"heartbeat_period": 5.0, "hostname": None}
    for i in range(nodes):
        await d.heartbeat(f"n{i}", info)
    d.manager_addrs()
    start = time.perf_counter()
    rounds = 5
    for _ in range(rounds):
        for i in range(nodes):
            await d.heartbeat(f"n{i}", info)
            d.manager_addrs()  # what the heartbeat route answers with
    per_beat = (time.perf_counter() - start) / (rounds * nodes)
    line("one heartbeat (with its manager list), 1,000 nodes", f"{per_beat * 1e6:.1f} us", "O(1), < 50 us",
         per_beat < 50e-6)
    start = time.perf_counter()
    expired = d._deadlines.pop_expired(time.monotonic())
    scan = time.perf_counter() - start
    line("Down detection pass, 1,000 nodes alive", f"{scan * 1e6:.1f} us", "< 1 ms, no scan",
         scan < 1e-3 and not expired)

    first = await d.assignments("n5", None, 0, deltas=True)
    full_bytes = len(json.dumps(first))
    await d.update_status("n5", [{"task_id": t["id"], "state": "running"} for t in first["tasks"]])
    await asyncio.sleep(0)
    after = await d.assignments("n5", first["version"], 0, deltas=True)
    line("answer after the node's own status report", f"{len(json.dumps(after))} B",
         f"a delta of 0 (full {full_bytes} B)", not after["full"] and not after["changed"])

    writes = store.writes
    start = time.perf_counter()
    counts = await asyncio.gather(*(d.update_status(f"n{i}", [{"task_id": f"t{i * per_node + j}", "state": "running"}
                                                               for j in range(per_node)])
                                    for i in range(nodes) if i != 5))
    elapsed = time.perf_counter() - start
    line(f"Raft entries for {sum(counts)} status reports of {nodes - 1} nodes", f"{store.writes - writes}",
         "~items/200 (200 per entry), not 1/report",
         store.writes - writes <= sum(counts) // 200 + 2)
    line("  time to apply them", f"{elapsed * 1e3:.0f} ms", "-", True)
    await d.stop()


if __name__ == "__main__":
    asyncio.run(main())

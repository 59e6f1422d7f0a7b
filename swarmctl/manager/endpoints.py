"""The endpoint table: for every service, the tasks that take traffic, pushed to every node's mesh.

A task is an endpoint while its desired state is running, its state is running, and its node is not down.
Everything that takes a task out of the pool (scale-down, service rm, drain, an update, a node going down) first
changes its desired state or its node, so every mesh drops it at once, and the agent waits ENDPOINT_DRAIN
before it stops the container (agent/worker.py): no new connection reaches a stopping task.

Kept on the leader from the store's events, the way the dispatcher keeps assignments: a change touches only the
services it concerns, and each change gets a sequence number. Nodes long-poll `POST /v1/session/endpoints`
with the last sequence they applied and get only the services that changed since (or the whole table after an
election or when they fell too far behind). One table serves every node, so 1,000 nodes cost one entry per
change plus their answers; answers to one node are paced like assignments (Dispatcher.answer_interval).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque

from swarmctl.asyncutil import wait_event
from swarmctl.state.records import new_id, task_name

log = logging.getLogger(__name__)

STACK_LABEL = "com.docker.stack.namespace"  # a stack's services (swarmctl/stack): DNS adds "<short>.<stack>"
KEEP = 4096  # changes kept for deltas; an agent further behind gets the whole table
# Changes are gathered this long before the touched services are computed again: a status report batch of a
# large cluster touches many tasks of one service, and the service is rebuilt once for all of them.
FLUSH_DELAY = 0.05


def is_endpoint(task: dict, nodes: dict) -> bool:
    node = nodes.get(task.get("node_id") or "")
    return (task["desired_state"] == "running" and task["status"]["state"] == "running" and node is not None
            and node["status"]["state"] != "down")


def entry(service: dict, tasks: list[dict], nodes: dict) -> dict:
    """What a node's mesh and DNS need of one service."""
    endpoint = service["spec"].get("endpoint") or {}
    members = []
    for task in tasks:
        if is_endpoint(task, nodes):
            members.append({"id": task["id"], "name": task_name(task), "slot": task.get("slot"),
                            "ip": nodes[task["node_id"]]["status"].get("addr"), "ports": task.get("ports") or []})
    members.sort(key=lambda m: (m["slot"] or 0, m["id"]))
    stack = (service["spec"].get("labels") or {}).get(STACK_LABEL)
    return {"id": service["id"], "name": service["spec"]["name"], "mode": endpoint.get("mode") or "vip",
            **({"stack": stack} if stack else {}),
            "vip_index": service.get("vip_index"), "ports": endpoint.get("ports") or [], "tasks": members}


class EndpointTable:
    def __init__(self, store, answer_interval=lambda: 0.0):
        self.store = store
        self._answer_interval = answer_interval
        self.entries: dict[str, dict] = {}
        self._keys: dict[str, str] = {}
        self.seq = 0
        self.floor = 0
        self._log: deque[tuple[int, str]] = deque()
        self._epoch = ""
        self._changed = asyncio.Event()
        self._cancel_watch = None
        self._answered: dict[str, float] = {}
        self._dirty: set[str] = set()
        self._flush_handle = None

    # ---- life --------------------------------------------------------------------------------
    def start(self) -> None:
        self._epoch = new_id(8)
        self._rebuild()
        loop = asyncio.get_running_loop()

        def on_events(_index, events):
            loop.call_soon_threadsafe(self._on_events, events)
        self._cancel_watch = self.store.watch(on_events)

    async def stop(self) -> None:
        if self._cancel_watch:
            self._cancel_watch()
            self._cancel_watch = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ---- the table ---------------------------------------------------------------------------
    def _nodes(self) -> dict:
        return {n["id"]: n for n in self.store.list("node")}

    def _rebuild(self) -> None:
        nodes = self._nodes()
        self.entries = {s["id"]: entry(s, self.store.find("task", "service_id", s["id"]), nodes)
                        for s in self.store.list("service")}
        self._keys = {sid: json.dumps(e, sort_keys=True) for sid, e in self.entries.items()}
        self.seq += 1
        self.floor = self.seq
        self._log.clear()

    def _refresh(self, service_ids: set[str], nodes: dict | None = None) -> None:
        nodes = nodes if nodes is not None else self._nodes()
        touched = False
        for sid in service_ids:
            service = self.store.get("service", sid)
            if service is None:
                if self.entries.pop(sid, None) is None:
                    continue
                self._keys.pop(sid, None)
            else:
                new = entry(service, self.store.find("task", "service_id", sid), nodes)
                key = json.dumps(new, sort_keys=True)
                if self._keys.get(sid) == key:
                    continue
                self.entries[sid], self._keys[sid] = new, key
            self.seq += 1
            self._log.append((self.seq, sid))
            touched = True
        while len(self._log) > KEEP:
            self._log.popleft()
            self.floor = self._log[0][0] - 1 if self._log else self.seq
        if touched:
            self._wake()

    def _on_events(self, events) -> None:
        if any(e[0] == "reset" for e in events):
            self._epoch = new_id(8)
            self._rebuild()
            self._wake()
            return
        services: set[str] = set()
        nodes_changed: set[str] = set()
        for action, kind, record_id, record in events:
            if kind == "service":
                services.add(record_id)
            elif kind == "task" and record is not None and record.get("service_id"):
                sid = record["service_id"]
                if action == "delete" or sid not in self.entries or record.get("status", {}).get("state") == "running" \
                        or any(t["id"] == record_id for t in self.entries[sid]["tasks"]):
                    services.add(sid)
            elif kind == "node":
                nodes_changed.add(record_id)
        for node_id in nodes_changed:
            services.update(t["service_id"] for t in self.store.find("task", "node_id", node_id)
                            if t["desired_state"] == "running")
        if services:
            self._dirty |= services
            if self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_DELAY, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        dirty, self._dirty = self._dirty, set()
        if dirty:
            self._refresh(dirty)

    # ---- the watch ---------------------------------------------------------------------------
    def token(self) -> str:
        return f"{self._epoch}:{self.seq}"

    def _since(self, since: str | None) -> int | None:
        if not since or ":" not in since:
            return None
        epoch, _, seq = since.rpartition(":")
        if epoch != self._epoch or not seq.isdigit():
            return None
        seq_n = int(seq)
        return seq_n if self.floor <= seq_n <= self.seq else None

    async def watch(self, node_id: str, since: str | None, wait: float) -> dict:
        """The table, or the services changed since `since`; waits up to `wait` s for a change when there is none."""
        if since == self.token() and wait > 0:
            await wait_event(self._changed, wait)
            hold = self._answered.get(node_id, 0.0) + self._answer_interval() - time.monotonic()
            if hold > 0:
                await asyncio.sleep(hold)
        self._answered[node_id] = time.monotonic()
        seq = self._since(since)
        if seq is None:
            return {"version": self.token(), "full": True, "services": list(self.entries.values())}
        changed = {sid for s, sid in self._log if s > seq}
        return {"version": self.token(), "full": False,
                "services": [self.entries[sid] for sid in sorted(changed) if sid in self.entries],
                "removed": sorted(sid for sid in changed if sid not in self.entries)}


def apply(current: dict[str, dict], answer: dict) -> dict[str, dict]:
    """The node's side: its table after an answer (the whole table or the changes)."""
    if answer.get("full", True):
        return {s["id"]: s for s in answer.get("services") or []}
    result = dict(current)
    for sid in answer.get("removed") or []:
        result.pop(sid, None)
    for service in answer.get("services") or []:
        result[service["id"]] = service
    return result

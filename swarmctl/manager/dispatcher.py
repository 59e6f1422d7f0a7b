"""The dispatcher: node sessions on the leader.

Heartbeats are kept in memory; only transitions (ready <-> down, a changed address) are written to
Raft, so a thousand nodes heartbeating do not turn into a thousand writes per period. A new leader
gives every node a fresh grace period before it can be marked down, as Swarm does after an election.
"""

from __future__ import annotations

import asyncio
import logging
import time

from swarmctl.errors import Unauthorized, Unavailable
from swarmctl.manager.writes import commit
from swarmctl.state.raft import RaftStore
from swarmctl.state.records import can_move, is_terminal, new_id
from swarmctl.asyncutil import cancel

log = logging.getLogger(__name__)

MISSED_PERIODS = 3


class Dispatcher:
    def __init__(self, store: RaftStore, default_period: float):
        self.store = store
        self.default_period = default_period
        self._last_seen: dict[str, float] = {}
        self._raft_running: dict[str, bool] = {}  # what each manager's last heartbeat said of its replica
        self._task: asyncio.Task | None = None
        self._since = time.monotonic()
        self._epoch = ""
        self._versions: dict[str, int] = {}
        self._waiters: dict[str, asyncio.Event] = {}
        self._cancel_watch = None

    # ---- life --------------------------------------------------------------------------------
    def start(self) -> None:
        self._since = time.monotonic()
        self._last_seen.clear()
        self._raft_running.clear()
        self._epoch = new_id(8)  # assignment versions restart with every leadership term
        self._versions.clear()
        loop = asyncio.get_running_loop()

        def on_events(_index, events):
            if any(e[0] == "reset" for e in events):
                touched = None
            else:
                touched = {e[3].get("node_id") for e in events if e[1] == "task" and e[3] is not None}
                if not touched:
                    return
            loop.call_soon_threadsafe(self._bump, touched)
        self._cancel_watch = self.store.watch(on_events)
        self._task = asyncio.create_task(self._watch_down(), name="dispatcher")

    def _bump(self, node_ids) -> None:
        for node_id in (node_ids if node_ids is not None else list(self._waiters) + list(self._versions)):
            self._versions[node_id] = self._versions.get(node_id, 0) + 1
            waiter = self._waiters.pop(node_id, None)
            if waiter is not None:
                waiter.set()

    async def stop(self) -> None:
        if self._cancel_watch:
            self._cancel_watch()
            self._cancel_watch = None
        for waiter in self._waiters.values():
            waiter.set()
        self._waiters.clear()
        await cancel(self._task)
        self._task = None

    # ---- sessions ----------------------------------------------------------------------------
    async def heartbeat(self, node_id: str, info: dict) -> dict:
        """Record a heartbeat; returns the node record (after any status change was committed)."""
        node = self.store.get("node", node_id)
        if node is None and time.monotonic() - self._since < 3 * self.default_period:
            # a new leader may not have applied the latest joins yet: never revoke in that window
            raise Unavailable("the manager is still catching up; try again")
        if node is None:
            raise Unauthorized(f"node {node_id} is not part of this swarm (it was removed); "
                               "its certificate is no longer accepted")
        self._last_seen[node_id] = time.monotonic()
        self._raft_running[node_id] = bool(info.get("raft_running"))
        sets = []
        if node["status"]["state"] != "ready":
            sets += [(["status", "state"], "ready"), (["status", "message"], "")]
        period = info.get("heartbeat_period")
        if period and node["description"].get("heartbeat_period") != period:
            sets.append((["description", "heartbeat_period"], period))
        for key in ("hostname", "tls"):
            if info.get(key) and node["description"].get(key) != info[key]:
                sets.append((["description", key], info[key]))
        if info.get("addr") and node["status"].get("addr") != info["addr"]:
            sets.append((["status", "addr"], info["addr"]))
        if sets:
            await commit(self.store, [{"op": "patch", "kind": "node", "id": node_id, "set": sets}])
            node = self.store.get("node", node_id) or node
        return node

    def raft_running(self, node_id: str, within: float) -> bool:
        """Whether the node heartbeated in the last `within` seconds and said its Raft replica runs."""
        seen = self._last_seen.get(node_id)
        return seen is not None and time.monotonic() - seen <= within and self._raft_running.get(node_id, False)

    # ---- assignments -------------------------------------------------------------------------
    def _token(self, node_id: str) -> str:
        return f"{self._epoch}:{self._versions.get(node_id, 0)}"

    async def assignments(self, node_id: str, since: str | None, wait: float) -> dict:
        """The node's tasks; with `since` equal to the current version, wait (long-poll) for a change."""
        if self.store.get("node", node_id) is None:
            raise Unauthorized(f"node {node_id} is not part of this swarm")
        if since == self._token(node_id) and wait > 0:
            waiter = self._waiters.setdefault(node_id, asyncio.Event())
            try:
                await asyncio.wait_for(waiter.wait(), wait)
            except asyncio.TimeoutError:
                pass
        token = self._token(node_id)
        tasks = [t for t in self.store.find("task", "node_id", node_id)
                 if t["status"]["state"] != "pending"
                 and (t["desired_state"] == "running" or not is_terminal(t["status"]["state"]))]
        return {"version": token, "tasks": tasks}

    async def update_status(self, node_id: str, updates: list[dict]) -> int:
        """Apply a node's batch of task state changes; only forward moves of its own tasks count."""
        ops = []
        now = time.time()
        for update in updates:
            task = self.store.get("task", update["task_id"])
            if task is None or task.get("node_id") != node_id or not can_move(task["status"]["state"], update["state"]):
                continue
            sets = [(["status", "state"], update["state"]), (["status", "timestamp"], now),
                    (["status", "message"], update.get("message") or update["state"])]
            for key in ("err", "container_id", "exit_code"):
                if update.get(key) is not None:
                    sets.append((["status", key], update[key]))
            ops.append({"op": "patch", "kind": "task", "id": task["id"], "missing_ok": True, "set": sets})
        if ops:
            await commit(self.store, ops)
        return len(ops)

    # ---- down detection ----------------------------------------------------------------------
    def _expired(self, node: dict, now: float) -> bool:
        period = node["description"].get("heartbeat_period") or self.default_period
        last = self._last_seen.get(node["id"], self._since)
        return now - last > MISSED_PERIODS * period

    async def _watch_down(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            ops = [{"op": "patch", "kind": "node", "id": node["id"], "missing_ok": True,
                    "set": [(["status", "state"], "down"), (["status", "message"], "heartbeat failure")]}
                   for node in self.store.list("node")
                   if node["status"]["state"] != "down" and self._expired(node, now)]
            if ops:
                log.info("marking %d node(s) down after %d missed heartbeats: %s", len(ops), MISSED_PERIODS,
                         ", ".join(op["id"] for op in ops))
                try:
                    await commit(self.store, ops)
                except Exception as exc:  # leadership lost or no quorum: try again next round
                    log.debug("could not mark nodes down: %s", exc)

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

log = logging.getLogger(__name__)

MISSED_PERIODS = 3


class Dispatcher:
    def __init__(self, store: RaftStore, default_period: float):
        self.store = store
        self.default_period = default_period
        self._last_seen: dict[str, float] = {}
        self._task: asyncio.Task | None = None
        self._since = time.monotonic()

    # ---- life --------------------------------------------------------------------------------
    def start(self) -> None:
        self._since = time.monotonic()
        self._last_seen.clear()
        self._task = asyncio.create_task(self._watch_down(), name="dispatcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    # ---- sessions ----------------------------------------------------------------------------
    async def heartbeat(self, node_id: str, info: dict) -> dict:
        """Record a heartbeat; returns the node record (after any status change was committed)."""
        node = self.store.machine.get("node", node_id)
        if node is None and time.monotonic() - self._since < 3 * self.default_period:
            # a new leader may not have applied the latest joins yet: never revoke in that window
            raise Unavailable("the manager is still catching up; try again")
        if node is None:
            raise Unauthorized(f"node {node_id} is not part of this swarm (it was removed); "
                               "its certificate is no longer accepted")
        self._last_seen[node_id] = time.monotonic()
        sets = []
        if node["status"]["state"] != "ready":
            sets += [(["status", "state"], "ready"), (["status", "message"], "")]
        period = info.get("heartbeat_period")
        if period and node["description"].get("heartbeat_period") != period:
            sets.append((["description", "heartbeat_period"], period))
        for key in ("hostname",):
            if info.get(key) and node["description"].get(key) != info[key]:
                sets.append((["description", key], info[key]))
        if info.get("addr") and node["status"].get("addr") != info["addr"]:
            sets.append((["status", "addr"], info["addr"]))
        if sets:
            await commit(self.store, [{"op": "patch", "kind": "node", "id": node_id, "set": sets}])
            node = self.store.machine.get("node", node_id) or node
        return node

    def forget(self, node_id: str) -> None:
        self._last_seen.pop(node_id, None)

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
                   for node in self.store.machine.list("node")
                   if node["status"]["state"] != "down" and self._expired(node, now)]
            if ops:
                try:
                    await commit(self.store, ops)
                except Exception as exc:  # leadership lost or no quorum: try again next round
                    log.debug("could not mark nodes down: %s", exc)

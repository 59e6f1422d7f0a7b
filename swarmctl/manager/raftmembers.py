"""The Raft membership reconciler (leader only): node records and the Raft configuration agree.

Two sources say who the managers are: the node records (spec.role) and the Raft configuration. The
membership handlers change both, one after the other, and a crash, a lost change or an operator's repair in
between can leave them apart: a manager record whose node is missing from Raft never joins again by itself
(its role is already saved), and a Raft member whose record is gone or says worker counts towards the quorum
forever. This component repairs both, one change at a time under the membership lock:

- a manager record whose node is not a Raft member, and whose last heartbeat (within 3 periods) says its
  replica runs, is added (RaftStore.add_member, answered once committed);
- a Raft member without a manager record is removed (never this leader itself).

A mismatch must last SETTLE seconds before anything is done, so that the handlers' own two-step changes
(join, promote, demote), which hold the same lock while they run, are never raced.
"""

from __future__ import annotations

import logging
import time

from swarmctl.manager.component import Reconciler

log = logging.getLogger(__name__)

SETTLE = 2.0  # seconds a mismatch must last before it is repaired


class RaftMembers(Reconciler):
    kinds = ("node",)
    interval = 1.0

    def __init__(self, store, membership, dispatcher, default_period: float):
        super().__init__(store)
        self.membership = membership
        self.dispatcher = dispatcher
        self.default_period = default_period
        self._since: dict[tuple[str, str], float] = {}  # mismatch -> when it was first seen

    def _mismatches(self) -> set[tuple[str, str]]:
        members = set(self.store.members())
        wanted: dict[str, dict] = {}
        for node in self.store.find("node", "spec.role", "manager"):  # indexed: woken by every node change
            addr = (node["description"].get("addrs") or {}).get("raft")
            if addr:
                wanted[addr] = node
        found = set()
        for addr, node in wanted.items():
            period = node["description"].get("heartbeat_period") or self.default_period
            if addr not in members and self.dispatcher.raft_running(node["id"], 3 * period):
                found.add(("add", addr))
        for addr in members - set(wanted) - {self.store.self_addr}:
            found.add(("remove", addr))
        return found

    async def reconcile(self) -> None:
        if self.membership.lock.locked():
            return  # a handler is changing the membership; look again on the next pass
        now = time.monotonic()
        current = self._mismatches()
        self._since = {m: self._since.get(m, now) for m in current}
        for action, addr in sorted(m for m, since in self._since.items() if now - since >= SETTLE):
            async with self.membership.lock:
                if (action, addr) not in self._mismatches():
                    continue
                log.warning("Raft membership and node records disagree: %s %s", action, addr)
                if action == "add":
                    await self.store.add_member(addr)
                else:
                    await self.store.remove_member(addr)
                log.info("Raft membership repaired: %s %s", action, addr)
            self._since.pop((action, addr), None)

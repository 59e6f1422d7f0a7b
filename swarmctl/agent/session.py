"""The node session: heartbeats to a manager, failing over to the next one when it goes away.

The agent speaks to managers only through the PeerClient, like any remote node, even on a manager
(it then talks to its own management port). A 401 answer means the swarm removed this node.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from swarmctl.api.peer import PeerClient, PeerUnreachable
from swarmctl.errors import APIError
from swarmctl.asyncutil import cancel

log = logging.getLogger(__name__)


class Session:
    def __init__(self, peer: Callable[[], PeerClient], managers: list[str], period: float,
                 describe: Callable[[], dict], on_answer: Callable[[dict], Awaitable[None]],
                 on_removed: Callable[[str], Awaitable[None]]):
        self._peer = peer
        self.managers = list(managers)
        self.period = period
        self._describe = describe
        self._on_answer = on_answer
        self._on_removed = on_removed
        self._current = 0
        self._task: asyncio.Task | None = None
        self.answered = asyncio.Event()  # set after the first heartbeat a manager accepted

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="session")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            try:
                answer = await self._beat()
            except Removed as exc:
                await self._on_removed(str(exc))
                return
            if answer is not None:
                self.answered.set()
                self.follow_leader(answer.get("leader") if isinstance(answer, dict) else None)
                try:
                    await self._on_answer(answer)
                except Exception:
                    log.exception("handling the heartbeat answer failed")
            # one beat per period from the start of the last one: a slow answer does not push the next beat
            # back (a beat that took its whole timeout, then a full period of sleep, made 2 periods of silence)
            await asyncio.sleep(max(0.2, self.period - (loop.time() - began)))

    def follow_leader(self, leader: str | None) -> None:
        """Talk to the leader the manager named, so no follower proxies every node's traffic (the
        session's routes all run on the leader). An unknown address is ignored."""
        if leader and leader in self.managers and self.managers[self._current] != leader:
            log.info("following the leader at %s", leader)
            self._current = self.managers.index(leader)

    async def _beat(self) -> dict | None:
        try:
            return await self.call("POST", "/v1/session/heartbeat", self._describe(), timeout=max(2.0, self.period))
        except (ManagersUnavailable, APIError) as exc:
            log.info("heartbeat failed: %s", exc)
            return None

    async def call(self, method: str, path: str, body=None, timeout: float = 10.0) -> dict:
        """Call the session's manager, failing over to the next known one; 401 means removed."""
        last = "no managers known"
        tried: list[str] = []
        redirect = None
        for attempt in range(len(self.managers) + 1):
            if redirect is not None:  # a follower named the leader: straight there
                addr, redirect = redirect, None
            else:
                untried = [m for m in self.managers[self._current:] + self.managers[:self._current] if m not in tried]
                if not untried:
                    break
                addr = untried[0]
            tried.append(addr)
            try:
                answer = await self._peer().call(addr, method, path, body, timeout=timeout)
            except PeerUnreachable as exc:
                last = f"manager {addr} unreachable: {exc}"
                continue
            except APIError as exc:
                if exc.status == 401:
                    raise Removed(exc.message) from None
                last = f"manager {addr} refused: {exc.message}"
                leader = getattr(exc, "leader", None)
                if exc.status == 421 and leader and leader != addr:
                    if leader not in self.managers:
                        self.managers.append(leader)
                    redirect = leader
                    continue
                if exc.status < 500:
                    raise
                continue
            if addr in self.managers:
                self._current = self.managers.index(addr)
            managers = answer.get("managers") if isinstance(answer, dict) else None
            if managers and sorted(managers) != sorted(self.managers):
                current = self.managers[self._current]
                self.managers = list(managers)
                self._current = self.managers.index(current) if current in self.managers else 0
            return answer
        raise ManagersUnavailable(last)


class ManagersUnavailable(Exception):
    """No known manager answered."""


class Removed(Exception):
    """The swarm no longer knows this node (its certificate was refused)."""

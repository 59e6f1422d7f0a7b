"""The event-loop lag probe: how long the daemon's asyncio loop was held by something that did not yield.

A task asks to be woken every `interval` seconds and records how late it was woken. Lateness is time in which
the loop served nothing else: no heartbeat, no API request, no Raft callback. The probe keeps the worst lag since
start, the worst of the current and previous minute, and a count of stalls over STALL (0.5 s), and `GET /v1/info`
reports them under "loop_lag" so tests and benchmarks can fail on a stall (issue 8: no planning step may hold the
loop). Written here because the measure is a dozen lines and needs no library; prometheus-client exports it later.
"""

from __future__ import annotations

import asyncio
import time

STALL = 0.5


class LoopLagProbe:
    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.max = 0.0
        self.last = 0.0
        self.stalls = 0
        self.samples = 0
        self._minute = int(time.monotonic() // 60)
        self._minute_max = 0.0
        self._previous_minute_max = 0.0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-lag-probe")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def record(self, lag: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        minute = int(now // 60)
        if minute != self._minute:
            self._previous_minute_max = self._minute_max if minute == self._minute + 1 else 0.0
            self._minute_max = 0.0
            self._minute = minute
        lag = max(0.0, lag)
        self.last = lag
        self.samples += 1
        self.max = max(self.max, lag)
        self._minute_max = max(self._minute_max, lag)
        if lag > STALL:
            self.stalls += 1

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            self.record(time.monotonic() - before - self.interval)

    def view(self) -> dict:
        """Seconds: the last sample, the worst of the last one to two minutes, the worst since start."""
        return {"last": round(self.last, 4), "max_recent": round(max(self._minute_max, self._previous_minute_max), 4),
                "max": round(self.max, 4), "stalls": self.stalls, "stall_threshold": STALL, "samples": self.samples}


_shared: dict[int, tuple[LoopLagProbe, list[int]]] = {}


def acquire() -> LoopLagProbe:
    """The probe of the running loop, shared by every node in the process (a hollow-node process runs many) and
    started by its first user."""
    loop = asyncio.get_running_loop()
    probe, users = _shared.setdefault(id(loop), (LoopLagProbe(), [0]))
    users[0] += 1
    probe.start()
    return probe


async def release(probe: LoopLagProbe) -> None:
    """One user is done with the probe; the last one stops it."""
    for key, (shared, users) in list(_shared.items()):
        if shared is probe:
            users[0] -= 1
            if users[0] <= 0:
                del _shared[key]
                await probe.stop()
            return

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
from collections import deque

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
        self._seconds: deque[list] = deque(maxlen=16)  # [second, worst lag in it], the last few seconds

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
        second = int(now)
        if self._seconds and self._seconds[-1][0] == second:
            self._seconds[-1][1] = max(self._seconds[-1][1], lag)
        else:
            self._seconds.append([second, lag])
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

    def max_since(self, seconds: float, now: float | None = None) -> float:
        """The worst lag of the last `seconds` (up to 15), to the second."""
        now = time.monotonic() if now is None else now
        return max((worst for second, worst in self._seconds if second >= int(now - seconds)), default=0.0)

    def view(self) -> dict:
        """Seconds: the last sample, the worst of the last 5 s, of the last one to two minutes, and since start.
        A watcher that polls every second or so reads max_5s to cover exactly the time it watched."""
        return {"last": round(self.last, 4), "max_5s": round(self.max_since(5), 4),
                "max_recent": round(max(self._minute_max, self._previous_minute_max), 4),
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


# ---- what held the loop: the steps of the leader's planning passes ---------------------------------------
class HeldSteps:
    """The longest single step (the code between two awaits) that each named component ran on the event loop.

    The probe above sees every hold, whatever caused it, and also the time the process waited for a CPU or the
    GIL. This one answers the narrower question of issue 8 (does planning hold the loop?): a reconciler's pass
    runs through `timed()`, which times each resumption of its coroutine, in wall time and in the loop thread's
    CPU time (the CPU figure leaves out time the thread was descheduled or waited for the GIL)."""

    def __init__(self):
        self.worst: dict[str, tuple[float, float]] = {}  # name -> (wall, cpu) of its longest step
        self.steps = 0

    def record(self, name: str, wall: float, cpu: float) -> None:
        self.steps += 1
        old = self.worst.get(name)
        if old is None or wall > old[0]:
            self.worst[name] = (wall, cpu)

    def view(self) -> dict:
        """{name: {"wall": s, "cpu": s}} of each component's longest step, and the overall worst."""
        out = {name: {"wall": round(w, 4), "cpu": round(c, 4)} for name, (w, c) in sorted(self.worst.items())}
        worst = max(self.worst.values(), default=(0.0, 0.0))
        return {"components": out, "max": round(worst[0], 4), "max_cpu": round(max((c for _, c in self.worst.values()),
                                                                                  default=0.0), 4),
                "steps": self.steps}


held = HeldSteps()  # one per process: a manager daemon runs one set of reconcilers


class _TimedSteps:
    """Awaitable that drives a coroutine step by step, timing each step (the asyncio Task still schedules it)."""

    __slots__ = ("coro", "name", "stats")

    def __init__(self, coro, name: str, stats: HeldSteps):
        self.coro, self.name, self.stats = coro, name, stats

    def __await__(self):
        send, throw = self.coro.send, self.coro.throw
        value, error = None, None
        while True:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                yielded = throw(error) if error is not None else send(value)
            except StopIteration as stop:
                self.stats.record(self.name, time.perf_counter() - wall, time.thread_time() - cpu)
                return stop.value
            except BaseException:
                self.stats.record(self.name, time.perf_counter() - wall, time.thread_time() - cpu)
                raise
            self.stats.record(self.name, time.perf_counter() - wall, time.thread_time() - cpu)
            try:
                value, error = (yield yielded), None
            except BaseException as exc:  # cancellation or an exception thrown into the waiting coroutine
                value, error = None, exc


def timed(coro, name: str, stats: HeldSteps | None = None):
    """Await `coro` with each of its steps on the loop timed under `name`."""
    return _TimedSteps(coro, name, held if stats is None else stats)


async def run_timed(coro, name: str):
    """A coroutine for asyncio.create_task that runs `coro` with its steps timed under `name`."""
    return await timed(coro, name)

"""The planning-step timer (node/looplag.py): each resumption of a reconciler's coroutine is timed, so the
longest hold of the loop by planning is known apart from the other causes of loop lag (issue 8)."""

import asyncio
import time

import pytest

from swarmctl.manager.component import Reconciler
from swarmctl.node import looplag
from swarmctl.node.looplag import HeldSteps, timed


def test_each_step_is_timed_and_the_result_passes_through():
    stats = HeldSteps()

    async def work():
        time.sleep(0.06)         # holds the loop: one long step
        await asyncio.sleep(0.05)  # waiting is not holding
        return "done"

    async def main():
        return await timed(work(), "planner", stats)
    assert asyncio.run(main()) == "done"
    view = stats.view()
    assert 0.06 <= view["components"]["planner"]["wall"] < 0.1
    assert view["max"] == view["components"]["planner"]["wall"]
    assert view["components"]["planner"]["cpu"] < 0.03  # time.sleep is no CPU: the figure tells them apart
    assert stats.steps == 2


def test_exceptions_and_cancellation_reach_the_coroutine():
    stats = HeldSteps()
    seen = []

    async def fails():
        await asyncio.sleep(0)
        raise ValueError("boom")

    async def sleeper():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def main():
        with pytest.raises(ValueError):
            await timed(fails(), "f", stats)
        task = asyncio.ensure_future(timed(sleeper(), "s", stats))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(main())
    assert seen == ["cancelled"]
    assert set(stats.view()["components"]) == {"f", "s"}


def test_a_reconciler_pass_is_timed_under_its_class_name():
    class Busy(Reconciler):
        async def reconcile(self):
            time.sleep(0.03)
            self.done.set()

    class Store:
        def watch(self, callback):
            return lambda: None

    async def main():
        busy = Busy(Store())
        busy.done = asyncio.Event()
        busy.start()
        try:
            await asyncio.wait_for(busy.done.wait(), 5)
        finally:
            await busy.stop()
    before = looplag.held.worst.get("Busy", (0.0, 0.0))[0]
    asyncio.run(main())
    assert looplag.held.worst["Busy"][0] >= max(0.03, before) - 1e-9

"""The loop-lag probe measures how long the event loop was held, and is shared by the nodes of one process."""

import asyncio
import time

from swarmctl.node import looplag


def test_a_blocking_call_shows_as_lag_and_a_stall():
    async def main():
        probe = looplag.acquire()
        await asyncio.sleep(0.1)
        quiet = probe.view()
        time.sleep(0.6)  # hold the loop, as a planning pass that does not yield would
        await asyncio.sleep(0.1)
        held = probe.view()
        await looplag.release(probe)
        return quiet, held
    quiet, held = asyncio.run(main())
    assert quiet["max"] < 0.3 and quiet["stalls"] == 0
    assert held["max"] >= 0.55 and held["max_recent"] >= 0.55 and held["stalls"] == 1


def test_the_probe_is_shared_and_stops_with_its_last_user():
    async def main():
        a, b = looplag.acquire(), looplag.acquire()
        assert a is b
        await looplag.release(a)
        running_after_one = a._task is not None
        await looplag.release(b)
        return running_after_one, a._task
    running_after_one, task = asyncio.run(main())
    assert running_after_one and task is None


def test_the_recent_maximum_forgets_old_minutes():
    probe = looplag.LoopLagProbe()
    probe.record(0.7, now=60.0)
    probe.record(0.01, now=125.0)  # the next minute: the previous minute's worst still counts
    assert probe.view()["max_recent"] == 0.7
    probe.record(0.2, now=245.0)  # two minutes on: the stall is no longer recent
    view = probe.view()
    assert view["max"] == 0.7 and view["max_recent"] == 0.2 and view["stalls"] == 1


def test_the_last_seconds_window_forgets_older_lags():
    from swarmctl.node.looplag import LoopLagProbe
    probe = LoopLagProbe()
    probe.record(0.9, now=100.2)   # a lag before the watcher began
    probe.record(0.05, now=108.0)
    probe.record(0.2, now=109.5)
    assert probe.max_since(5, now=110.0) == 0.2
    assert probe.max_since(15, now=110.0) == 0.9
    assert probe.max_since(5, now=200.0) == 0.0

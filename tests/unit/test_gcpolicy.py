"""The daemon's garbage-collector policy: long-lived objects are frozen out of full collections."""

import asyncio
import gc
import time

from swarmctl.node import gcpolicy


def test_frozen_records_make_a_full_collection_cheap():
    records = [{"id": str(i), "spec": {"image": "busybox", "env": {"A": str(i)}}, "status": {"state": "running"}}
               for i in range(300_000)]
    try:
        start = time.perf_counter()
        gc.collect()
        unfrozen = time.perf_counter() - start
        gcpolicy.freeze()
        assert gc.get_freeze_count() >= len(records)
        start = time.perf_counter()
        gc.collect()
        frozen = time.perf_counter() - start
        assert frozen < unfrozen / 3, (frozen, unfrozen)
    finally:
        gc.unfreeze()
    del records


def test_the_policy_task_freezes_and_thaws(monkeypatch):
    thawed = []
    monkeypatch.setattr(gc, "unfreeze", lambda real=gc.unfreeze: (thawed.append(1), real())[1])

    async def main():
        task = asyncio.create_task(gcpolicy.run(freeze_every=0.01, thaw_every=0.02))
        await asyncio.sleep(0.2)
        task.cancel()
        count = gc.get_freeze_count()
        return count
    try:
        assert asyncio.run(main()) > 0
        assert thawed
    finally:
        gc.unfreeze()


def test_no_automatic_full_collection_walks_a_burst():
    """A burst of new long-lived objects (100k tasks) must not start full collections on its own: each walked
    every unfrozen object with the GIL held (issue 8: 1-2 s loop stalls at 1,000 nodes)."""
    old = gc.get_threshold()
    full = []

    def on_gc(phase, info):
        if phase == "start" and info["generation"] == 2:
            full.append(1)
    try:
        gcpolicy.install()
        assert gc.get_threshold() == (gcpolicy.YOUNG_THRESHOLD, gcpolicy.MIDDLE_THRESHOLD, gcpolicy.NO_AUTOMATIC_FULL)
        gc.callbacks.append(on_gc)
        burst = [{"id": str(i), "spec": {"image": "busybox", "args": ["sleep", "1d"]}, "status": {"state": "new"}}
                 for i in range(200_000)]
        assert not full, f"{len(full)} automatic full collection(s) during the burst"
        gcpolicy.freeze()
        assert gc.get_freeze_count() >= len(burst)
        del burst
    finally:
        if on_gc in gc.callbacks:
            gc.callbacks.remove(on_gc)
        gc.set_threshold(*old)
        gc.unfreeze()

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
        assert gcpolicy.freeze() >= len(records)
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

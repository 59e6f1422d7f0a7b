"""Garbage-collector policy of the daemon: long-lived records are moved out of the collector's sight.

A manager holds the cluster state as plain dicts: at 100,000 tasks, a few million objects that live until a record
is replaced. CPython's full (generation 2) collection walks all of them: 0.2-0.9 s with the event loop and every
other thread held (measured by bench/orchestrator.py), which is a stall no planning split can avoid. The
records are replaced, never mutated, and hold no reference cycles, so they need no cycle detection at all.

Freezing alone is not enough while a burst allocates: 100,000 new tasks are millions of objects that stay
unfrozen until the next freeze, and CPython starts a full collection on its own whenever the survivors since the
last one exceed a quarter of the long-lived objects. Each of those walked everything not yet frozen, several
times per burst, with the GIL held: 24% of a manager's GIL time and loop stalls of 1-2 s at 1,000 nodes, long
enough to cost the leader its lease (bench/scale.py). `install()` therefore turns the automatic full collection
off, and the young generation collects every 50,000 allocations instead of 700 (see YOUNG_THRESHOLD); full
collections happen only at the thaw below.

So every FREEZE_EVERY seconds the daemon collects the young generations (cheap) and then `gc.freeze()`s what
survived: those objects move to the permanent generation, which collections never walk. Objects freed later by
reference counting (a replaced record) are freed as usual; only cyclic garbage that was alive at a freeze stays
until the next thaw. Every THAW_EVERY seconds `gc.unfreeze()` hands everything back for one full collection, which
bounds that leftover; the one stall it costs is logged with its duration.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

FREEZE_EVERY = 20.0
THAW_EVERY = 6 * 3600.0


async def run(freeze_every: float = FREEZE_EVERY, thaw_every: float = THAW_EVERY) -> None:
    """Run until cancelled (a task of the daemon's lifetime)."""
    last_thaw = time.monotonic()
    while True:
        await asyncio.sleep(freeze_every)
        if time.monotonic() - last_thaw >= thaw_every:
            gc.unfreeze()
            start = time.perf_counter()
            gc.collect()
            log.info("full garbage collection of %s objects took %.3fs", len(gc.get_objects()),
                     time.perf_counter() - start)
            last_thaw = time.monotonic()
        freeze()


NO_AUTOMATIC_FULL = 2 ** 31 - 1  # generation-1 collections before a full one: never, in practice


# Allocations between two young collections. CPython's 700 made a young collection every few hundred task dicts,
# and each one traversed every young container, such as a fresh list of 100k tasks, again: 17% of a loaded
# leader's GIL time, and 44% of a planning-shaped microbenchmark (45% less run time at 50,000).
YOUNG_THRESHOLD = 50_000
# Young collections before a middle one: the middle generation holds their survivors, up to 2 x 50,000 objects
# (a 10-20 ms walk); a larger figure let it grow to a million objects in a burst of new tasks.
MIDDLE_THRESHOLD = 2


def install() -> None:
    """Young collections every YOUNG_THRESHOLD allocations, no automatic full collection; then freeze."""
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, NO_AUTOMATIC_FULL)
    freeze()


def freeze() -> None:
    """Collect the young generations, then freeze what is left. (gc.get_freeze_count() walks the whole permanent
    generation, millions of objects at 100k tasks: it is not called here.)"""
    gc.collect(1)
    gc.freeze()

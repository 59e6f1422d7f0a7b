"""Small asyncio helpers shared by the daemon's components."""

from __future__ import annotations

import asyncio


async def cancel(*tasks: asyncio.Task | None) -> None:
    """Cancel tasks and wait until they have ended, whatever they raised on the way out.

    A task that swallowed its cancellation (Python 3.11's wait_for can, when the awaited thing completes as
    the cancel arrives) is cancelled again until it ends, so stopping a component never hangs."""
    live = [t for t in tasks if t is not None and t is not asyncio.current_task()]
    for task in live:
        task.cancel()
    for task in live:
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            if not task.done():
                task.cancel()
        if not task.cancelled():
            task.exception()  # retrieved: whatever it raised on the way out is of no interest here


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for an event at most `timeout` seconds; True if it was set. Unlike asyncio.wait_for in Python 3.11,
    asyncio.timeout never swallows a cancellation that arrives as the event is set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return event.is_set()

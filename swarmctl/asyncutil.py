"""Small asyncio helpers shared by the daemon's components."""

from __future__ import annotations

import asyncio


async def cancel(*tasks: asyncio.Task | None) -> None:
    """Cancel tasks and wait until they have ended, whatever they raised on the way out."""
    live = [t for t in tasks if t is not None and t is not asyncio.current_task()]
    for task in live:
        task.cancel()
    for task in live:
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass

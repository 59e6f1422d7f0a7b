"""The life of a `swarmctl hollow` process: start the nodes, print one summary line, run until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from swarmctl.hollow.config import HollowConfig, HollowConfigError
from swarmctl.hollow.node import HollowError
from swarmctl.hollow.process import HollowProcess
from swarmctl.node import gcpolicy


async def serve(config: HollowConfig, ready=None) -> int:
    process = HollowProcess(config)
    gcpolicy.install()  # a hundred nodes' sessions and tasks: the daemon's collector policy (node/gcpolicy.py)
    collector = asyncio.create_task(gcpolicy.run(), name="gc-policy")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(process.start())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():  # stopped while joining
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return 0
        try:
            starting.result()
        except (HollowError, HollowConfigError) as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        print(process.summary(), flush=True)
        if ready is not None:
            ready(process)
        await stopped
        return 0
    finally:
        stopped.cancel()
        collector.cancel()
        await process.stop()


def run(config: HollowConfig, log_level: str = "warning") -> int:
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        import uvloop  # a faster event loop where available; asyncio's own otherwise
    except ImportError:
        return asyncio.run(serve(config))
    return uvloop.run(serve(config))

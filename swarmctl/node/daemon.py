"""`swarmctl daemon`: run one node until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from swarmctl.node.config import ConfigError, DaemonConfig
from swarmctl.node.node import Node, StartupError


async def _serve(config: DaemonConfig) -> int:
    node = Node(config)
    try:
        await node.start()
    except StartupError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        await node.stop()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger(__name__).info("swarmctl daemon ready on %s", config.socket)
    await stop.wait()
    await node.stop()
    return 0


def run(config: DaemonConfig, log_level: str = "info") -> int:
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        config.validate()
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    try:
        import uvloop  # a faster event loop where available; asyncio's own otherwise
    except ImportError:
        return asyncio.run(_serve(config))
    return uvloop.run(_serve(config))

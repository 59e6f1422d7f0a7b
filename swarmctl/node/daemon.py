"""`swarmctl daemon`: run one node until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from swarmctl.node import gcpolicy
from swarmctl.node.config import ConfigError, DaemonConfig
from swarmctl.node.node import Node, StartupError


class _ResentEntries(logging.Filter):
    """pysyncobj logs a resent batch of identical, already-applied entries as critical; it is not.

    With appendEntriesUseBatch=False the leader may send the same entries twice; the follower
    truncates and re-adds them unchanged and applies nothing twice. Keep the message, at debug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.CRITICAL and "truncating already-applied" in record.getMessage():
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


async def _serve(config: DaemonConfig) -> int:
    node = Node(config)
    try:
        await node.start()
    except StartupError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        await node.stop()
        return 1
    web = None
    if config.web_bind() is not None:
        from swarmctl.web.auth import BasicAuth
        from swarmctl.web.server import WebView
        host, port = config.web_bind()
        web = WebView(node, host, port, BasicAuth(config.web_users) if config.web_users else None)
        try:
            await web.start()
        except OSError as exc:
            print(f"Error: cannot serve the web view on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
            await node.stop()
            return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger(__name__).info("swarmctl daemon ready on %s", config.socket)
    gcpolicy.install()  # the state loaded at start (a snapshot of 100k tasks) is out of the collector's way at once
    collector = asyncio.create_task(gcpolicy.run(), name="gc-policy")
    await stop.wait()
    collector.cancel()
    if web is not None:
        await web.stop()
    await node.stop()
    return 0


def run(config: DaemonConfig, log_level: str = "info") -> int:
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("pysyncobj.syncobj").addFilter(_ResentEntries())
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

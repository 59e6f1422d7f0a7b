"""The management port's listener: TLS in front of the aiohttp app, with bounds a slow or hostile client
cannot get around.

aiohttp's own sites take an SSL context but set no handshake timeout, count no connections and time out
neither slow headers nor slow bodies (its keep-alive timeout starts only after a first request). asyncio
has the pieces but no server that combines them, so this module does, in about a hundred lines:

- every accepted connection counts from its accept, TLS handshake included, against MAX_CONNECTIONS;
  one over the limit is closed as soon as its handshake ends;
- the TLS handshake must finish within HANDSHAKE_TIMEOUT (create_server's ssl_handshake_timeout);
- between requests, a connection may stay idle for IDLE_TIMEOUT; from the first byte of a request, its
  headers must be complete within HEADER_TIMEOUT (a slowloris is cut off there); the body has
  BODY_TIMEOUT, enforced where it is read (server.APIServer);
- at most MAX_REQUESTS requests are handled at once (429 beyond), enforced by the server's middleware
  through `request_started`/`request_finished`.

The counting does not leak: a connection is released exactly once, when the TLS connection is lost, or
HANDSHAKE_TIMEOUT + 1 s after its accept if its handshake never completed (asyncio does not tell the
protocol of a failed handshake).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

from swarmctl.api import limits

log = logging.getLogger(__name__)

# Connections the kernel queues before the loop accepts them (capped by net.core.somaxconn, 4096 by default).
# At 1,000 nodes joining at once the 1,024 of before overflowed: SYNs were dropped, and the clients' SYN
# retries (1, 3, 7 s) delayed first heartbeats past the Down deadline (bench/scale.py).
LISTEN_BACKLOG = 4096


class _Gate(asyncio.Protocol):
    """One connection: counted from its accept, then the aiohttp handler's stand-in as protocol."""

    def __init__(self, listener: "TLSListener"):
        self.listener = listener
        self.handler = None            # aiohttp's RequestHandler once the handshake is done
        self.transport = None          # the TLS transport
        self._counted = False
        self._busy = 0                 # requests of this connection being handled
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = None
        self._orphan: asyncio.TimerHandle | None = None
        if listener.open < limits.MAX_CONNECTIONS:
            listener.open += 1
            self._counted = True
            listener.gates.add(self)
            # asyncio tells the app protocol nothing of a handshake that fails or times out (it aborts that
            # connection at HANDSHAKE_TIMEOUT): one that has not completed by then is released here
            self._orphan = asyncio.get_running_loop().call_later(limits.HANDSHAKE_TIMEOUT + 1, self._release)

    def connection_made(self, transport) -> None:
        """The TLS handshake is done."""
        if self._orphan is not None:
            self._orphan.cancel()
            self._orphan = None
        if not self._counted or self.listener.closing:
            self.listener.refused += not self._counted
            transport.abort()
            return
        self.transport = transport
        self.handler = self.listener.app_server()
        self.listener.by_handler[self.handler] = self
        self.handler.connection_made(transport)
        self._arm("idle")

    def _release(self) -> None:
        self._cancel_timer()
        if self._orphan is not None:
            self._orphan.cancel()
            self._orphan = None
        if self._counted:
            self._counted = False
            self.listener.open -= 1
        self.listener.gates.discard(self)
        if self.handler is not None:
            self.listener.by_handler.pop(self.handler, None)

    # ---- the TLS connection: what aiohttp's handler would receive ---------------------------------
    def data_received(self, data: bytes) -> None:
        if self.handler is None:
            return
        if not self._busy and self._timer_kind != "headers":
            self._arm("headers")  # a request begins: its headers have HEADER_TIMEOUT from now
        self.handler.data_received(data)

    def eof_received(self):
        return self.handler.eof_received() if self.handler is not None else None

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

    def connection_lost(self, exc) -> None:
        handler = self.handler
        self._release()
        if handler is not None:
            handler.connection_lost(exc)

    # ---- timers ----------------------------------------------------------------------------------
    def request_started(self) -> None:
        self._busy += 1
        self._cancel_timer()

    def request_finished(self) -> None:
        self._busy = max(0, self._busy - 1)
        if not self._busy and self.transport is not None:
            self._arm("idle")

    def _arm(self, kind: str) -> None:
        self._cancel_timer()
        delay = limits.HEADER_TIMEOUT if kind == "headers" else limits.IDLE_TIMEOUT
        self._timer_kind = kind
        self._timer = asyncio.get_running_loop().call_later(delay, self._expired)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_kind = None

    def _expired(self) -> None:
        kind, self._timer, self._timer_kind = self._timer_kind, None, None
        if self._busy or self.transport is None:
            return
        if kind == "headers":
            self.listener.slow += 1
            log.debug("closing a connection whose request headers took more than %gs", limits.HEADER_TIMEOUT)
            self.transport.abort()
        else:
            self.transport.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        else:
            self._release()


class TLSListener:
    """Serve `app_server` (aiohttp's protocol factory, AppRunner.server) on `sock` over TLS, with the limits above."""

    def __init__(self, app_server, ssl_context: ssl.SSLContext):
        self.app_server = app_server
        self.ssl_context = ssl_context
        self.open = 0          # connections counted now
        self.requests = 0      # requests being handled now
        self.refused = 0       # connections closed at once for being over MAX_CONNECTIONS
        self.slow = 0          # connections cut off for slow headers
        self.gates: set[_Gate] = set()
        self.by_handler: dict = {}
        self.closing = False
        self._server: asyncio.AbstractServer | None = None

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Gate(self), sock=sock, backlog=LISTEN_BACKLOG, ssl=self.ssl_context,
                                                ssl_handshake_timeout=limits.HANDSHAKE_TIMEOUT)

    def gate_of(self, request) -> _Gate | None:
        return self.by_handler.get(request.protocol)

    async def stop(self) -> None:
        self.closing = True
        if self._server is not None:
            self._server.close()
        for gate in list(self.gates):
            gate.close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except asyncio.TimeoutError:
                pass
            self._server = None

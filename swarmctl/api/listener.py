"""The management port's listener: TLS in front of the aiohttp app, with bounds a slow or hostile client
cannot get around.

aiohttp's own sites take an SSL context but set no handshake timeout, count no connections and time out
neither slow headers nor slow bodies (its keep-alive timeout starts only after a first request). asyncio
has the pieces but no server that combines them, so this module does, in about a hundred lines:

- every accepted connection counts from its first moment, TLS handshake included, against
  MAX_CONNECTIONS; one over the limit is closed at once, before any TLS work or buffer is spent on it;
- the TLS handshake must finish within HANDSHAKE_TIMEOUT (loop.start_tls);
- between requests, a connection may stay idle for IDLE_TIMEOUT; from the first byte of a request, its
  headers must be complete within HEADER_TIMEOUT (a slowloris is cut off there); the body has
  BODY_TIMEOUT, enforced where it is read (server.APIServer);
- at most MAX_REQUESTS requests are handled at once (429 beyond), enforced by the server's middleware
  through `request_started`/`request_finished`.

The counting does not leak: a connection is released exactly once, when its handshake fails or when the
TLS connection is lost.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

from swarmctl.api import limits

log = logging.getLogger(__name__)


class _Gate(asyncio.Protocol):
    """One connection: counted, handshaken, timed, then the aiohttp handler's stand-in as protocol."""

    def __init__(self, listener: "TLSListener"):
        self.listener = listener
        self.handler = None            # aiohttp's RequestHandler once the handshake is done
        self.transport = None          # the TLS transport
        self._raw = None
        self._counted = False
        self._early: list[bytes] = []  # decrypted bytes that arrived before the handler was attached
        self._busy = 0                 # requests of this connection being handled
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = None

    # ---- the raw TCP connection ------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        if self.transport is not None:  # the TLS transport, after start_tls: nothing to do here
            return
        self._raw = transport
        listener = self.listener
        if listener.open >= limits.MAX_CONNECTIONS:
            listener.refused += 1
            transport.abort()
            return
        listener.open += 1
        self._counted = True
        transport.pause_reading()  # nothing is read before start_tls owns the connection
        listener.gates.add(self)
        asyncio.get_running_loop().create_task(self._handshake())

    async def _handshake(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(self._raw, self, self.listener.ssl_context, server_side=True,
                                       ssl_handshake_timeout=limits.HANDSHAKE_TIMEOUT)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError, RuntimeError) as exc:
            log.debug("TLS handshake failed: %s", exc)
            self._raw.abort()
            self._release()
            return
        if tls is None or self.listener.closing:
            if tls is not None:
                tls.abort()
            self._release()
            return
        self.transport = tls
        self.handler = self.listener.app_server()
        self.listener.by_handler[self.handler] = self
        self.handler.connection_made(tls)
        early, self._early = self._early, []
        for data in early:
            self.handler.data_received(data)
        if not self._busy:
            self._arm("idle" if not early else "headers")

    def _release(self) -> None:
        self._cancel_timer()
        if self._counted:
            self._counted = False
            self.listener.open -= 1
        self.listener.gates.discard(self)
        if self.handler is not None:
            self.listener.by_handler.pop(self.handler, None)

    # ---- the TLS connection (this object is the protocol start_tls delivers to) --------------------
    def data_received(self, data: bytes) -> None:
        if self.handler is None:
            self._early.append(data)
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
        (self.transport or self._raw).abort()


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
        self._server = await loop.create_server(lambda: _Gate(self), sock=sock, backlog=1024)

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

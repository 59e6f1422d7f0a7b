"""The client every node uses to reach another node's management port over (mutual) TLS.

Joiners, agents and forwarding managers all speak through this one client, so a remote node and
a local one look the same to a manager.
"""

from __future__ import annotations

import asyncio
import json
import ssl

import aiohttp

from swarmctl.errors import APIError


# Connections per client. A follower forwards every long-poll of the agents on it to the leader: with 1,000
# nodes that is up to 1,000 requests open at once to one host, so the pool must hold them all (it was 64,
# and the 65th long-poll waited in the pool for a connection).
POOL_LIMIT = 2048


class PeerUnreachable(Exception):
    """The peer could not be reached at all (refused, timed out, TLS handshake failed)."""


class PeerClient:
    def __init__(self, ssl_context: ssl.SSLContext, timeout: float = 5.0, limit: int = POOL_LIMIT):
        self.ssl_context = ssl_context
        self.limit = limit
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.ssl_context, limit=self.limit, limit_per_host=self.limit,
                                            force_close=False)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def request(self, addr: str, method: str, path: str, body=None, headers=None,
                      timeout: float | None = None) -> tuple[int, dict | str]:
        """Send one request; returns (status, decoded JSON or text). Raises PeerUnreachable."""
        status, content_type, raw = await self.request_raw(addr, method, path, body, headers, timeout)
        text = raw.decode("utf-8", errors="replace")
        if content_type == "application/json":
            try:
                return status, json.loads(text)
            except ValueError:
                pass
        return status, text

    async def request_raw(self, addr: str, method: str, path: str, body=None, headers=None,
                          timeout: float | None = None) -> tuple[int, str, bytes]:
        """Send one request; returns (status, content type, body bytes) undecoded, for relaying an answer
        as it is (a follower forwarding to the leader). Raises PeerUnreachable."""
        url = f"https://{addr}{path}"
        try:
            async with self._get_session().request(
                    method, url, json=body, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout or self.timeout)) as response:
                return response.status, response.content_type, await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, ssl.SSLError, OSError) as exc:
            raise PeerUnreachable(f"{addr}: {exc.__class__.__name__}: {exc}".rstrip(": ")) from None

    async def call(self, addr: str, method: str, path: str, body=None, headers=None,
                   timeout: float | None = None) -> dict:
        """Like request, but a non-2xx answer raises APIError with the peer's message."""
        status, data = await self.request(addr, method, path, body, headers, timeout)
        if status >= 300:
            message = data.get("message") if isinstance(data, dict) else str(data)
            error = APIError(message or f"HTTP {status}", status)
            error.leader = data.get("leader") if isinstance(data, dict) else None  # with a 421 from a follower
            raise error
        return data

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

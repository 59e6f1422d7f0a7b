"""Node certificate renewal: every node renews its own certificate long before it expires.

Like Swarm, a node asks for a new certificate at a random point between 50% and 80% of its
certificate's lifetime, so that the nodes of a cluster created at one moment do not all renew at
once. The new certificate comes from the leader over the node's current mutual-TLS session
(/v1/session/certificate) with a fresh key; the node then loads it into the TLS contexts it already
serves and calls with, so open connections and the node's session are not interrupted.  A node that
was away until its certificate expired cannot renew it: its handshakes fail and it must join again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable

from swarmctl.asyncutil import cancel
from swarmctl.manager.ca import CLOCK_SKEW
from swarmctl.security.certs import load_certificate

log = logging.getLogger(__name__)

RENEW_FROM, RENEW_UNTIL = 0.5, 0.8  # share of the lifetime after which a renewal is due (random within)
RETRY_MIN, RETRY_MAX = 1.0, 30.0    # seconds between failed attempts, doubling
MAX_SLEEP = 3600.0                  # re-check at least hourly (clock changes, a certificate replaced meanwhile)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def renewal_due(cert_pem: bytes, rng: random.Random | None = None) -> datetime:
    """When a certificate should be renewed: a random point in 50-80% of its lifetime.

    Certificates are backdated by CLOCK_SKEW at issue; the lifetime counts from the real issue time."""
    cert = load_certificate(cert_pem)
    issued = cert.not_valid_before_utc + CLOCK_SKEW
    lifetime = cert.not_valid_after_utc - issued
    if lifetime <= timedelta(0):
        return issued
    share = (rng or random).uniform(RENEW_FROM, RENEW_UNTIL)
    return issued + lifetime * share


class CertRenewer:
    """Sleeps until the current certificate's renewal is due, renews it, and starts over."""

    def __init__(self, current_cert: Callable[[], bytes], renew: Callable[[], Awaitable[None]],
                 rng: random.Random | None = None):
        self._current_cert = current_cert
        self._renew = renew
        self._rng = rng or random.Random()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cert-renewal")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        planned_for: bytes | None = None
        due = _now()
        retry = RETRY_MIN
        while True:
            cert = self._current_cert()
            if cert != planned_for:  # a new certificate (renewed here, or by a role change)
                planned_for, due, retry = cert, renewal_due(cert, self._rng), RETRY_MIN
                log.info("node certificate valid until %s; renewal due at %s",
                         load_certificate(cert).not_valid_after_utc.isoformat(timespec="seconds"),
                         due.isoformat(timespec="seconds"))
            wait = (due - _now()).total_seconds()
            if wait > 0:
                await asyncio.sleep(min(wait, MAX_SLEEP))
                continue
            try:
                await self._renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                expiry = load_certificate(cert).not_valid_after_utc
                level = logging.ERROR if expiry <= _now() else logging.WARNING
                log.log(level, "renewing the node certificate (valid until %s) failed, retrying in %.0f s: %s",
                        expiry.isoformat(timespec="seconds"), retry, exc)
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX)

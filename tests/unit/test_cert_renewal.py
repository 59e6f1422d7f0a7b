"""Node certificate lifetime and renewal timing (swarmctl/node/certrenewal.py, manager/ca.py)."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest

from swarmctl.manager.ca import CLOCK_SKEW, create_root_ca, sign_node_certificate
from swarmctl.node import certrenewal
from swarmctl.node.certrenewal import CertRenewer, renewal_due
from swarmctl.security.certs import generate_key, load_certificate, make_csr

CLUSTER = "c" * 25


@pytest.fixture(scope="module")
def ca_pair():
    return create_root_ca(CLUSTER)


def issue(ca_pair, lifetime: timedelta) -> bytes:
    return sign_node_certificate(ca_pair[0], ca_pair[1], make_csr(generate_key()), "n" * 25, "worker", CLUSTER,
                                 lifetime=lifetime)


def test_lifetime_wins_over_days(ca_pair):
    cert = load_certificate(issue(ca_pair, timedelta(minutes=1)))
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == CLOCK_SKEW + timedelta(minutes=1)


def test_renewal_is_due_between_half_and_four_fifths_of_the_lifetime(ca_pair):
    pem = issue(ca_pair, timedelta(hours=10))
    cert = load_certificate(pem)
    issued = cert.not_valid_before_utc + CLOCK_SKEW
    rng = random.Random(7)
    shares = [(renewal_due(pem, rng) - issued) / timedelta(hours=10) for _ in range(200)]
    assert 0.5 <= min(shares) < 0.55 and 0.75 < max(shares) <= 0.8


def run_renewer(ca_pair, failures: int = 0, seconds: float = 1.5) -> int:
    """Run a renewer on a certificate that is due within 0.8 s; the first `failures` renewals fail.
    Returns how many renewals were attempted."""
    current = {"pem": issue(ca_pair, timedelta(seconds=1))}
    calls = []

    async def renew():
        calls.append(1)
        if len(calls) <= failures:
            raise ConnectionError("no manager answered")
        current["pem"] = issue(ca_pair, timedelta(days=90))

    async def scenario():
        renewer = CertRenewer(lambda: current["pem"], renew)
        renewer.start()
        await asyncio.sleep(seconds)
        await renewer.stop()
    asyncio.run(scenario())
    return len(calls)


def test_renewer_renews_a_due_certificate_once(ca_pair):
    assert run_renewer(ca_pair) == 1


def test_renewer_retries_after_a_failure(ca_pair, monkeypatch):
    monkeypatch.setattr(certrenewal, "RETRY_MIN", 0.05)
    assert run_renewer(ca_pair, failures=2) == 3

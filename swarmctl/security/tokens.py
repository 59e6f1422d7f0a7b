"""Docker-Swarm-style join tokens: ``SWMTKN-1-<digest>-<secret>``.

The digest pins the cluster's root CA (so a joiner can verify the CA it
downloads over an unauthenticated channel); the secret authorises the join.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

PREFIX = "SWMTKN"
VERSION = "1"
DIGEST_LEN = 50
SECRET_LEN = 25
SECRET_BYTES = 16

_BASE36 = string.digits + string.ascii_lowercase
_BASE36_SET = frozenset(_BASE36)


class TokenError(ValueError):
    """A join token is malformed; the message is safe to show to users."""


@dataclass(frozen=True)
class JoinToken:
    """The two meaningful parts of a parsed join token."""

    digest: str
    secret: str


def _to_base36(value: int, width: int) -> str:
    """Encode a non-negative int in lowercase base 36, zero-padded to width."""
    digits = []
    while value:
        value, rem = divmod(value, 36)
        digits.append(_BASE36[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def _cert_der(cert_pem: bytes | str) -> bytes:
    """Canonical DER bytes, so PEM formatting differences don't change the digest."""
    if isinstance(cert_pem, str):
        cert_pem = cert_pem.encode("ascii")
    try:
        return x509.load_pem_x509_certificate(cert_pem).public_bytes(
            Encoding.DER
        )
    except ValueError as exc:
        raise ValueError("invalid CA certificate: not a PEM X.509 certificate") from exc


def ca_digest(ca_cert_pem: bytes | str) -> str:
    """Base-36 SHA-256 of the CA cert's DER, the value pinned in tokens."""
    digest = hashlib.sha256(_cert_der(ca_cert_pem)).digest()
    return _to_base36(int.from_bytes(digest, "big"), DIGEST_LEN)


def new_secret() -> str:
    """A fresh 128-bit random join secret in base 36."""
    raw = secrets.token_bytes(SECRET_BYTES)
    return _to_base36(int.from_bytes(raw, "big"), SECRET_LEN)


def make_token(digest: str, secret: str) -> str:
    """Assemble a token; validated by round-tripping so bad parts fail early."""
    token = f"{PREFIX}-{VERSION}-{digest}-{secret}"
    parse_token(token)
    return token


def _check_part(name: str, value: str, length: int) -> None:
    """Reject a token part with the wrong length or non-base36 characters."""
    if len(value) != length:
        raise TokenError(
            f"invalid join token: {name} must be {length} characters, got {len(value)}"
        )
    if not set(value) <= _BASE36_SET:
        raise TokenError(
            f"invalid join token: {name} must contain only 0-9 and a-z"
        )


def parse_token(token: str) -> JoinToken:
    """Split and validate a token string; raises TokenError on any defect."""
    if not isinstance(token, str):
        raise TokenError("invalid join token: not a string")
    parts = token.strip().split("-")
    if parts[0] != PREFIX:
        raise TokenError(f"invalid join token: must start with '{PREFIX}-'")
    if len(parts) < 2 or parts[1] != VERSION:
        raise TokenError(
            f"invalid join token: unsupported version (expected '{VERSION}')"
        )
    if len(parts) != 4:
        raise TokenError(
            f"invalid join token: expected 4 '-'-separated parts, got {len(parts)}"
        )
    _check_part("CA digest", parts[2], DIGEST_LEN)
    _check_part("secret", parts[3], SECRET_LEN)
    return JoinToken(digest=parts[2], secret=parts[3])


def secret_matches(given: str, expected: str) -> bool:
    """Constant-time comparison so a join secret can't be guessed by timing."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))

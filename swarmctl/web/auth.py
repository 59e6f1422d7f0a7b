"""The web view's HTTP basic auth: a file of `USER:HASH` lines, hashed passwords, constant-time checks.

Standard library only (`swarmctl web-passwd` uses it, and the CLI imports nothing else).

A line is `USER:pbkdf2_sha256$ITERATIONS$SALT$HASH` (SALT and HASH in unpadded base64url, HASH 32 bytes of
PBKDF2-HMAC-SHA256 over the UTF-8 password). Blank lines and lines starting with `#` are ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

SCHEME = "pbkdf2_sha256"
ITERATIONS = 310_000  # OWASP's figure for PBKDF2-HMAC-SHA256
MIN_ITERATIONS = 1_000


class AuthFileError(ValueError):
    """The auth file cannot be read or a line is malformed; the message names the file and the line."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


def make_line(user: str, password: str, **kwargs) -> str:
    check_user(user)
    return f"{user}:{hash_password(password, **kwargs)}"


def check_user(user: str) -> None:
    if not user or ":" in user or any(c.isspace() for c in user):
        raise AuthFileError(f"invalid user name {user!r}: must be non-empty, without ':' or spaces")


def _parse_hash(text: str) -> tuple[int, bytes, bytes]:
    parts = text.split("$")
    if len(parts) != 4 or parts[0] != SCHEME:
        raise ValueError(f"expected {SCHEME}$ITERATIONS$SALT$HASH")
    iterations = int(parts[1])
    if iterations < MIN_ITERATIONS:
        raise ValueError(f"iterations must be at least {MIN_ITERATIONS}")
    salt, digest = _unb64(parts[2]), _unb64(parts[3])
    if len(salt) < 8 or len(digest) != 32:
        raise ValueError("salt or hash too short")
    return iterations, salt, digest


def parse_auth_file(text: str, name: str = "auth file") -> dict[str, tuple[int, bytes, bytes]]:
    """{user: (iterations, salt, digest)}; AuthFileError on a malformed line or no user at all."""
    users: dict[str, tuple[int, bytes, bytes]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or any(c.isspace() for c in user):
            raise AuthFileError(f"{name}, line {number}: expected USER:{SCHEME}$ITERATIONS$SALT$HASH")
        try:
            users[user] = _parse_hash(hashed)
        except (ValueError, binascii.Error) as exc:
            raise AuthFileError(f"{name}, line {number}: invalid password hash for {user!r}: {exc}") from None
    if not users:
        raise AuthFileError(f"{name}: no USER:HASH line (make one with `swarmctl web-passwd USER`)")
    return users


def load_auth_file(path: str) -> dict[str, tuple[int, bytes, bytes]]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthFileError(f"cannot read --web-auth-file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_auth_file(text, f"--web-auth-file {path}")


_DUMMY = (ITERATIONS, b"swarmctl-dummy-salt", b"\0" * 32)


class BasicAuth:
    """Checks `Authorization: Basic ...` headers against the users; successful headers are remembered (by their
    SHA-256) so that a page's requests do not each pay for PBKDF2."""

    def __init__(self, users: dict[str, tuple[int, bytes, bytes]]):
        self.users = users
        self._ok: set[bytes] = set()

    def verify(self, user: str, password: str) -> bool:
        iterations, salt, digest = self.users.get(user, _DUMMY)  # an unknown user costs the same time
        computed = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
        return hmac.compare_digest(computed, digest) and user in self.users

    def check_header(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        key = hashlib.sha256(value.strip().encode()).digest()
        if key in self._ok:
            return True
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep or not self.verify(user, password):
            return False
        if len(self._ok) > 1000:
            self._ok.clear()
        self._ok.add(key)
        return True

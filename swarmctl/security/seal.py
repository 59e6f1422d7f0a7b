"""Envelope encryption of values at rest: sealed strings, keyrings, and Docker's unlock keys.

A sealed value is one line of text that can sit in a record, a journal or a snapshot:

    sealed:v1:<key id>:<base64 of nonce | ciphertext | tag>

AES-256-GCM with a random 96-bit nonce (cryptography's AESGCM). The authenticated data binds the value to
its place (for example `cluster/<id>/root_ca.key`) together with the format version and the key id, so a
sealed value copied to another field or record, or under another key id, does not unseal. The key id is
the first 8 bytes of a SHA-256 over the key (hex): it names the key without revealing it.

A Keyring encrypts with its current (first) key and decrypts with any key it holds, which is what a key
rotation needs. The data encryption key (DEK) of a swarm is such a keyring; the key-encryption key (KEK)
of autolock is shown to users in Docker's form `SWMKEY-1-<base64>` and wraps the DEK and the node's TLS key
on disk (swarmctl/node/keyfile.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "v1"
PREFIX = f"sealed:{VERSION}:"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_SEALED = re.compile(r"^sealed:v1:([0-9a-f]{16}):([A-Za-z0-9+/]+={0,2})$")

UNLOCK_PREFIX = "SWMKEY-1-"


class SealError(ValueError):
    """A sealed value cannot be opened; the message says why and is safe to show."""


class UnknownKey(SealError):
    """Sealed with a key this keyring does not hold."""

    def __init__(self, message: str, key_id: str):
        super().__init__(message)
        self.key_id = key_id


class InvalidUnlockKey(ValueError):
    """Text that is not an unlock key at all (not SWMKEY-1-<base64 of 32 bytes>)."""


def key_id(secret: bytes) -> str:
    return hashlib.sha256(b"swarmctl key id\0" + secret).hexdigest()[:16]


@dataclass(frozen=True)
class Key:
    id: str
    secret: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> "Key":
        return cls.from_bytes(os.urandom(KEY_BYTES))

    @classmethod
    def from_bytes(cls, secret: bytes) -> "Key":
        if not isinstance(secret, (bytes, bytearray)) or len(secret) != KEY_BYTES:
            raise SealError(f"a key must be {KEY_BYTES} bytes")
        secret = bytes(secret)
        return cls(key_id(secret), secret)


def _aad(kid: str, place: str) -> bytes:
    return b"swarmctl-seal\0" + VERSION.encode() + b"\0" + kid.encode() + b"\0" + place.encode("utf-8")


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def seal_bytes(key: Key, value: bytes | str, place: str) -> bytes:
    """nonce | ciphertext | tag of value under key, bound to place."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key.secret).encrypt(nonce, _as_bytes(value), _aad(key.id, place))


def unseal_bytes(key: Key, blob: bytes, place: str) -> bytes:
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise SealError(f"cannot unseal {place}: the sealed value is truncated")
    try:
        return AESGCM(key.secret).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(key.id, place))
    except InvalidTag:
        raise SealError(f"cannot unseal {place}: authentication failed (wrong key, or the value was "
                        "changed or moved)") from None


def is_sealed(value) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def sealed_key_id(value: str) -> str:
    """The key id a sealed value names (SealError if it is not a well-formed sealed value)."""
    return _parse(value, "value")[0]


def _parse(value: str, place: str) -> tuple[str, bytes]:
    match = _SEALED.match(value) if isinstance(value, str) else None
    if match is None:
        raise SealError(f"cannot unseal {place}: not a sealed:v1 value")
    try:
        return match.group(1), base64.b64decode(match.group(2), validate=True)
    except binascii.Error:
        raise SealError(f"cannot unseal {place}: its base64 is damaged") from None


class Keyring:
    """Keys by id; the first is current: it seals, and every key unseals."""

    def __init__(self, keys: Iterable[Key]):
        self._keys: list[Key] = []
        for key in keys:
            if all(k.id != key.id for k in self._keys):
                self._keys.append(key)
        if not self._keys:
            raise SealError("a keyring needs at least one key")

    @classmethod
    def generate(cls) -> "Keyring":
        return cls([Key.generate()])

    @property
    def current(self) -> Key:
        return self._keys[0]

    @property
    def ids(self) -> list[str]:
        return [k.id for k in self._keys]

    @property
    def keys(self) -> list[Key]:
        return list(self._keys)

    def get(self, kid: str) -> Key | None:
        return next((k for k in self._keys if k.id == kid), None)

    def seal(self, value: bytes | str, place: str) -> str:
        key = self.current
        return f"{PREFIX}{key.id}:{base64.b64encode(seal_bytes(key, value, place)).decode()}"

    def unseal(self, value: str, place: str) -> bytes:
        kid, blob = _parse(value, place)
        key = self.get(kid)
        if key is None:
            raise UnknownKey(f"cannot unseal {place}: it was sealed with key {kid}, which this keyring does not "
                             "hold", kid)
        return unseal_bytes(key, blob, place)

    def unseal_text(self, value: str, place: str) -> str:
        try:
            return self.unseal(value, place).decode("utf-8")
        except UnicodeDecodeError:
            raise SealError(f"cannot unseal {place}: it is not text") from None

    def rotated(self) -> "Keyring":
        """A keyring with a new current key that still opens everything this one sealed."""
        return Keyring([Key.generate()] + self._keys)

    def merged(self, other: "Keyring") -> "Keyring":
        """This keyring plus the keys of other that it lacks (this one's current key stays current)."""
        return Keyring(self._keys + other.keys)

    def export(self) -> list[str]:
        """The keys in base64, current first, for a transfer over mutual TLS (never for storage)."""
        return [base64.b64encode(k.secret).decode() for k in self._keys]

    @classmethod
    def from_export(cls, items) -> "Keyring":
        if not isinstance(items, list) or not items:
            raise SealError("a keyring export is a non-empty list of base64 keys")
        keys = []
        for item in items:
            try:
                keys.append(Key.from_bytes(base64.b64decode(item, validate=True)))
            except (binascii.Error, TypeError, ValueError):
                raise SealError("a keyring export holds a key that is not 32 bytes of base64") from None
        return cls(keys)

    def __repr__(self) -> str:
        return f"Keyring({self.ids})"


# ---- key derivation and unlock keys -------------------------------------------------------------
def derive(secret: bytes, purpose: str, length: int = KEY_BYTES) -> bytes:
    """A subkey for one purpose (HKDF-SHA256), so one unlock key never serves two ciphers directly."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=b"swarmctl " + purpose.encode()).derive(secret)


def new_unlock_key() -> bytes:
    return os.urandom(KEY_BYTES)


def format_unlock_key(kek: bytes) -> str:
    """Docker's human-readable form: SWMKEY-1- and the key in unpadded standard base64."""
    return UNLOCK_PREFIX + base64.b64encode(kek).decode().rstrip("=")


def parse_unlock_key(text: str) -> bytes:
    text = (text or "").strip()
    if not text.startswith(UNLOCK_PREFIX):
        raise InvalidUnlockKey("invalid unlock key: it must look like SWMKEY-1-<base64>")
    body = text[len(UNLOCK_PREFIX):]
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        raise InvalidUnlockKey("invalid unlock key: it must look like SWMKEY-1-<base64>") from None
    if len(raw) != KEY_BYTES:
        raise InvalidUnlockKey("invalid unlock key: it must look like SWMKEY-1-<base64>")
    return raw

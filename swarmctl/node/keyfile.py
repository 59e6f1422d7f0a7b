"""The node's TLS key file (certs/node.key, 0600), which on a manager also carries the swarm's data
encryption key (DEK), and the node's keys in memory.

swarmkit keeps the DEK in PEM headers of the node's TLS key. OpenSSL (ssl.SSLContext.load_cert_chain)
refuses a private-key block with headers it does not know, so the DEK has a PEM block of its own in the same
file, after the key; OpenSSL skips blocks of other types. The file is then the only one in the data dir with
key material, as in swarmkit:

    -----BEGIN PRIVATE KEY-----            PKCS#8; under autolock: ENCRYPTED PRIVATE KEY (PBES2, AES-256),
    ...                                    its password derived from the unlock key
    -----END PRIVATE KEY-----
    -----BEGIN SWARMCTL DATA KEY-----      one block per DEK, the current one first (managers only)
    Key-Id: 0123456789abcdef
    Wrapped-By: fedcba9876543210           autolock only: the id of the unlock key (KEK)

    base64 of the key; under autolock, of AES-256-GCM(nonce | ciphertext | tag) with a subkey of the KEK
    -----END SWARMCTL DATA KEY-----

Without autolock the file holds both keys in plaintext, protected by its mode. With autolock a restarted
manager cannot read either until `swarm unlock` hands it the key: it stays locked (docs/design.md).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from typing import Callable

from cryptography.hazmat.primitives import serialization

from swarmctl.security import seal
from swarmctl.security.seal import Key, Keyring, SealError

DEK_LABEL = "SWARMCTL DATA KEY"
PLAIN_LABEL = "PRIVATE KEY"
ENCRYPTED_LABEL = "ENCRYPTED PRIVATE KEY"
_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----\r?\n?", re.S)


class KeyFileError(Exception):
    """The key file cannot be read; the message names it and says why."""


class WrongUnlockKey(Exception):
    """The unlock key does not open this node's key file."""


@dataclass
class PemBlock:
    label: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        lines = [f"-----BEGIN {self.label}-----"]
        if self.headers:
            lines += [f"{name}: {value}" for name, value in self.headers.items()] + [""]
        text = base64.b64encode(self.body).decode()
        lines += [text[i:i + 64] for i in range(0, len(text), 64)]
        lines.append(f"-----END {self.label}-----")
        return ("\n".join(lines) + "\n").encode()


# The standard library reads PEM certificates only, and cryptography has no reader for PEM headers;
# this is the small RFC 7468 (plus RFC 1421 headers) reader the key file needs.
def parse_pem(data: bytes) -> list[PemBlock]:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not PEM text") from None
    blocks = []
    for match in _BLOCK.finditer(text):
        label, inner = match.group(1), match.group(2)
        headers: dict[str, str] = {}
        lines = inner.splitlines()
        if "" in lines and all(":" in line for line in lines[:lines.index("")]):
            split = lines.index("")
            for line in lines[:split]:
                name, _, value = line.partition(":")
                headers[name.strip()] = value.strip()
            lines = lines[split + 1:]
        try:
            body = base64.b64decode("".join(line.strip() for line in lines), validate=True)
        except binascii.Error:
            raise ValueError(f"the {label} block's base64 is damaged") from None
        blocks.append(PemBlock(label, body, headers))
    return blocks


# ---- wrapping under an unlock key ---------------------------------------------------------------------
def tls_password(kek: bytes) -> bytes:
    """The password of the encrypted TLS key: a subkey of the unlock key, never the key itself."""
    return base64.b64encode(seal.derive(kek, "tls key password"))


def _wrap_key(kek: bytes) -> Key:
    return Key.from_bytes(seal.derive(kek, "data key wrap"))


def _dek_place(kid: str) -> str:
    return f"keyfile/{DEK_LABEL.lower().replace(' ', '-')}/{kid}"


def compose(tls_key_pem: bytes, dek: Keyring | None, kek: bytes | None) -> bytes:
    """The key file's bytes: the TLS key (encrypted under kek if given), then the DEK blocks."""
    key = serialization.load_pem_private_key(tls_key_pem, password=None)
    if kek is None:
        out = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    else:
        out = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(tls_password(kek)))
    for k in (dek.keys if dek is not None else []):
        if kek is None:
            out += PemBlock(DEK_LABEL, k.secret, {"Key-Id": k.id}).encode()
        else:
            blob = seal.seal_bytes(_wrap_key(kek), k.secret, _dek_place(k.id))
            out += PemBlock(DEK_LABEL, blob, {"Key-Id": k.id, "Wrapped-By": seal.key_id(kek)}).encode()
    return out


@dataclass
class KeyFile:
    """A parsed key file, still wrapped."""
    tls_block: PemBlock
    dek_blocks: list[PemBlock]

    @property
    def wrapped(self) -> bool:
        return self.tls_block.label == ENCRYPTED_LABEL or any("Wrapped-By" in b.headers for b in self.dek_blocks)

    @property
    def wrapped_by(self) -> str | None:
        ids = {b.headers.get("Wrapped-By") for b in self.dek_blocks} - {None}
        return ids.pop() if len(ids) == 1 else None

    def open(self, kek: bytes | None) -> tuple[bytes, Keyring | None]:
        """(plaintext TLS key PEM, DEK keyring or None); WrongUnlockKey if kek does not open it."""
        if self.wrapped and kek is None:
            raise WrongUnlockKey("the key file is encrypted")
        keys = []
        for block in self.dek_blocks:
            kid = block.headers.get("Key-Id", "")
            if "Wrapped-By" in block.headers:
                if kek is None or block.headers["Wrapped-By"] != seal.key_id(kek):
                    raise WrongUnlockKey("the key file is wrapped by another unlock key")
                try:
                    secret = seal.unseal_bytes(_wrap_key(kek), block.body, _dek_place(kid))
                except SealError:
                    raise WrongUnlockKey("the data key does not open with this unlock key") from None
            else:
                secret = block.body
            key = Key.from_bytes(secret)
            if kid and key.id != kid:
                raise SealError(f"the data key's id is {key.id}, but its block says {kid}")
            keys.append(key)
        password = tls_password(kek) if self.tls_block.label == ENCRYPTED_LABEL else None
        try:
            key = serialization.load_pem_private_key(self.tls_block.encode(), password=password)
        except (ValueError, TypeError):
            if password is not None:
                raise WrongUnlockKey("the TLS key does not open with this unlock key") from None
            raise
        plain = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        return plain, (Keyring(keys) if keys else None)


def parse(data: bytes) -> KeyFile:
    blocks = parse_pem(data)
    tls = [b for b in blocks if b.label in (PLAIN_LABEL, ENCRYPTED_LABEL)]
    if len(tls) != 1:
        raise ValueError(f"expected one private key block, found {len(tls)}")
    return KeyFile(tls[0], [b for b in blocks if b.label == DEK_LABEL])


# ---- the node's keys in memory ------------------------------------------------------------------------
class NodeKeys:
    """This node's TLS key, the swarm's DEK (managers) and the unlock key (autolock), kept in memory and
    written to the key file whenever one of them changes. While `locked`, only the wrapped file is known."""

    def __init__(self, path: str, write: Callable[[str, bytes, int], None]):
        self.path = path
        self._write_file = write
        self.tls_key: bytes | None = None
        self.dek: Keyring | None = None
        self.kek: bytes | None = None
        self._wrapped: KeyFile | None = None

    @property
    def locked(self) -> bool:
        return self._wrapped is not None

    @property
    def wrapped_by(self) -> str | None:
        """The id of the unlock key that wraps the file now (None without autolock)."""
        return seal.key_id(self.kek) if self.kek is not None else (self._wrapped.wrapped_by if self._wrapped else None)

    def load(self) -> None:
        """Read the key file at start: plaintext keys are ready; a wrapped file leaves the node locked."""
        self.forget()
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise KeyFileError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            parsed = parse(data)
            if parsed.wrapped:
                self._wrapped = parsed
            else:
                self.tls_key, self.dek = parsed.open(None)
        except (ValueError, TypeError, SealError) as exc:
            raise KeyFileError(f"{self.path} is damaged: {exc}") from None

    def unlock(self, kek: bytes) -> None:
        """Open the wrapped file with the unlock key (WrongUnlockKey if it does not fit)."""
        if self._wrapped is None:
            return
        try:
            self.tls_key, self.dek = self._wrapped.open(kek)
        except (ValueError, TypeError, SealError) as exc:
            raise KeyFileError(f"{self.path} is damaged: {exc}") from None
        self.kek = kek
        self._wrapped = None

    def tls_password(self) -> bytes | None:
        """What ssl.SSLContext.load_cert_chain needs to read the key file (None: it is not encrypted)."""
        return tls_password(self.kek) if self.kek is not None else None

    # ---- changes (each one rewrites the file) -------------------------------------------------------
    def save_tls_key(self, key_pem: bytes) -> None:
        self.tls_key = key_pem
        self._save()

    def new_dek(self) -> Keyring:
        """A new DEK for a new swarm; written with the TLS key (save_tls_key) or by install_dek."""
        self.dek = Keyring.generate()
        return self.dek

    def install_dek(self, dek: Keyring | list | None) -> None:
        """Keep the swarm's DEK (a Keyring, or the export a manager handed over); adds to the keys held."""
        if dek is None or dek == []:
            return
        ring = dek if isinstance(dek, Keyring) else Keyring.from_export(dek)
        merged = ring if self.dek is None else self.dek.merged(ring)
        if self.dek is not None and merged.ids == self.dek.ids:
            return
        self.dek = merged
        self._save()

    def set_kek(self, kek: bytes | None) -> bool:
        """Wrap the file under a new unlock key, or unwrap it (None); True if anything changed."""
        if kek == self.kek:
            return False
        self.kek = kek
        self._save()
        return True

    def drop_manager_keys(self) -> None:
        """A demoted manager keeps no DEK and is not locked (workers never are)."""
        if self.dek is None and self.kek is None:
            return
        self.dek, self.kek = None, None
        self._save()

    def forget(self) -> None:
        self.tls_key, self.dek, self.kek, self._wrapped = None, None, None, None

    def _save(self) -> None:
        if self.tls_key is None or self._wrapped is not None:
            return  # nothing to write yet (the TLS key comes with the certificate), or locked
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self._write_file(self.path, compose(self.tls_key, self.dek, self.kek), 0o600)

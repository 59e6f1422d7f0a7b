"""TLS contexts for node-to-node mutual authentication.

Trust is anchored solely in the cluster's root CA; peers are reached by IP
and identified by the node id in their certificate CN, not by hostname.
"""

from __future__ import annotations

import os
import functools
import ssl
import tempfile
from pathlib import Path
from typing import Union

from swarmctl.security.certs import CertIdentity, cert_identity

# A file path, or the PEM itself (bytes, or a str starting with "-----BEGIN").
PemSource = Union[str, os.PathLike, bytes]


def _is_pem(source: PemSource) -> bool:
    """Tell in-memory PEM apart from a file path."""
    if isinstance(source, (bytes, bytearray)):
        return True
    return isinstance(source, str) and source.lstrip().startswith("-----BEGIN")


def _pem_text(source: PemSource) -> str:
    """In-memory PEM as str, the form ``cadata`` wants."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source).decode("ascii")
    return str(source)


def _base_context(protocol: int) -> ssl.SSLContext:
    """A context with no default trust store and TLS 1.2 as the floor."""
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _load_ca(ctx: ssl.SSLContext, ca: PemSource) -> None:
    """Trust exactly our cluster CA (never the system store)."""
    if _is_pem(ca):
        ctx.load_verify_locations(cadata=_pem_text(ca))
    else:
        ctx.load_verify_locations(cafile=os.fspath(ca))


def _no_password() -> bytes:
    """Never let OpenSSL prompt on a terminal for an encrypted key it was given no password for."""
    raise ssl.SSLError("the node's TLS key is encrypted (autolock) and no password was given")


def load_chain(ctx: ssl.SSLContext, cert: PemSource, key: PemSource, password: bytes | None = None) -> None:
    """Load our certificate and key into ctx; ``password`` opens a key encrypted under autolock."""
    _load_chain(ctx, cert, key, password)


def _load_chain(ctx: ssl.SSLContext, cert: PemSource, key: PemSource, password: bytes | None = None) -> None:
    """Load our certificate and key; in-memory PEM goes via a private temp dir
    because ``ssl`` can only read them from files."""
    password = password if password is not None else _no_password
    if not (_is_pem(cert) or _is_pem(key)):
        ctx.load_cert_chain(os.fspath(cert), os.fspath(key), password=password)
        return
    with tempfile.TemporaryDirectory(prefix="swarmctl-tls-") as tmp:
        cert_path = _materialise(cert, Path(tmp) / "cert.pem")
        key_path = _materialise(key, Path(tmp) / "key.pem")
        ctx.load_cert_chain(cert_path, key_path, password=password)


def _materialise(source: PemSource, dest: Path) -> str:
    """Write in-memory PEM to dest (owner-only); pass file paths through."""
    if not _is_pem(source):
        return os.fspath(source)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(_pem_text(source))
    return str(dest)


def server_context(cert_file: PemSource, key_file: PemSource, ca_file: PemSource, *,
                   key_password: bytes | None = None) -> ssl.SSLContext:
    """Server side: present our node cert; client certs are optional so that
    certificate-less joiners can reach the bootstrap endpoints (/ca, /join),
    but any certificate that is presented must chain to our CA or the
    handshake fails. Handlers must check ``peer_identity`` for authorisation.
    """
    ctx = _base_context(ssl.PROTOCOL_TLS_SERVER)
    _load_chain(ctx, cert_file, key_file, key_password)
    _load_ca(ctx, ca_file)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def raft_server_context(cert_file: PemSource, key_file: PemSource, ca_file: PemSource, *,
                        key_password: bytes | None = None) -> ssl.SSLContext:
    """The Raft port (swarmctl.state.transport): like server_context, but a client certificate chaining
    to our CA is required; the transport then authorises its identity as a current manager."""
    ctx = _base_context(ssl.PROTOCOL_TLS_SERVER)
    _load_chain(ctx, cert_file, key_file, key_password)
    _load_ca(ctx, ca_file)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def reload_chain(contexts, cert_file: PemSource, key_file: PemSource, password: bytes | None = None) -> None:
    """Load a renewed node certificate into contexts already in use (None entries are skipped): new
    handshakes present it, open connections keep their session."""
    for ctx in contexts:
        if ctx is not None:
            _load_chain(ctx, cert_file, key_file, password)


def client_context(
    ca_file: PemSource,
    cert_file: PemSource | None = None,
    key_file: PemSource | None = None,
    *,
    key_password: bytes | None = None,
) -> ssl.SSLContext:
    """Client side: the server must chain to our CA; hostnames are not checked
    because peers are addressed by IP and identified by their CN (node id)."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file must be given together")
    ctx = _base_context(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_ca(ctx, ca_file)
    if cert_file is not None:
        _load_chain(ctx, cert_file, key_file, key_password)
    return ctx


def unverified_context() -> ssl.SSLContext:
    """INSECURE: accepts any server certificate. Only for the one bootstrap
    fetch of the CA certificate, which the caller MUST then check against
    the join token's digest (``tokens.ca_digest``) before trusting it."""
    ctx = _base_context(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> CertIdentity | None:
    """Identity from the peer's (already CA-verified) certificate, or None if
    the peer presented none. Raises ValueError if the cert lacks CN/OU/O."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    return _identity_of(der)


@functools.lru_cache(maxsize=1024)
def _identity_of(der: bytes) -> CertIdentity:
    """Parsing a certificate costs more than the request it authorises; peers present the same one."""
    return cert_identity(der)

"""Node-side certificate helpers: keys, CSRs and reading identities.

Every node (joiners included) uses these; only managers hold the CA key,
see ``swarmctl.manager.ca``. A node's identity lives in its certificate
subject: CN = node id, OU = role, O = cluster id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PENDING_CN = "pending"


@dataclass(frozen=True)
class CertIdentity:
    """Who a certificate says its holder is, and until when."""

    node_id: str
    role: str
    cluster_id: str
    not_after: datetime


def generate_key() -> bytes:
    """A new EC P-256 private key as unencrypted PKCS8 PEM (small and fast)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    """Load an EC private key, with a clear error for anything else."""
    try:
        key = serialization.load_pem_private_key(_as_bytes(key_pem), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("invalid private key: expected unencrypted PEM") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("invalid private key: expected an EC key")
    return key


def make_csr(key_pem: bytes) -> bytes:
    """A CSR proving possession of the key; the CA chooses the real subject."""
    key = load_private_key(key_pem)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, PENDING_CN)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(
        key, hashes.SHA256()
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def load_certificate(cert: bytes) -> x509.Certificate:
    """Parse a certificate given as PEM or DER (ssl hands us DER)."""
    data = _as_bytes(cert)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ValueError("invalid certificate: not a PEM or DER X.509 certificate") from exc


def _subject_value(cert: x509.Certificate, oid: x509.ObjectIdentifier, label: str) -> str:
    """The single subject attribute for oid, or a ValueError naming what's missing."""
    attrs = cert.subject.get_attributes_for_oid(oid)
    if len(attrs) != 1 or not attrs[0].value:
        raise ValueError(f"invalid node certificate: subject needs exactly one {label}")
    return str(attrs[0].value)


def cert_not_after(cert: bytes) -> datetime:
    """Expiry (timezone-aware UTC), used to schedule renewal."""
    return load_certificate(cert).not_valid_after_utc


def cert_identity(cert: bytes) -> CertIdentity:
    """Read node id (CN), role (OU) and cluster id (O) from a node certificate."""
    parsed = load_certificate(cert)
    return CertIdentity(
        node_id=_subject_value(parsed, NameOID.COMMON_NAME, "CN (node id)"),
        role=_subject_value(parsed, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (role)"),
        cluster_id=_subject_value(parsed, NameOID.ORGANIZATION_NAME, "O (cluster id)"),
        not_after=parsed.not_valid_after_utc,
    )


def _as_bytes(data: bytes | str) -> bytes:
    """Accept str PEM as a convenience; reject other types with a clear error."""
    if isinstance(data, str):
        return data.encode("ascii")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise ValueError(f"expected bytes, got {type(data).__name__}")


def csr_public_key_der(csr_pem: bytes) -> bytes:
    """The DER of a CSR's public key (what a join's node id is derived from). ValueError if unreadable."""
    try:
        csr = x509.load_pem_x509_csr(bytes(csr_pem))
        return csr.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError) as exc:
        raise ValueError("invalid certificate signing request") from exc

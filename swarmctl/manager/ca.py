"""The cluster's certificate authority, run by managers.

Nodes authenticate each other by mutual TLS; a certificate signed by this
CA is what makes a node a cluster member with a given id and role.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from swarmctl.security.certs import generate_key, load_certificate, load_private_key

ROOT_CA_CN = "swarmctl-root-ca"
ROLES = ("manager", "worker")
CLOCK_SKEW = timedelta(minutes=5)


def _now() -> datetime:
    """Current UTC time; one place to change if tests ever need a clock."""
    return datetime.now(timezone.utc)


def _serial() -> int:
    """Random positive serial (< 2**159) so serials never collide or leak counts."""
    return secrets.randbits(159) | 1


def _key_usage(*, digital_signature: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    """KeyUsage with only the needed bits set (CA: signing certs; node: TLS)."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def create_root_ca(cluster_id: str, years: int = 20) -> tuple[bytes, bytes]:
    """Self-signed EC P-256 root CA for a new cluster; returns (cert_pem, key_pem)."""
    if not cluster_id:
        raise ValueError("cluster_id must not be empty")
    key_pem = generate_key()
    key = load_private_key(key_pem)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, ROOT_CA_CN),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    """Parse a CSR and check its self-signature (proof the requester holds the key)."""
    try:
        csr = x509.load_pem_x509_csr(bytes(csr_pem))
        valid = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError("invalid certificate signing request") from exc
    if not valid:
        raise ValueError("invalid certificate signing request")
    return csr


def _check_ca_pair(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> None:
    """Refuse to sign with a key that doesn't belong to the CA certificate."""
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if ca_cert.public_key().public_bytes(*fmt) != ca_key.public_key().public_bytes(*fmt):
        raise ValueError("CA key does not match CA certificate")


def _node_subject(node_id: str, role: str, cluster_id: str) -> x509.Name:
    """Subject carrying the node's identity: CN=node id, OU=role, O=cluster id."""
    if role not in ROLES:
        raise ValueError(f"invalid role {role!r}: must be 'manager' or 'worker'")
    if not node_id or not cluster_id:
        raise ValueError("node_id and cluster_id must not be empty")
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, node_id),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
        ]
    )


def sign_node_certificate(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    csr_pem: bytes,
    node_id: str,
    role: str,
    cluster_id: str,
    lifetime: timedelta = timedelta(days=90),
) -> bytes:
    """Issue a node's TLS client+server certificate for the CSR's public key.

    The subject comes from the arguments, never from the CSR, so a joiner
    cannot choose its own id or role.  ``lifetime`` is the cluster's node
    certificate expiry; it counts from now, while the start is backdated by
    CLOCK_SKEW.
    """
    subject = _node_subject(node_id, role, cluster_id)
    csr = _load_csr(csr_pem)
    ca_cert = load_certificate(ca_cert_pem)
    ca_key = load_private_key(ca_key_pem)
    _check_ca_pair(ca_cert, ca_key)
    now = _now()
    not_after = min(now + lifetime, ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)

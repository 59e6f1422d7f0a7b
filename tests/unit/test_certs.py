"""CA creation, node certificate signing, identity parsing and real mTLS."""

import socket
import ssl
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from swarmctl.manager.ca import create_root_ca, sign_node_certificate
from swarmctl.security.certs import (
    CertIdentity,
    cert_identity,
    cert_not_after,
    generate_key,
    make_csr,
)
from swarmctl.security.tls import (
    client_context,
    peer_identity,
    server_context,
    unverified_context,
)

CLUSTER = "cluster-abc"
TIMEOUT = 5


@pytest.fixture(scope="module")
def ca():
    return create_root_ca(CLUSTER)


@pytest.fixture(scope="module")
def other_ca():
    return create_root_ca("cluster-other")


def issue(ca_pair, node_id, role="worker", cluster=CLUSTER, days=90):
    """(cert_pem, key_pem) for a node signed by ca_pair."""
    key = generate_key()
    cert = sign_node_certificate(
        ca_pair[0], ca_pair[1], make_csr(key), node_id, role, cluster, lifetime=timedelta(days=days)
    )
    return cert, key


# --- keys, CSRs, CA -------------------------------------------------------


def test_generate_key_is_p256_pkcs8():
    pem = generate_key()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"


def test_make_csr_is_self_signed_with_our_key():
    key_pem = generate_key()
    csr = x509.load_pem_x509_csr(make_csr(key_pem))
    assert csr.is_signature_valid
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert csr.public_key() == key.public_key()


def test_make_csr_rejects_garbage_key():
    with pytest.raises(ValueError, match="invalid private key"):
        make_csr(b"nope")


def test_root_ca_properties(ca):
    cert_pem, key_pem = ca
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "swarmctl-root-ca"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == CLUSTER
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is True
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(cert)
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=365 * 20) <= life <= timedelta(days=365 * 20, minutes=6)
    assert serialization.load_pem_private_key(key_pem, None).public_key() == cert.public_key()


def test_sign_node_certificate(ca):
    cert_pem, _ = issue(ca, "node-1", role="manager")
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca_cert = x509.load_pem_x509_certificate(ca[0])
    cert.verify_directly_issued_by(ca_cert)
    assert cert.issuer == ca_cert.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    now = datetime.now(timezone.utc)
    assert now - timedelta(minutes=6) <= cert.not_valid_before_utc <= now - timedelta(minutes=4)
    assert abs(cert.not_valid_after_utc - (now + timedelta(days=90))) < timedelta(minutes=1)


def test_serials_are_random(ca):
    a = x509.load_pem_x509_certificate(issue(ca, "n1")[0]).serial_number
    b = x509.load_pem_x509_certificate(issue(ca, "n1")[0]).serial_number
    assert a != b and a > 0


def test_signed_cert_uses_csr_public_key(ca):
    key_pem = generate_key()
    cert_pem = sign_node_certificate(ca[0], ca[1], make_csr(key_pem), "n", "worker", CLUSTER)
    key = serialization.load_pem_private_key(key_pem, None)
    assert x509.load_pem_x509_certificate(cert_pem).public_key() == key.public_key()


def test_identity_from_pem_and_der(ca):
    cert_pem, _ = issue(ca, "node-7", role="worker", days=30)
    ident = cert_identity(cert_pem)
    assert isinstance(ident, CertIdentity)
    assert (ident.node_id, ident.role, ident.cluster_id) == ("node-7", "worker", CLUSTER)
    assert ident.not_after.tzinfo is not None
    assert ident.not_after == cert_not_after(cert_pem)
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    assert cert_identity(der) == ident


@pytest.mark.parametrize("garbage", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nxx\n"])
def test_identity_rejects_garbage(garbage):
    with pytest.raises(ValueError, match="invalid certificate"):
        cert_identity(garbage)


def test_identity_rejects_cert_without_role(ca):
    with pytest.raises(ValueError, match="OU"):
        cert_identity(ca[0])


def tampered(csr_pem):
    """Same CSR with one byte of the signed body flipped."""
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    idx = der.find(b"pending")
    der[idx] ^= 0x01
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)


def test_rejects_tampered_csr(ca):
    bad = tampered(make_csr(generate_key()))
    with pytest.raises(ValueError, match="^invalid certificate signing request$"):
        sign_node_certificate(ca[0], ca[1], bad, "n", "worker", CLUSTER)


def test_rejects_garbage_csr(ca):
    with pytest.raises(ValueError, match="^invalid certificate signing request$"):
        sign_node_certificate(ca[0], ca[1], b"junk", "n", "worker", CLUSTER)


@pytest.mark.parametrize("role", ["admin", "", "Manager", None])
def test_rejects_bad_role(ca, role):
    with pytest.raises(ValueError, match="invalid role"):
        sign_node_certificate(ca[0], ca[1], make_csr(generate_key()), "n", role, CLUSTER)


def test_rejects_mismatched_ca_key(ca, other_ca):
    with pytest.raises(ValueError, match="does not match"):
        sign_node_certificate(ca[0], other_ca[1], make_csr(generate_key()), "n", "worker", CLUSTER)


# --- real TLS handshakes --------------------------------------------------


@pytest.fixture(scope="module")
def pki(ca, other_ca, tmp_path_factory):
    """Files for a server node, a client node, and a rogue client from another CA."""
    d = tmp_path_factory.mktemp("pki")
    files = {"ca": ca[0]}
    for name, pair, role in [
        ("server", ca, "manager"),
        ("client", ca, "worker"),
        ("rogue", other_ca, "worker"),
    ]:
        cert, key = issue(pair, f"{name}-node", role=role, cluster=CLUSTER)
        files[f"{name}_cert"], files[f"{name}_key"] = cert, key
    paths = {}
    for name, data in files.items():
        p = d / f"{name}.pem"
        p.write_bytes(data)
        paths[name] = str(p)
    paths["other_ca"] = str(d / "other_ca.pem")
    (d / "other_ca.pem").write_bytes(other_ca[0])
    return paths


class OneShotServer:
    """Accepts a single TLS connection in a thread and records what it saw."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.identity = None
        self.error = None
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
        except OSError as exc:
            self.error = exc
            return
        conn.settimeout(TIMEOUT)
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                self.identity = peer_identity(tls)
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            self.error = exc
        finally:
            conn.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join(TIMEOUT)
        self.listener.close()
        assert not self.thread.is_alive()


def talk(port, ctx):
    """Connect, handshake and read the server's greeting."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw) as tls:
            return tls.recv(16)


def test_mtls_client_with_our_cert_is_identified(pki):
    srv_ctx = server_context(pki["server_cert"], pki["server_key"], pki["ca"])
    cli_ctx = client_context(pki["ca"], pki["client_cert"], pki["client_key"])
    with OneShotServer(srv_ctx) as server:
        assert talk(server.port, cli_ctx) == b"ok"
    assert server.error is None
    assert server.identity is not None
    assert (server.identity.node_id, server.identity.role) == ("client-node", "worker")
    assert server.identity.cluster_id == CLUSTER


def test_client_without_cert_is_anonymous(pki):
    srv_ctx = server_context(pki["server_cert"], pki["server_key"], pki["ca"])
    with OneShotServer(srv_ctx) as server:
        assert talk(server.port, client_context(pki["ca"])) == b"ok"
    assert server.error is None
    assert server.identity is None


def test_client_with_foreign_ca_cert_is_rejected(pki):
    srv_ctx = server_context(pki["server_cert"], pki["server_key"], pki["ca"])
    cli_ctx = client_context(pki["ca"], pki["rogue_cert"], pki["rogue_key"])
    with OneShotServer(srv_ctx) as server:
        # Under TLS 1.3 the client may finish its half before the server's
        # alert arrives, so the failure can surface on the first read.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            data = talk(server.port, cli_ctx)
            if data == b"":
                raise ConnectionError("server closed the connection")
    assert isinstance(server.error, ssl.SSLCertVerificationError)
    assert server.identity is None


def test_client_rejects_server_from_foreign_ca(pki):
    srv_ctx = server_context(pki["rogue_cert"], pki["rogue_key"], pki["other_ca"])
    with OneShotServer(srv_ctx) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            talk(server.port, client_context(pki["ca"]))
    assert server.error is not None


def test_unverified_context_fetches_from_any_server(pki):
    srv_ctx = server_context(pki["rogue_cert"], pki["rogue_key"], pki["other_ca"])
    ctx = unverified_context()
    assert ctx.verify_mode == ssl.CERT_NONE and ctx.check_hostname is False
    with OneShotServer(srv_ctx) as server:
        assert talk(server.port, ctx) == b"ok"


def test_contexts_accept_in_memory_pem(pki):
    pem = {k: Path(v).read_bytes() for k, v in pki.items()}
    srv_ctx = server_context(pem["server_cert"], pem["server_key"], pem["ca"])
    cli_ctx = client_context(pem["ca"], pem["client_cert"], pem["client_key"])
    with OneShotServer(srv_ctx) as server:
        assert talk(server.port, cli_ctx) == b"ok"
    assert server.identity.node_id == "client-node"


def test_context_settings(pki):
    srv = server_context(pki["server_cert"], pki["server_key"], pki["ca"])
    cli = client_context(pki["ca"])
    assert srv.verify_mode == ssl.CERT_OPTIONAL
    assert cli.verify_mode == ssl.CERT_REQUIRED and cli.check_hostname is False
    for ctx in (srv, cli, unverified_context()):
        assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert len(cli.get_ca_certs()) == 1


def test_client_context_requires_cert_and_key_together(pki):
    with pytest.raises(ValueError):
        client_context(pki["ca"], cert_file=pki["client_cert"])


def test_peer_identity_none_without_ssl_object():
    assert peer_identity(None) is None

"""swarmctl/node/keyfile.py: the node's TLS key file with the DEK block, plain and wrapped by autolock."""

import base64
import os
import ssl
import stat

import pytest

from swarmctl.manager.ca import create_root_ca, sign_node_certificate
from swarmctl.node.datadir import _write_atomic
from swarmctl.node.keyfile import DEK_LABEL, NodeKeys, WrongUnlockKey, compose, parse, parse_pem, tls_password
from swarmctl.security import seal, tls
from swarmctl.security.certs import generate_key, make_csr
from swarmctl.security.seal import Keyring


@pytest.fixture(scope="module")
def pki():
    ca, ca_key = create_root_ca("cluster1")
    key = generate_key()
    cert = sign_node_certificate(ca, ca_key, make_csr(key), "node1", "manager", "cluster1")
    return ca, cert, key


def _needles(ring: Keyring, kek: bytes | None = None) -> list[bytes]:
    out = []
    for k in ring.keys:
        out += [k.secret, base64.b64encode(k.secret), base64.b64encode(k.secret)[:40], k.secret.hex().encode()]
    if kek is not None:
        out += [kek, base64.b64encode(kek)[:40], seal.format_unlock_key(kek).encode()]
    return out


def test_plain_file_round_trip_and_openssl_reads_it(pki, tmp_path):
    ca, cert, key = pki
    ring = Keyring.generate().rotated()
    data = compose(key, ring, None)
    assert data.count(b"-----BEGIN SWARMCTL DATA KEY-----") == 2 and b"BEGIN PRIVATE KEY" in data
    parsed = parse(data)
    assert not parsed.wrapped
    plain, back = parsed.open(None)
    assert plain == key and back.ids == ring.ids and back.current.secret == ring.current.secret
    path = tmp_path / "node.key"
    path.write_bytes(data)
    (tmp_path / "node.pem").write_bytes(cert)
    # OpenSSL skips the DEK blocks; headers inside the key block itself would make it fail ("PEM lib")
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(tmp_path / "node.pem", path)
    tls.client_context(ca, str(tmp_path / "node.pem"), str(path))


def test_wrapped_file_hides_both_keys_and_needs_the_unlock_key(pki, tmp_path):
    ca, cert, key = pki
    ring, kek = Keyring.generate(), seal.new_unlock_key()
    data = compose(key, ring, kek)
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in data and b"BEGIN PRIVATE KEY" not in data
    for needle in _needles(ring, kek) + [key.split(b"\n")[1]]:
        assert needle not in data
    parsed = parse(data)
    assert parsed.wrapped and parsed.wrapped_by == seal.key_id(kek)
    plain, back = parsed.open(kek)
    assert plain == key and back.current.secret == ring.current.secret
    with pytest.raises(WrongUnlockKey):
        parsed.open(None)
    with pytest.raises(WrongUnlockKey):
        parsed.open(seal.new_unlock_key())
    path, cert_path = tmp_path / "node.key", tmp_path / "node.pem"
    path.write_bytes(data)
    cert_path.write_bytes(cert)
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, path, password=tls_password(kek))
    tls.server_context(str(cert_path), str(path), ca, key_password=tls_password(kek))
    with pytest.raises(ssl.SSLError):  # never a terminal prompt: a clear failure without the password
        tls.server_context(str(cert_path), str(path), ca)


def test_a_tampered_data_key_block_does_not_open(pki):
    _, _, key = pki
    kek = seal.new_unlock_key()
    parsed = parse(compose(key, Keyring.generate(), kek))
    block = parsed.dek_blocks[0]
    block.body = block.body[:-1] + bytes([block.body[-1] ^ 1])
    with pytest.raises(WrongUnlockKey):
        parsed.open(kek)


def test_pem_reader():
    blocks = parse_pem(b"junk\n-----BEGIN A B-----\nName: v\nOther: w x\n\nAAEC\n-----END A B-----\n"
                       b"-----BEGIN C-----\nAAEC\nAw==\n-----END C-----\n")
    assert [(b.label, b.headers, b.body) for b in blocks] == [
        ("A B", {"Name": "v", "Other": "w x"}, b"\x00\x01\x02"), ("C", {}, b"\x00\x01\x02\x03")]
    assert parse_pem(blocks[0].encode())[0].headers == {"Name": "v", "Other": "w x"}
    with pytest.raises(ValueError):
        parse_pem(b"-----BEGIN X-----\n!!!!\n-----END X-----\n")
    with pytest.raises(ValueError):
        parse(b"-----BEGIN " + DEK_LABEL.encode() + b"-----\nAAAA\n-----END " + DEK_LABEL.encode() + b"-----\n")


def test_node_keys_lifecycle(pki, tmp_path):
    _, _, key = pki
    path = str(tmp_path / "certs" / "node.key")
    keys = NodeKeys(path, _write_atomic)
    keys.load()  # no file yet
    assert not keys.locked and keys.tls_key is None
    ring = keys.new_dek()
    keys.save_tls_key(key)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    kek = seal.new_unlock_key()
    assert keys.set_kek(kek) and not keys.set_kek(kek)
    assert keys.tls_password() == tls_password(kek)
    for needle in _needles(ring, kek):
        assert needle not in open(path, "rb").read()

    restarted = NodeKeys(path, _write_atomic)
    restarted.load()
    assert restarted.locked and restarted.tls_key is None and restarted.dek is None
    assert restarted.wrapped_by == seal.key_id(kek)
    with pytest.raises(WrongUnlockKey):
        restarted.unlock(seal.new_unlock_key())
    assert restarted.locked
    restarted.unlock(kek)
    assert not restarted.locked and restarted.tls_key == key and restarted.dek.ids == ring.ids

    restarted.set_kek(None)  # autolock off: plaintext again, and a restart needs no key
    again = NodeKeys(path, _write_atomic)
    again.load()
    assert not again.locked and again.dek.ids == ring.ids and again.tls_password() is None

    other = Keyring.generate()
    again.install_dek(other.export())  # a key fetched from another manager joins the ones held
    assert again.dek.current.id == ring.current.id and other.current.id in again.dek.ids
    again.drop_manager_keys()  # demoted: no DEK left in the file
    plain = NodeKeys(path, _write_atomic)
    plain.load()
    assert plain.dek is None and b"SWARMCTL DATA KEY" not in open(path, "rb").read()


def test_damaged_file_is_named(tmp_path):
    from swarmctl.node.keyfile import KeyFileError
    path = tmp_path / "node.key"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyFileError, match="node.key is damaged"):
        NodeKeys(str(path), _write_atomic).load()

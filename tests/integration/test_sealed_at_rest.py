"""No key in plaintext at rest: a scan of every data dir (and the daemons' logs) of a real swarm for the
join-token secrets, the CA key, the DEK and the unlock keys, after joins, token rotations, autolock and a
forced Raft snapshot. Files are scanned raw and through what decodes them: compressed streams anywhere in
a file (the snapshot), and base64 runs (commands kept as base64 in a snapshot's header, PEM bodies)."""

import base64
import os
import re
import zlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from swarmctl.manager.keys import CA_KEY, join_secret_path, place
from swarmctl.node.keyfile import compose, parse
from swarmctl.security import seal
from swarmctl.security.seal import Keyring, SealError
from tests.integration.harness import check, wait_for

SEALED = re.compile(rb"sealed:v1:[0-9a-f]{16}:[A-Za-z0-9+/]+={0,2}")
_COMPRESSED = re.compile(rb"\x1f\x8b\x08|\x78[\x01\x5e\x9c\xda]")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]{40,}={0,2}|[A-Za-z0-9_-]{40,}={0,2}")


def views(data: bytes, depth: int = 0) -> list[bytes]:
    """data, every compressed stream found in it (decompressed), and every long base64 run (decoded)."""
    out = [data]
    if depth >= 2:
        return out
    for match in _COMPRESSED.finditer(data):
        start = match.start()
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if data[start] == 0x1f else zlib.MAX_WBITS)
        try:
            plain = inflater.decompress(data[start:], 64 << 20)
        except zlib.error:
            continue
        if len(plain) >= 32:
            out += views(plain, depth + 1)
    for match in _BASE64.finditer(data):
        text = match.group()
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                out.append(decode(text + b"=" * (-len(text) % 4)))
            except ValueError:
                pass
    return out


def files_of(root: str):
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not name.endswith((".sock", ".lock")):
                yield path


def key_needles(label: str, secret: bytes, skip: int = 0) -> dict[str, bytes]:
    """secret raw and encoded; skip: leading base64 characters that are not unique (an ASN.1 header)."""
    return {f"{label} (raw)": secret, f"{label} (base64)": base64.b64encode(secret)[skip:skip + 40],
            f"{label} (urlsafe base64)": base64.urlsafe_b64encode(secret)[skip:skip + 40],
            f"{label} (hex)": secret.hex().encode()}


def find_plaintext(paths, needles: dict[str, bytes]) -> list[str]:
    found = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:  # a temporary file renamed meanwhile
            continue
        for view in views(data):
            for label, needle in needles.items():
                if needle in view:
                    found.append(f"{label} in {path}")
    return sorted(set(found))


def sealed_values(paths) -> set[str]:
    out = set()
    for path in paths:
        with open(path, "rb") as f:
            for view in views(f.read()):
                out.update(m.group().decode() for m in SEALED.finditer(view))
    return out


def unseal_any(ring: Keyring, values, where: str) -> list[str]:
    out = []
    for value in values:
        try:
            out.append(ring.unseal_text(value, where))
        except SealError:
            pass
    return out


def token_secret(daemon, role: str) -> str:
    return check(daemon.cli("swarm", "join-token", "-q", role)).out.strip().rsplit("-", 1)[1]


def test_no_key_in_plaintext_at_rest(cluster, monkeypatch):
    monkeypatch.setenv("SWARMCTL_RAFT_COMPACTION_ENTRIES", "10")  # a snapshot after a few writes
    managers, workers = cluster.form(3, 1)
    m1, m2, m3 = managers
    cid = check(m1.cli("swarm", "inspect")).json()["id"]
    secrets = {"worker secret (first)": token_secret(m1, "worker"), "manager secret": token_secret(m1, "manager")}
    check(m2.cli("swarm", "join-token", "--rotate", "worker"))
    secrets["worker secret (rotated)"] = token_secret(m1, "worker")
    # autolock on, then a rotation: two unlock keys were in the record
    out = check(m1.cli("swarm", "update", "--autolock=true")).out
    keks = [seal.parse_unlock_key(out.split("following key:\n\n    ")[1].split("\n")[0])]
    keks.append(seal.parse_unlock_key(check(m3.cli("swarm", "unlock-key", "-q", "--rotate")).out.strip()))
    kid = seal.key_id(keks[-1])
    for i in range(15):  # enough writes for a snapshot on every manager
        check(m1.cli("node", "update", "--label-add", f"round={i}", "node4"))
    raft_dirs = [os.path.join(m.data_dir, "raft") for m in managers]
    wait_for(lambda: all(any("snapshot" in n for n in os.listdir(d)) for d in raft_dirs), timeout=30,
             what="a Raft snapshot on every manager")
    wait_for(lambda: all(parse(open(os.path.join(m.data_dir, "certs", "node.key"), "rb").read()).wrapped_by == kid
                         for m in managers), timeout=20, what="key files wrapped by the current unlock key")

    # what to look for: the DEK from node1's key file (opened with the unlock key), and the CA key, found sealed
    # in the Raft files and opened with the DEK (the only way the test can learn it)
    with open(os.path.join(m1.data_dir, "certs", "node.key"), "rb") as f:
        _, ring = parse(f.read()).open(keks[-1])
    raft_files = [p for d in raft_dirs for p in files_of(d)]
    sealed = sealed_values(raft_files)
    ca_keys = set(unseal_any(ring, sealed, place("cluster", cid, CA_KEY)))
    assert len(ca_keys) == 1, "the CA key is in the Raft files, sealed, exactly once over"
    ca_key_pem = ca_keys.pop()
    with open(os.path.join(m1.data_dir, "certs", "ca.pem"), "rb") as f:
        ca_cert = f.read()
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), None)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert ca_key.public_key().public_bytes(*spki) == x509.load_pem_x509_certificate(ca_cert).public_key().public_bytes(*spki)
    for role in ("worker", "manager"):  # the current join secrets are there, sealed (older ones may be compacted)
        assert token_secret(m1, role) in unseal_any(ring, sealed, place("cluster", cid, join_secret_path(role)))

    der = ca_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    needles = {label: value.encode() for label, value in secrets.items()}
    needles.update({f"CA key PEM line {i}": line.encode() for i, line in enumerate(ca_key_pem.splitlines())
                    if len(line) >= 40})
    needles.update(key_needles("CA key DER", der, skip=48))  # every EC P-256 PKCS#8 key starts alike
    for k in ring.keys:
        needles.update(key_needles(f"DEK {k.id}", k.secret))
    for i, kek in enumerate(keks):
        needles.update(key_needles(f"unlock key {i}", kek))
        needles[f"unlock key {i} (SWMKEY)"] = seal.format_unlock_key(kek).encode()

    # under autolock: nothing anywhere, the nodes' own TLS key files included; the daemons' logs too
    def everything():
        return ([p for d in cluster.daemons.values() for p in files_of(d.data_dir)]
                + [d.log_path for d in cluster.daemons.values()])
    assert len(everything()) > 20
    assert find_plaintext(everything(), needles) == []

    # the Raft log carries a new secret sealed only: rotate after the snapshot, read the follower's journal
    check(m1.cli("swarm", "join-token", "--rotate", "manager"))
    secret = token_secret(m1, "manager")
    journal = os.path.join(m2.data_dir, "raft", "raft.journal")

    def journal_holds_it_sealed():
        with open(journal, "rb") as f:
            raw = f.read()
        opened = unseal_any(ring, {m.group().decode() for m in SEALED.finditer(raw)},
                            place("cluster", cid, join_secret_path("manager")))
        return secret in opened
    wait_for(journal_holds_it_sealed, timeout=10, what="the rotated manager secret in node2's journal, sealed")
    needles["manager secret (rotated)"] = secret.encode()
    assert find_plaintext(everything(), needles) == []

    # autolock off: the TLS key files hold the DEK in plaintext again (the only file allowed to), nothing else does
    check(m1.cli("swarm", "update", "--autolock=false"))
    wait_for(lambda: all(not parse(open(os.path.join(m.data_dir, "certs", "node.key"), "rb").read()).wrapped
                         for m in managers), timeout=20, what="key files unwrapped")
    others = [p for p in everything() if not p.endswith(os.path.join("certs", "node.key"))]
    assert find_plaintext(others, needles) == []
    assert find_plaintext([os.path.join(m1.data_dir, "certs", "node.key")], key_needles("DEK", ring.current.secret))


def test_a_manager_without_the_dek_fetches_it(cluster):
    """A manager whose key file has no DEK (it joined under a version without sealing) asks the others."""
    managers, _ = cluster.form(3, 0)
    m1, _m2, m3 = managers
    path = os.path.join(m3.data_dir, "certs", "node.key")
    m3.stop()
    with open(path, "rb") as f:
        tls_key, ring = parse(f.read()).open(None)
    with open(path, "wb") as f:
        f.write(compose(tls_key, None, None))  # the TLS key alone
    m3.start()
    expected = check(m1.cli("swarm", "join-token", "-q", "worker")).out
    wait_for(lambda: check(m3.cli("swarm", "join-token", "-q", "worker")).out == expected, timeout=20,
             what="node3 reads the sealed join secret from its own replica")
    with open(path, "rb") as f:
        assert parse(f.read()).open(None)[1].ids == ring.ids

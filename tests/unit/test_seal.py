"""swarmctl/security/seal.py: sealed values, keyrings, unlock keys."""

import base64

import pytest

from swarmctl.security import seal
from swarmctl.security.seal import Key, Keyring, SealError, UnknownKey

PLACE = "cluster/abc/root_ca.key"


def test_round_trip_text_and_bytes():
    ring = Keyring.generate()
    sealed = ring.seal("the CA key", PLACE)
    assert seal.is_sealed(sealed) and sealed.startswith(f"sealed:v1:{ring.current.id}:")
    assert "the CA key" not in sealed
    assert ring.unseal_text(sealed, PLACE) == "the CA key"
    raw = bytes(range(256))
    assert ring.unseal(ring.seal(raw, PLACE), PLACE) == raw


def test_every_seal_uses_a_fresh_nonce():
    ring = Keyring.generate()
    assert ring.seal("same", PLACE) != ring.seal("same", PLACE)


def test_wrong_key_is_refused():
    sealed = Keyring.generate().seal("secret", PLACE)
    other = Keyring.generate()
    with pytest.raises(UnknownKey) as info:
        other.unseal(sealed, PLACE)
    assert info.value.key_id == seal.sealed_key_id(sealed)
    # the same key id but another secret (a forged id) fails authentication, not silently
    kid = seal.sealed_key_id(sealed)
    forged = Keyring([Key(kid, b"\x01" * 32)])
    with pytest.raises(SealError, match="authentication failed"):
        forged.unseal(sealed, PLACE)


def test_tampering_is_detected():
    ring = Keyring.generate()
    sealed = ring.seal("secret value", PLACE)
    prefix, payload = sealed.rsplit(":", 1)
    blob = bytearray(base64.b64decode(payload))
    for i in (0, 12, len(blob) - 1):  # nonce, ciphertext, tag
        changed = bytearray(blob)
        changed[i] ^= 0x01
        with pytest.raises(SealError, match="authentication failed"):
            ring.unseal(f"{prefix}:{base64.b64encode(bytes(changed)).decode()}", PLACE)
    with pytest.raises(SealError, match="truncated"):
        ring.unseal(f"{prefix}:{base64.b64encode(bytes(blob[:20])).decode()}", PLACE)
    for bad in ("sealed:v1:zz:AAAA", "sealed:v2:" + sealed[10:], sealed + "!", "plain text"):
        with pytest.raises(SealError):
            ring.unseal(bad, PLACE)


def test_a_value_does_not_unseal_in_another_place():
    ring = Keyring.generate()
    sealed = ring.seal("worker secret", "cluster/abc/join_secrets.worker")
    with pytest.raises(SealError, match="authentication failed"):
        ring.unseal(sealed, "cluster/abc/join_secrets.manager")
    with pytest.raises(SealError, match="authentication failed"):
        ring.unseal(sealed, "cluster/other/join_secrets.worker")


def test_keyring_rotation_seals_with_the_new_key_and_opens_the_old():
    ring = Keyring.generate()
    old = ring.seal("before", PLACE)
    rotated = ring.rotated()
    assert rotated.current.id != ring.current.id and ring.current.id in rotated.ids
    assert rotated.unseal_text(old, PLACE) == "before"
    assert seal.sealed_key_id(rotated.seal("after", PLACE)) == rotated.current.id
    with pytest.raises(UnknownKey):
        ring.unseal(rotated.seal("after", PLACE), PLACE)


def test_keyring_export_round_trip_and_merge():
    ring = Keyring.generate().rotated()
    back = Keyring.from_export(ring.export())
    assert back.ids == ring.ids and back.current.secret == ring.current.secret
    other = Keyring.generate()
    merged = ring.merged(other)
    assert merged.current.id == ring.current.id and set(merged.ids) == set(ring.ids) | set(other.ids)
    for bad in ([], None, ["not base64!"], [base64.b64encode(b"short").decode()]):
        with pytest.raises(SealError):
            Keyring.from_export(bad)
    assert "secret" not in repr(ring.current) and ring.current.secret.hex() not in repr(ring)


def test_unlock_key_format_is_dockers():
    kek = seal.new_unlock_key()
    text = seal.format_unlock_key(kek)
    assert text.startswith("SWMKEY-1-") and "=" not in text
    assert base64.b64decode(text[9:] + "=") == kek
    assert seal.parse_unlock_key(f"  {text}\n") == kek
    for bad in ("", "SWMKEY-1-", "SWMKEY-2-" + text[9:], text[:-4], text + "AAAA", "SWMKEY-1-!!!!"):
        with pytest.raises(seal.InvalidUnlockKey, match="invalid unlock key"):
            seal.parse_unlock_key(bad)


def test_derive_separates_purposes():
    kek = seal.new_unlock_key()
    a, b = seal.derive(kek, "tls key password"), seal.derive(kek, "data key wrap")
    assert len(a) == len(b) == 32 and a != b and kek not in (a, b)
    assert seal.derive(kek, "tls key password") == a

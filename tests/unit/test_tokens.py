"""Join token format, parsing and secret comparison."""

import hashlib

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from swarmctl.manager.ca import create_root_ca
from swarmctl.security.certs import load_certificate
from swarmctl.security.tokens import (
    DIGEST_LEN,
    SECRET_LEN,
    JoinToken,
    TokenError,
    ca_digest,
    make_token,
    new_secret,
    parse_token,
    secret_matches,
)

BASE36 = set("0123456789abcdefghijklmnopqrstuvwxyz")


@pytest.fixture(scope="module")
def ca_pem():
    return create_root_ca("cluster-t")[0]


def test_digest_is_padded_base36_sha256_of_der(ca_pem):
    digest = ca_digest(ca_pem)
    assert len(digest) == DIGEST_LEN == 50
    assert set(digest) <= BASE36
    der = load_certificate(ca_pem).public_bytes(Encoding.DER)
    assert int(digest, 36) == int.from_bytes(hashlib.sha256(der).digest(), "big")


def test_digest_is_stable_and_ca_specific(ca_pem):
    assert ca_digest(ca_pem) == ca_digest(ca_pem)
    assert ca_digest(ca_pem) == ca_digest(ca_pem.decode())
    assert ca_digest(ca_pem) != ca_digest(create_root_ca("cluster-t")[0])


def test_digest_rejects_garbage():
    with pytest.raises(ValueError):
        ca_digest(b"not a certificate")


def test_secret_is_padded_base36_and_random():
    secrets_ = {new_secret() for _ in range(50)}
    assert len(secrets_) == 50
    for s in secrets_:
        assert len(s) == SECRET_LEN == 25
        assert set(s) <= BASE36
        assert int(s, 36) < 2**128


def test_small_values_are_left_padded(monkeypatch):
    monkeypatch.setattr("secrets.token_bytes", lambda n: b"\x00" * (n - 1) + b"\x01")
    assert new_secret() == "0" * 24 + "1"


def test_round_trip(ca_pem):
    digest, secret = ca_digest(ca_pem), new_secret()
    token = make_token(digest, secret)
    assert token == f"SWMTKN-1-{digest}-{secret}"
    assert parse_token(token) == JoinToken(digest=digest, secret=secret)


def test_surrounding_whitespace_is_accepted(ca_pem):
    token = make_token(ca_digest(ca_pem), new_secret())
    assert parse_token(f"  {token}\n") == parse_token(token)


def test_make_token_rejects_bad_parts():
    with pytest.raises(TokenError):
        make_token("short", new_secret())


GOOD_D = "a" * 50
GOOD_S = "b" * 25


@pytest.mark.parametrize(
    "token, why",
    [
        ("", "must start with"),
        (f"XWMTKN-1-{GOOD_D}-{GOOD_S}", "must start with"),
        (f"swmtkn-1-{GOOD_D}-{GOOD_S}", "must start with"),
        ("SWMTKN", "version"),
        (f"SWMTKN-2-{GOOD_D}-{GOOD_S}", "version"),
        (f"SWMTKN--{GOOD_D}-{GOOD_S}", "version"),
        (f"SWMTKN-1-{GOOD_D}", "4 '-'-separated parts"),
        (f"SWMTKN-1-{GOOD_D}-{GOOD_S}-extra", "4 '-'-separated parts"),
        (f"SWMTKN-1-{GOOD_D[:-1]}-{GOOD_S}", "CA digest must be 50"),
        (f"SWMTKN-1-{GOOD_D}0-{GOOD_S}", "CA digest must be 50"),
        (f"SWMTKN-1-{GOOD_D}-{GOOD_S[:-1]}", "secret must be 25"),
        (f"SWMTKN-1-{GOOD_D}-{GOOD_S}0", "secret must be 25"),
        (f"SWMTKN-1-{'A' * 50}-{GOOD_S}", "only 0-9 and a-z"),
        (f"SWMTKN-1-{GOOD_D[:-1]}!-{GOOD_S}", "only 0-9 and a-z"),
        (f"SWMTKN-1-{GOOD_D}-{GOOD_S[:-1]}_", "only 0-9 and a-z"),
        (f"SWMTKN-1-{GOOD_D}-{GOOD_S[:-1]} ", "secret must be 25"),
    ],
)
def test_malformed_tokens(token, why):
    with pytest.raises(TokenError, match="^invalid join token: ") as info:
        parse_token(token)
    assert why in str(info.value)
    assert "\n" not in str(info.value)


def test_inner_whitespace_rejected():
    with pytest.raises(TokenError, match="only 0-9 and a-z"):
        parse_token(f"SWMTKN-1-{GOOD_D}-{GOOD_S[:12]} {GOOD_S[13:]}")


def test_non_string_rejected():
    with pytest.raises(TokenError, match="not a string"):
        parse_token(None)  # type: ignore[arg-type]


def test_token_error_is_value_error():
    assert issubclass(TokenError, ValueError)


def test_secret_matches():
    s = new_secret()
    assert secret_matches(s, s)
    assert secret_matches(s, str(s))
    assert not secret_matches(s, new_secret())
    assert not secret_matches(s, s[:-1])
    assert not secret_matches("", s)

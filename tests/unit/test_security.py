from __future__ import annotations

import base64
import json

import jwt
import pytest

from alexandrite.kit.security import (
    Principal,
    hash_api_key,
    hash_password,
    hash_password_scrypt,
    needs_rehash,
    new_api_key,
    verify_password,
)
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import ISSUER, InvalidToken, KeyRing, issue_token, read_claims, read_token


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, environment="test", **values)  # type: ignore[arg-type, call-arg]


def test_password_hash_is_argon2id_salted_and_verifies() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("$argon2id$")
    assert verify_password("correct horse", first)
    assert not verify_password("wrong horse", first)
    assert not verify_password("x", "garbage")
    assert not needs_rehash(first)


def test_scrypt_hashes_still_verify_and_ask_to_be_rehashed() -> None:
    old = hash_password_scrypt("correct horse")
    assert old.startswith("scrypt$")
    assert verify_password("correct horse", old) and not verify_password("wrong horse", old)
    assert needs_rehash(old)


def test_token_is_a_standard_jwt_with_every_claim() -> None:
    settings = _settings(secret_key="s" * 40, secret_key_id="2026-12")
    token = issue_token(settings, Principal(role="seller", subject="alice", name="alice"), 60)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "kid": "2026-12", "typ": "JWT"}
    claims = jwt.decode(token, "s" * 40, algorithms=["HS256"], audience="crm", issuer=ISSUER)
    assert {"iss", "aud", "sub", "iat", "exp", "jti", "role"} <= set(claims)
    assert claims["role"] == "seller" and set(claims["aud"]) == {"shop", "crm", "mes"}
    assert claims["exp"] - claims["iat"] <= 61


def test_token_round_trip_and_tampering() -> None:
    settings = _settings(secret_key="s" * 40)
    principal = Principal(role="seller", subject="alice", name="alice")
    token = issue_token(settings, principal, 60)
    assert read_token(settings, token, "crm") == principal
    with pytest.raises(InvalidToken, match="bad signature"):
        read_token(_settings(secret_key="t" * 40), token)
    head, body, signature = token.split(".")
    forged_body = base64.urlsafe_b64encode(json.dumps(
        {**jwt.decode(token, options={"verify_signature": False}), "role": "admin"}).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        read_token(settings, f"{head}.{forged_body}.{signature}")
    with pytest.raises(InvalidToken, match="malformed"):
        read_token(settings, "no-dot")
    unsigned = jwt.encode({"sub": "x", "role": "admin"}, key=None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(InvalidToken):
        read_token(settings, unsigned)


def test_audience_is_per_service() -> None:
    settings = _settings()
    customer = issue_token(settings, Principal(role="customer", subject="c1"), 60, audience=("shop",))
    assert read_token(settings, customer, "shop").subject == "c1"
    for other in ("crm", "mes"):
        with pytest.raises(InvalidToken, match="not for this service"):
            read_token(settings, customer, other)


def test_rotation_previous_keys_verify_current_key_signs() -> None:
    before = _settings(secret_key="a" * 40, secret_key_id="k1")
    old_token = issue_token(before, Principal(role="operator", subject="bob"), 60)
    after = _settings(secret_key="b" * 40, secret_key_id="k2", previous_secret_keys={"k1": "a" * 40})
    assert read_token(after, old_token, "mes").subject == "bob"  # nobody signed out by the rotation
    new_token = issue_token(after, Principal(role="operator", subject="bob"), 60)
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    dropped = _settings(secret_key="b" * 40, secret_key_id="k2")
    with pytest.raises(InvalidToken, match="unknown key"):
        read_token(dropped, old_token)


def test_expired_token_refused() -> None:
    token = issue_token(KeyRing("k", {"k": "k" * 40}), Principal(role="operator", subject="bob"), -60)
    with pytest.raises(InvalidToken, match="expired"):
        read_token(KeyRing("k", {"k": "k" * 40}), token)


def test_no_bearer_tokens_for_the_service_role() -> None:
    with pytest.raises(ValueError):
        issue_token(_settings(), Principal(role="service", subject="x"), 60)


def test_claims_carry_token_id_for_revocation() -> None:
    settings = _settings()
    token = issue_token(settings, Principal(role="customer", subject="c"), 60, audience=("shop",))
    claims = read_claims(settings, token, "shop")
    principal = read_token(settings, token, "shop")
    assert principal.token_id == claims["jti"] and principal.expires_at == claims["exp"]


def test_customer_actor_never_carries_personal_data() -> None:
    assert Principal(role="customer", subject="c0ffee", name="Jane Doe").actor == "customer:c0ffee"
    assert Principal(role="seller", subject="s1", name="alice").actor == "seller:alice"


def test_api_keys_are_random_and_stored_hashed() -> None:
    a, b = new_api_key(), new_api_key()
    assert a != b and a.startswith("alx_") and len(a) > 40
    assert hash_api_key(a) != a and len(hash_api_key(a)) == 64


def test_a_remembered_token_still_expires_and_keeps_its_audience(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from alexandrite.kit import tokens

    ring = KeyRing("k", {"k": "r" * 40})
    token = issue_token(ring, Principal(role="customer", subject="c"), 60, audience=("shop",))
    assert read_claims(ring, token, "shop")["sub"] == "c"
    assert read_claims(ring, token, "shop")["sub"] == "c"  # remembered
    with pytest.raises(InvalidToken, match="not for this service"):
        read_claims(ring, token, "crm")
    later = time.time() + 120
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    with pytest.raises(InvalidToken, match="expired"):
        read_claims(ring, token, "shop")
    other_ring = KeyRing("k", {"k": "z" * 40})
    with pytest.raises(InvalidToken):
        read_claims(other_ring, token, "shop")

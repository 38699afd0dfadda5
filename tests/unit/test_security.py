from __future__ import annotations

import time

import pytest

from alexandrite.kit.security import (
    InvalidToken,
    Principal,
    hash_api_key,
    hash_password,
    issue_token,
    new_api_key,
    read_token,
    verify_password,
)


def test_password_hash_is_salted_and_verifies() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("scrypt$")
    assert verify_password("correct horse", first)
    assert not verify_password("wrong horse", first)
    assert not verify_password("x", "garbage")


def test_token_round_trip_and_tampering() -> None:
    principal = Principal(role="seller", subject="alice", name="alice")
    token = issue_token("s" * 40, principal, 60)
    assert read_token("s" * 40, token) == principal
    with pytest.raises(InvalidToken, match="bad signature"):
        read_token("t" * 40, token)
    body, signature = token.split(".")
    with pytest.raises(InvalidToken):
        read_token("s" * 40, body[:-2] + "xx." + signature)
    with pytest.raises(InvalidToken, match="malformed"):
        read_token("s" * 40, "no-dot")


def test_expired_token_refused() -> None:
    token = issue_token("k" * 40, Principal(role="operator", subject="bob"), -1)
    with pytest.raises(InvalidToken, match="expired"):
        read_token("k" * 40, token)
    assert time.time() > 0


def test_customer_actor_never_carries_personal_data() -> None:
    assert Principal(role="customer", subject="c0ffee", name="Jane Doe").actor == "customer:c0ffee"
    assert Principal(role="seller", subject="s1", name="alice").actor == "seller:alice"


def test_api_keys_are_random_and_stored_hashed() -> None:
    a, b = new_api_key(), new_api_key()
    assert a != b and a.startswith("alx_") and len(a) > 40
    assert hash_api_key(a) != a and len(hash_api_key(a)) == 64

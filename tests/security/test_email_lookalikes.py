"""Look-alike e-mail addresses used to create separate accounts beside the real one."""

from __future__ import annotations

import uuid

import pytest

from alexandrite.kit.settings import Settings
from tests.security.test_auth_header_bypass import _settings, shop

PASSWORD = "correct horse battery"


@pytest.mark.parametrize("spelling", [
    "{user}@example.com.",                      # trailing-dot domain
    "{user}\u200b@example.com",                 # zero-width space
    "\uff21{user}@example.com",                 # fullwidth A (real account starts with "a")
    "{USER}@EXAMPLE.COM",                       # case
])
async def test_signup_with_lookalike_of_existing_email_is_409(settings: Settings, spelling: str) -> None:
    """POST /api/v1/auth/signup {"email": <look-alike of a taken address>} → 409, not a second account."""
    user = f"a{uuid.uuid4().hex[:8]}"
    async with shop(_settings(settings)) as client:
        first = await client.post("/api/v1/auth/signup",
                                  json={"email": f"{user}@example.com", "password": PASSWORD, "name": "A"})
        assert first.status_code == 201
        probe = spelling.format(user=user[1:] if spelling.startswith("\uff21") else user, USER=user.upper())
        second = await client.post("/api/v1/auth/signup", json={"email": probe, "password": PASSWORD, "name": "B"})
        assert second.status_code == 409, second.text
        signin = await client.post("/api/v1/auth/token", json={"email": probe, "password": PASSWORD})
        assert signin.status_code == 200


async def test_signup_with_nfd_email_matches_nfc_account(settings: Settings) -> None:
    """POST /api/v1/auth/signup {"email": "jose\u0301…"} when "jos\u00e9…" exists → 409."""
    tag = uuid.uuid4().hex[:8]
    async with shop(_settings(settings)) as client:
        assert (await client.post("/api/v1/auth/signup", json={
            "email": f"jos\u00e9{tag}@example.com", "password": PASSWORD, "name": "J"})).status_code == 201
        second = await client.post("/api/v1/auth/signup", json={
            "email": f"jose\u0301{tag}@example.com", "password": PASSWORD, "name": "J"})
    assert second.status_code == 409


async def test_signup_with_mixed_cyrillic_latin_email_is_422(settings: Settings) -> None:
    """POST /api/v1/auth/signup {"email": "\u0430dmin…@example.com"} (Cyrillic а) → 422."""
    async with shop(_settings(settings)) as client:
        response = await client.post("/api/v1/auth/signup", json={
            "email": f"\u0430dmin{uuid.uuid4().hex[:6]}@example.com", "password": PASSWORD, "name": "M"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "email_lookalike"

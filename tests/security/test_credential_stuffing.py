"""Credential stuffing: the sign-in API first answered 429 at attempt 1,201 (the general per-IP limit)."""

from __future__ import annotations

import uuid

from alexandrite.kit.auth_failures import MAX_FAILURES
from alexandrite.kit.settings import Settings
from tests.security.test_auth_header_bypass import _settings, shop


async def test_credential_stuffing_many_accounts_one_password_gets_429(settings: Settings) -> None:
    """POST /api/v1/auth/token {"email": "<victim-n>@example.com", "password": "Summer2026!"} for many victims."""
    tag = uuid.uuid4().hex[:8]
    async with shop(_settings(settings)) as client:
        statuses = [(await client.post("/api/v1/auth/token", json={
            "email": f"victim{n}-{tag}@example.com", "password": "Summer2026!"})).status_code
            for n in range(MAX_FAILURES + 3)]
        last = await client.post("/api/v1/auth/token", json={"email": f"x-{tag}@example.com", "password": "p"})
    assert statuses[:MAX_FAILURES] == [401] * MAX_FAILURES
    assert statuses[MAX_FAILURES:] == [429] * 3
    assert last.status_code == 429 and int(last.headers["retry-after"]) >= 1


async def test_password_guessing_one_account_gets_429_even_when_it_exists(settings: Settings) -> None:
    """POST /api/v1/auth/token {"email": "<real>", "password": "guess-n"}: same 429 as for an unknown address."""
    email = f"real-{uuid.uuid4().hex[:8]}@example.com"
    async with shop(_settings(settings)) as client:
        assert (await client.post("/api/v1/auth/signup", json={
            "email": email, "password": "correct horse battery", "name": "R"})).status_code == 201
        statuses = [(await client.post("/api/v1/auth/token", json={"email": email, "password": f"guess-{n}"}
                                       )).status_code for n in range(MAX_FAILURES + 1)]
        locked = await client.post("/api/v1/auth/token", json={"email": email, "password": "correct horse battery"})
    assert statuses[-1] == 429
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "too_many_failures"

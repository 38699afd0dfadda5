"""Sign-in answered an unknown address without hashing (4 ms vs 56 ms): accounts could be enumerated by time."""

from __future__ import annotations

import uuid

import pytest

from alexandrite.kit.settings import Settings
from alexandrite.shop import handlers
from tests.security.test_auth_header_bypass import _settings, shop


async def test_signin_for_unknown_email_runs_the_same_password_hash(settings: Settings,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /api/v1/auth/token {"email": "<nobody>@example.com"} verifies against a dummy hash → same work, 401."""
    schemes: list[str] = []
    real = handlers.verify_password

    def counting(password: str, stored: str) -> bool:
        schemes.append(stored.split("$")[1] if stored.startswith("$") else stored.split("$")[0])
        return real(password, stored)

    monkeypatch.setattr(handlers, "verify_password", counting)
    async with shop(_settings(settings)) as client:
        response = await client.post("/api/v1/auth/token", json={
            "email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "whatever1"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"
    assert schemes == ["argon2id"]  # the dummy hash is argon2id like every new hash

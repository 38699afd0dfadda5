"""Exploits against the request limiter's reading of the Authorization header, each with the exact request."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager

from alexandrite.kit.auth_failures import MAX_FAILURES
from alexandrite.kit.settings import Settings
from alexandrite.shop.app import create_app


def _settings(settings: Settings, **overrides: object) -> Settings:
    base = {"run_relay": False, "run_consumer": False, "run_webhooks": False, "failed_auth_limit": MAX_FAILURES,
            "redis_prefix": f"{settings.redis.prefix}:sec-{uuid.uuid4().hex[:6]}"}
    return settings.replace(**{**base, **overrides})


@asynccontextmanager
async def shop(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://shop") as client:
            yield client


async def test_empty_service_scheme_with_invalid_x_api_key_is_rate_limited(settings: Settings) -> None:
    """GET /api/v1/orders with `Authorization: Service x` + a wrong X-API-Key used to skip every limit."""
    local = _settings(settings, rate_limit_per_ip=3)
    async with shop(local) as client:
        statuses = [(await client.get("/api/v1/orders", headers={
            "Authorization": "Service x", "X-API-Key": f"guess-{n}"})).status_code for n in range(6)]
    assert statuses[:3] == [401, 401, 401]
    assert statuses[3:] == [429, 429, 429]


async def test_service_scheme_with_valid_token_is_not_limited(settings: Settings) -> None:
    local = _settings(settings, rate_limit_per_ip=2)
    headers = {"Authorization": f"Service {local.auth.service_token}"}
    async with shop(local) as client:
        statuses = [(await client.get("/api/v1/orders", headers=headers)).status_code for _ in range(5)]
    assert 429 not in statuses


async def test_two_authorization_headers_are_refused_with_400(settings: Settings) -> None:
    """`Authorization: Bearer junk` then `Authorization: Service <token>`: the limiter read the last header,
    authentication the first; now neither reads either."""
    local = _settings(settings)
    async with shop(local) as client:
        response = await client.get("/api/v1/orders", headers=[
            ("Authorization", "Bearer junk"), ("Authorization", f"Service {local.auth.service_token}")])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "duplicate_authorization"

"""Guessing credentials other than the sign-in API: bearer tokens, X-API-Key values and the sign-in pages were
limited only by the general per-address limit (first 429 at attempt 1,201)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager

from alexandrite.crm.app import create_app as create_crm
from alexandrite.kit.auth_failures import MAX_FAILURES
from alexandrite.kit.settings import Settings
from alexandrite.shop.app import create_app as create_shop
from alexandrite.shop.handlers import create_partner
from tests.security.test_auth_header_bypass import _settings, shop


@asynccontextmanager
async def shop_from(settings: Settings, addresses: list[str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One shop app; one client per source address."""
    app = create_shop(settings)
    async with LifespanManager(app):
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app, client=(address, 40000)),
                                     base_url="http://shop") for address in addresses]
        try:
            yield clients
        finally:
            for client in clients:
                await client.aclose()


def _assert_locked_after_the_limit(statuses: list[int], extra: int) -> None:
    assert statuses[:MAX_FAILURES] == [401] * MAX_FAILURES, statuses
    assert statuses[MAX_FAILURES:] == [429] * extra, statuses


async def test_api_key_guessing_gets_429_with_retry_after(settings: Settings) -> None:
    """GET /api/v1/orders with X-API-Key: alx_<guess-n> from one address: 429 after the limit, not at 1,201."""
    async with shop(_settings(settings)) as client:
        responses = [await client.get("/api/v1/orders", headers={"X-API-Key": f"alx_{uuid.uuid4().hex}"})
                     for _ in range(MAX_FAILURES + 3)]
    _assert_locked_after_the_limit([r.status_code for r in responses], 3)
    assert responses[-1].json()["error"]["code"] == "too_many_failures"
    assert int(responses[-1].headers["retry-after"]) >= 1


async def test_api_key_guessing_from_many_addresses_is_limited_per_key_prefix(settings: Settings) -> None:
    """The same key prefix guessed from a new address each time: the per-prefix bucket answers 429."""
    addresses = [f"198.51.100.{n}" for n in range(1, MAX_FAILURES + 3)]
    async with shop_from(_settings(settings), addresses) as clients:
        statuses = [(await client.get("/api/v1/orders", headers={"X-API-Key": "alx_Sg7XkQ" + uuid.uuid4().hex}
                                      )).status_code for client in clients]
    _assert_locked_after_the_limit(statuses, 2)


async def test_a_valid_api_key_still_works_from_a_locked_address(settings: Settings) -> None:
    """A 256-bit key is not guessed: the partner behind a crowded address keeps working; wrong keys get 429."""
    local = _settings(settings)
    async with shop(local) as client:
        key = await create_partner(client._transport.app.state.db, f"p-{uuid.uuid4().hex[:8]}")  # type: ignore[attr-defined]
        for _ in range(MAX_FAILURES + 1):
            await client.get("/api/v1/orders", headers={"X-API-Key": f"alx_{uuid.uuid4().hex}"})
        assert (await client.get("/api/v1/orders", headers={"X-API-Key": "alx_wrong"})).status_code == 429
        assert (await client.get("/api/v1/orders", headers={"X-API-Key": key})).status_code == 200


async def test_bearer_token_guessing_gets_429(settings: Settings) -> None:
    """GET /api/v1/orders with Authorization: Bearer <forged-n>: 429 after the limit."""
    async with shop(_settings(settings)) as client:
        statuses = [(await client.get("/api/v1/orders", headers={
            "Authorization": f"Bearer eyJhbGciOiJIUzI1NiJ9.{uuid.uuid4().hex}.{uuid.uuid4().hex}"})).status_code
            for _ in range(MAX_FAILURES + 2)]
    _assert_locked_after_the_limit(statuses, 2)


async def test_signin_page_password_guessing_gets_429_even_for_the_right_password(settings: Settings) -> None:
    """POST /signin (form) email=<real>&password=<guess-n>: 429 with Retry-After, then the right one too."""
    email = f"page-{uuid.uuid4().hex[:8]}@example.com"
    async with shop(_settings(settings)) as client:
        assert (await client.post("/api/v1/auth/signup", json={
            "email": email, "password": "correct horse battery", "name": "P"})).status_code == 201
        statuses = [(await client.post("/signin", data={"email": email, "password": f"guess-{n}"})).status_code
                    for n in range(MAX_FAILURES + 1)]
        right = await client.post("/signin", data={"email": email, "password": "correct horse battery"})
    _assert_locked_after_the_limit(statuses, 1)
    assert right.status_code == 429 and int(right.headers["retry-after"]) >= 1


async def test_signin_page_credential_stuffing_many_accounts_one_password(settings: Settings) -> None:
    """POST /signin for victim-n@… with one common password: the per-address bucket answers 429."""
    tag = uuid.uuid4().hex[:8]
    async with shop(_settings(settings)) as client:
        statuses = [(await client.post("/signin", data={"email": f"victim{n}-{tag}@example.com",
                                                        "password": "Winter2026!"})).status_code
                    for n in range(MAX_FAILURES + 2)]
    _assert_locked_after_the_limit(statuses, 2)


async def test_staff_signin_page_token_guessing_gets_429(settings: Settings) -> None:
    """POST /signin on crm with token=<guess-n>: 429 after the limit."""
    app = create_crm(_settings(settings))
    async with LifespanManager(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://crm") as client:
            statuses = [(await client.post("/signin", data={"token": f"guess-{n}"})).status_code
                        for n in range(MAX_FAILURES + 1)]
    _assert_locked_after_the_limit(statuses, 1)


async def test_expired_and_revoked_tokens_are_not_counted_as_guesses(settings: Settings) -> None:
    """Many clients whose (genuine) tokens expired keep getting 401 'sign in again', never 429."""
    from alexandrite.kit.security import Principal
    from alexandrite.kit.tokens import issue_token

    local = _settings(settings)
    expired = [issue_token(local, Principal(role="customer", subject=str(uuid.uuid4())), -60, audience=("shop",))
               for _ in range(MAX_FAILURES + 3)]
    async with shop(local) as client:
        statuses = [(await client.get("/api/v1/orders", headers={"Authorization": f"Bearer {token}"})).status_code
                    for token in expired]
    assert statuses == [401] * len(expired)

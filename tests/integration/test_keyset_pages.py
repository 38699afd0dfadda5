"""Keyset pages stay exact while new orders arrive: shop "my orders", CRM list, MES dashboard.

A writer adds orders (newer than everything listed) between the reader's page requests; the
reader must see every order that existed when it started exactly once, newest first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from mes_orders import approved_order

from alexandrite.contracts.events import StatusChanged, status_envelope
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.crm.app import create_app as create_crm
from alexandrite.crm.consumers import handle_event as crm_handle_event
from alexandrite.kit.messaging.consumer import Delivery
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token
from alexandrite.mes.app import create_app as create_mes
from alexandrite.shop.app import create_app as create_shop

S = OrderStatus
Fetch = Callable[[str | None], Awaitable[dict[str, Any]]]


async def app_client(factory: Callable[[Settings], Any], settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = factory(settings.replace(**{"run_relay": False, "run_consumer": False}))
    async with LifespanManager(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                       base_url="http://test") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


def staff(settings: Settings, role: str) -> dict[str, str]:
    token = issue_token(settings, Principal(role=role, subject="kim", name="kim"), 600)
    return {"Authorization": f"Bearer {token}"}


async def read_all_while_writing(fetch: Fetch, write: Callable[[], Awaitable[None]]) -> list[str]:
    """Page to the end; one write lands before every page request after the first."""
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            return seen
        await asyncio.gather(write(), asyncio.sleep(0))


def assert_exact(seen: list[str], existing: list[str]) -> None:
    assert len(seen) == len(set(seen)), "an order was listed twice"
    listed = [i for i in seen if i in set(existing)]
    assert listed == existing, "an order that existed before paging was skipped or misplaced"


@pytest.fixture(scope="module")
async def shop(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in app_client(create_shop, settings):
        yield client


@pytest.fixture(scope="module")
async def crm(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in app_client(create_crm, settings):
        yield client


@pytest.fixture(scope="module")
async def mes(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in app_client(create_mes, settings):
        yield client


async def test_shop_my_orders(shop: httpx.AsyncClient) -> None:
    email = f"k-{uuid.uuid4().hex[:10]}@example.test"
    assert (await shop.post("/api/v1/auth/signup", json={"email": email, "password": "s3cret-pass",
                                                          "name": "Kay Set"})).status_code == 201
    token = (await shop.post("/api/v1/auth/token", json={"email": email, "password": "s3cret-pass"})).json()
    auth = {"Authorization": f"Bearer {token['access_token']}"}

    async def create() -> None:
        response = await shop.post("/api/v1/orders", json={"alloy": "gold_750"}, headers=auth)
        assert response.status_code == 201

    existing = []
    for _ in range(16):
        response = await shop.post("/api/v1/orders", json={"alloy": "gold_585"}, headers=auth)
        existing.insert(0, response.json()["id"])

    async def fetch(cursor: str | None) -> dict[str, Any]:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        response = await shop.get("/api/v1/orders", params=params, headers=auth)
        assert response.status_code == 200, response.text
        return dict(response.json())

    seen = await read_all_while_writing(fetch, create)
    assert_exact(seen, existing)
    assert len(seen) == len(existing)  # the new orders are newer than the first page: never listed later


async def crm_order(crm: httpx.AsyncClient, name: str, at: datetime) -> str:
    order_id = uuid.uuid4()
    envelope = status_envelope(producer="shop", order_id=order_id, seq=1, change=StatusChanged(
        status=S.INITIATED, actor="customer:k-1", at=at, alloy="gold_585", created_at=at,
        owner={"kind": "customer", "id": "k-1", "name": name}))
    outcome = await crm_handle_event(crm.app.state.db, Delivery(  # type: ignore[attr-defined]
        body=envelope.model_dump_json().encode(), headers={}, routing_key=envelope.type,
        message_id=str(envelope.event_id), attempt=0, redelivered=False))
    assert outcome == "ok"
    return str(order_id)


async def test_crm_list_and_search(crm: httpx.AsyncClient, settings: Settings) -> None:
    name = f"Keyset {uuid.uuid4().hex[:8]}"
    base = datetime.now(UTC) - timedelta(hours=1)
    existing = [await crm_order(crm, name, base + timedelta(seconds=i)) for i in range(14)][::-1]
    # Two orders created in the same microsecond: the id breaks the tie.
    same = base - timedelta(minutes=1)
    twins = sorted([await crm_order(crm, name, same) for _ in range(2)], reverse=True)
    existing += twins

    async def create() -> None:
        await crm_order(crm, name, datetime.now(UTC))

    for params in ({"customer": name}, {"q": name.split()[1]}, {"status": "INITIATED", "customer": name},
                   {"customer": name, "created_from": (same - timedelta(seconds=1)).isoformat()}):
        async def fetch(cursor: str | None, params: dict[str, str] = params) -> dict[str, Any]:
            query = {"limit": 4, **params, **({"cursor": cursor} if cursor else {})}
            response = await crm.get("/api/v1/crm/orders", params=query, headers=staff(settings, "seller"))
            assert response.status_code == 200, response.text
            return dict(response.json())

        seen = await read_all_while_writing(fetch, create)
        assert_exact(seen, existing)


async def test_mes_dashboard(mes: httpx.AsyncClient, settings: Settings) -> None:
    db = mes.app.state.db  # type: ignore[attr-defined]
    base = datetime.now(UTC) + timedelta(days=600)  # newer than the other tests' orders
    existing = [str(await approved_order(db, created_at=base + timedelta(seconds=i))) for i in range(12)][::-1]
    newer = iter(range(1, 1000))

    async def create() -> None:
        await approved_order(db, created_at=base + timedelta(hours=1, seconds=next(newer)))

    async def fetch(cursor: str | None) -> dict[str, Any]:
        params = {"limit": 3, "status": "MANUFACTURING_APPROVED", **({"cursor": cursor} if cursor else {})}
        response = await mes.get("/api/v1/production/orders", params=params, headers=staff(settings, "operator"))
        assert response.status_code == 200, response.text
        return dict(response.json())

    seen = await read_all_while_writing(fetch, create)
    assert_exact(seen, existing)

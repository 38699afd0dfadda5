"""CRM and MES pages in-process against real PostgreSQL: staff sign-in, filters, actions, plain errors."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from mes_orders import approved_order

from alexandrite.contracts.order_status import OrderStatus
from alexandrite.crm.app import create_app as create_crm
from alexandrite.kit.db import Database
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token
from alexandrite.mes.app import create_app as create_mes
from tests.integration.test_crm_api import closed_port, seed

S = OrderStatus


def staff_token(settings: Settings, role: str, name: str) -> str:
    return issue_token(settings, Principal(role=role, subject=name, name=name), 600)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, token: str, landing: str) -> str:
    answer = await client.post("/signin", data={"token": token, "next": landing})
    assert answer.status_code == 303 and answer.headers["location"] == landing, answer.text
    page = await client.get(landing)
    assert page.status_code == 200
    return csrf_of(page.text)


@pytest.fixture(scope="module")
async def crm_app(settings: Settings) -> AsyncIterator[FastAPI]:
    dead = f"http://127.0.0.1:{closed_port()}"
    application = create_crm(settings.replace(**{"run_relay": False, "run_consumer": False,
                                                          "shop_url": dead, "mes_url": dead}))
    async with LifespanManager(application):
        yield application


@pytest.fixture(scope="module")
async def mes_app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_mes(settings.replace(**{"run_relay": False, "run_consumer": False}))
    async with LifespanManager(application):
        yield application


def browser(app: FastAPI, host: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=f"http://{host}",
                             headers={"Origin": f"http://{host}"})


async def test_crm_sign_in_list_filters_and_actions(crm_app: FastAPI, settings: Settings) -> None:
    priced = await seed(crm_app, S.PRICE_CALCULATED, name="Filter Person")
    shipped = await seed(crm_app, S.SHIPPED, name="Filter Person")
    async with browser(crm_app, "crm.test") as client:
        assert (await client.get("/orders")).headers["location"] == "/signin?next=/orders"
        wrong = await client.post("/signin", data={"token": staff_token(settings, "operator", "olga")})
        assert wrong.status_code == 401 and "this page needs seller" in wrong.text
        garbage = await client.post("/signin", data={"token": "not-a-token"})
        assert garbage.status_code == 401 and "That token is not valid" in garbage.text
        csrf = await sign_in(client, staff_token(settings, "seller", "sally"), "/orders")

        found = await client.get("/orders", params={"customer": "filter person", "status": "PRICE_CALCULATED"})
        assert str(priced)[:8] in found.text and str(shipped)[:8] not in found.text
        bad = await client.get("/orders", params={"created_from": "yesterday"})
        assert bad.status_code == 422 and "Sorry" in bad.text and "created_from" in bad.text

        for _ in range(26):
            await seed(crm_app, S.PRICE_CALCULATED, name="Paging Person")
        first = await client.get("/orders", params={"customer": "Paging Person"})
        nxt = re.search(r'href="(/orders\?[^"]+cursor=[^"]+)" rel="next"', first.text)
        assert nxt and "customer=Paging+Person" in nxt.group(1)
        second = await client.get(nxt.group(1).replace("&amp;", "&"))
        assert second.text.count("/orders/") - second.text.count('href="/orders/"') >= 1

        refused = await client.post(f"/orders/{priced}/approve")
        assert refused.status_code == 403
        approved = await client.post(f"/orders/{priced}/approve", data={"csrf_token": csrf})
        assert "Approved" in (await client.get(approved.headers["location"])).text
        again = await client.post(f"/orders/{priced}/approve", data={"csrf_token": csrf})
        assert "That is not possible any more: the order is now “Approved for making”." in (
            await client.get(again.headers["location"])).text
        closed = await client.post(f"/orders/{shipped}/close", data={"csrf_token": csrf, "reason": "signed for"})
        page = await client.get(closed.headers["location"])
        assert "The order is closed." in page.text and "Delivered and closed" in page.text
        noted = await client.post(f"/orders/{shipped}/notes", data={"csrf_token": csrf, "text": "called them"})
        assert "called them" in (await client.get(noted.headers["location"])).text
        other = await seed(crm_app, S.PRICE_CALCULATED, name="Cancel Person")
        cancelled = await client.post(f"/orders/{other}/cancel", data={"csrf_token": csrf, "reason": "asked to"})
        page = await client.get(cancelled.headers["location"])
        assert "The order is cancelled." in page.text and "asked to" in page.text
        missing = await client.get(f"/orders/{uuid.uuid4()}")
        assert missing.status_code == 404 and "There is no such order." in missing.text


async def test_mes_dashboard_and_stage_actions(mes_app: FastAPI, settings: Settings) -> None:
    db: Database = mes_app.state.db
    older = await approved_order(db)
    newer = await approved_order(db)
    async with browser(mes_app, "mes.test") as client:
        seller = await client.post("/signin", data={"token": staff_token(settings, "seller", "sally")})
        assert seller.status_code == 401
        csrf = await sign_in(client, staff_token(settings, "operator", "olga"), "/production/dashboard")
        board = await client.get("/production/dashboard", params={"status": "MANUFACTURING_APPROVED"})
        assert board.text.index(str(newer)[:8]) < board.text.index(str(older)[:8])  # newest first
        assert f'action="/production/orders/{newer}/take"' in board.text and 'hx-trigger="every 5s' in board.text
        partial = await client.get("/production/dashboard", headers={"HX-Request": "true"})
        assert partial.text.lstrip().startswith('<div id="board"') and "<html" not in partial.text
        wrong = await client.get("/production/dashboard", params={"status": "NOPE"})
        assert wrong.status_code == 422 and "Pick a status" in wrong.text

        taken = await client.post(f"/production/orders/{newer}/take", data={"csrf_token": csrf})
        assert taken.headers["location"].startswith(f"/production/orders/{newer}?notice=")
        page = await client.get(taken.headers["location"])
        assert "Being made" in page.text and "operator:olga" in page.text and "Mark as made" in page.text
        lost = await client.post(f"/production/orders/{newer}/take", data={"csrf_token": csrf})
        assert "That is not possible any more" in (await client.get(lost.headers["location"])).text
        for step in ("complete", "package"):
            await client.post(f"/production/orders/{newer}/{step}", data={"csrf_token": csrf})
        bad = await client.post(f"/production/orders/{newer}/ship", data={"csrf_token": csrf, "carrier": "DHL",
                                                                            "tracking_number": "no spaces!"})
        assert "Enter the carrier and a tracking number" in (await client.get(bad.headers["location"])).text
        shipped = await client.post(f"/production/orders/{newer}/ship",
                                    data={"csrf_token": csrf, "carrier": "DHL", "tracking_number": "JD-0042"})
        page = await client.get(shipped.headers["location"])
        assert "Shipped" in page.text and "JD-0042" in page.text and "No production step" in page.text
        assert f'data-stl="/production/orders/{newer}/model.stl"' in page.text
        gone = await client.get(f"/production/orders/{newer}/model.stl")  # the helper's model was never stored
        assert gone.status_code == 404 and gone.json()["error"]["message"] == "The model file is not available."

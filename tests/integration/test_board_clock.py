"""The production board's stage clock: time in stage, SLA, lateness, the late filter, late-first and
by-stage orders, late counts per stage, bad parameters; the CRM's waiting-for-approval list."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from mes_orders import approved_order
from sqlalchemy import update

from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.db import Database
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token
from alexandrite.mes.schemas import OrderPage
from alexandrite.mes.tables import production_orders

S = OrderStatus
BASE = "/api/v1/production/orders"
HOUR = 3600


def bearer(settings: Settings) -> dict[str, str]:
    token = issue_token(settings, Principal(role="operator", subject="ida", name="ida"), 600)
    return {"Authorization": f"Bearer {token}"}


async def in_stage_for(app: Any, db: Database, order_id: uuid.UUID, seconds: float) -> None:
    """Move the order's stage clock back (as if it had entered its status ``seconds`` ago)."""
    async with db.sessions.begin() as session:
        await session.execute(update(production_orders).where(production_orders.c.id == order_id)
                              .values(status_since=datetime.now(UTC) - timedelta(seconds=seconds)))
    if app.state.dashboard_cache is not None:  # a direct write: drop the pages the way a status change does
        await app.state.dashboard_cache.invalidate([s.value for s in (S.MANUFACTURING_APPROVED,
                                                                       S.MANUFACTURING_STARTED)])


async def board(client: httpx.AsyncClient, settings: Settings, **params: Any) -> dict[str, Any]:
    response = await client.get(BASE, headers=bearer(settings), params={"limit": 200, **params})
    assert response.status_code == 200, response.text
    page = dict(response.json())
    OrderPage.model_validate(page)
    return page


def item(page: dict[str, Any], order_id: uuid.UUID) -> dict[str, Any] | None:
    return next((i for i in page["items"] if i["id"] == str(order_id)), None)


async def test_rows_carry_time_in_stage_sla_and_lateness(client: httpx.AsyncClient, app: Any, db: Database,
                                                        settings: Settings) -> None:
    sla = settings.sla.seconds[S.MANUFACTURING_APPROVED.value]
    late_id = await approved_order(db)
    fresh_id = await approved_order(db)
    await in_stage_for(app, db, late_id, sla + 3 * HOUR + 20 * 60)
    page = await board(client, settings)
    late, fresh = item(page, late_id), item(page, fresh_id)
    assert late is not None and fresh is not None
    assert late["sla_seconds"] == sla and late["late"] is True
    assert 3 * HOUR + 20 * 60 <= late["late_by_seconds"] < 3 * HOUR + 21 * 60
    assert sla + 3 * HOUR + 20 * 60 <= late["time_in_stage_seconds"] < sla + 3 * HOUR + 21 * 60
    assert fresh["late"] is False and fresh["late_by_seconds"] == 0 and fresh["time_in_stage_seconds"] < 600
    assert page["late_counts"][S.MANUFACTURING_APPROVED.value] >= 1
    # The same page from the cache: the clock still moves (added when served).
    again = await board(client, settings)
    assert again["as_of"] >= page["as_of"]
    assert item(again, late_id)["time_in_stage_seconds"] >= late["time_in_stage_seconds"]  # type: ignore[index]


async def test_late_filter_late_first_and_counts(client: httpx.AsyncClient, app: Any, db: Database,
                                                 settings: Settings) -> None:
    sla = settings.sla.seconds[S.MANUFACTURING_APPROVED.value]
    before = (await board(client, settings))["late_counts"][S.MANUFACTURING_APPROVED.value]
    worst, bad, on_time = await approved_order(db), await approved_order(db), await approved_order(db)
    await in_stage_for(app, db, worst, sla + 900 * 86400)  # the most overdue order anywhere in this database
    await in_stage_for(app, db, bad, sla + 800 * 86400)
    await in_stage_for(app, db, on_time, sla - HOUR)

    late_only = await board(client, settings, late="true")
    ids = [i["id"] for i in late_only["items"]]
    assert ids[:2] == [str(worst), str(bad)]  # most overdue first
    assert str(on_time) not in ids and all(i["late"] for i in late_only["items"])
    dues = [i["due_at"] for i in late_only["items"]]
    assert dues == sorted(dues)
    on_time_only = await board(client, settings, late="false")
    assert str(on_time) in [i["id"] for i in on_time_only["items"]]
    assert not any(i["late"] for i in on_time_only["items"])

    late_first = await board(client, settings, sort="late")
    assert [i["id"] for i in late_first["items"]][:2] == [str(worst), str(bad)]
    counts = late_first["late_counts"]
    assert counts[S.MANUFACTURING_APPROVED.value] == before + 2
    assert counts[S.MANUFACTURING_APPROVED.value] <= late_first["counts"][S.MANUFACTURING_APPROVED.value]

    # A status change moves an order out of the late ones at once (counts and pages invalidated).
    taken = await client.post(f"{BASE}/{worst}/take", headers=bearer(settings))
    assert taken.status_code == 200
    after = await board(client, settings, sort="late")
    assert after["late_counts"][S.MANUFACTURING_APPROVED.value] == before + 1
    assert item(after, worst)["status"] == S.MANUFACTURING_STARTED.value  # type: ignore[index]
    assert item(after, worst)["late"] is False  # type: ignore[index]  # a new stage, a new clock


async def test_by_stage_and_keyset_pages(client: httpx.AsyncClient, app: Any, db: Database,
                                        settings: Settings) -> None:
    for _ in range(3):
        await approved_order(db)
    for sort in ("late", "stage"):
        whole = await board(client, settings, sort=sort)
        seen: list[str] = []
        cursor = None
        while True:
            params = {"sort": sort, "limit": 2, **({"cursor": cursor} if cursor else {})}
            response = await client.get(BASE, headers=bearer(settings), params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            seen += [i["id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == [i["id"] for i in whole["items"]], sort
    stage = await board(client, settings, sort="stage")
    order = [S.MANUFACTURING_APPROVED.value, S.MANUFACTURING_STARTED.value, S.MANUFACTURING_COMPLETED.value,
             S.PACKAGING.value]
    ranks = [order.index(i["status"]) for i in stage["items"]]
    assert ranks == sorted(ranks)
    for rank in set(ranks):
        sinces = [i["status_since"] for i in stage["items"] if order.index(i["status"]) == rank]
        assert sinces == sorted(sinces)  # longest in the stage first


async def test_bad_parameters_are_422_with_the_error_body(client: httpx.AsyncClient, settings: Settings) -> None:
    newest_cursor = (await board(client, settings, limit=1))["next_cursor"]
    for params in ({"late": "maybe"}, {"sort": "oldest"}, {"sort": "late", "cursor": "bm90LWEtY3Vyc29y"},
                   {"sort": "stage", "cursor": newest_cursor}, {"sort": "late", "cursor": "late.9.xyz"},
                   {"late": "true", "status": "SHIPPED"}):
        response = await client.get(BASE, headers=bearer(settings), params=params)
        assert response.status_code == 422, (params, response.text)
        error = response.json()["error"]
        assert error["code"] and error["message"], params


async def test_the_board_page_says_which_rows_are_late_and_by_how_much(app: Any, db: Database,
                                                                      settings: Settings) -> None:
    from tests.integration.test_staff_pages import browser, sign_in, staff_token

    sla = settings.sla.seconds[S.MANUFACTURING_APPROVED.value]
    late_id, fresh_id = await approved_order(db), await approved_order(db)
    await in_stage_for(app, db, late_id, sla + 3 * HOUR + 20 * 60 + 5)
    async with browser(app, "mes.test") as client:
        await sign_in(client, staff_token(settings, "operator", "olga"), "/production/dashboard")
        page = await client.get("/production/dashboard", params={"sort": "late"})
        assert page.status_code == 200
        html = page.text
        row = html[html.index(f"/production/orders/{late_id}\""):]
        row = row[:row.index("</tr>")]
        assert "Late by 3 h 20 min" in row and "late-badge" in row and "2 d" in row  # in words, not colour only
        fresh = html[html.index(f"/production/orders/{fresh_id}\""):]
        assert "On time" in fresh[:fresh.index("</tr>")]
        assert html.index(str(late_id)[:8]) < html.index(str(fresh_id)[:8])  # most overdue first
        assert re.search(r"Approved for making<strong>\d+</strong>\s*<span class=\"late-n\">[1-9]\d* late</span>", html)
        only_late = await client.get("/production/dashboard", params={"late": "true"})
        assert str(late_id)[:8] in only_late.text and str(fresh_id)[:8] not in only_late.text
        assert 'hx-get="/production/dashboard?late=true"' in only_late.text  # the poll keeps the filter
        for params in ({"late": "maybe"}, {"sort": "sideways"}):
            wrong = await client.get("/production/dashboard", params=params)
            assert wrong.status_code == 422 and 'class="alert error"' in wrong.text, params

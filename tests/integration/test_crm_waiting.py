"""The sellers' "waiting for approval" list: longest waiting first, since when, the approval SLA,
late ones marked, counts, the late filter, keyset pages, bad parameters (API and page)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from alexandrite.contracts.order_status import OrderStatus
from alexandrite.crm.schemas import WaitingPage
from alexandrite.kit.settings import Settings
from tests.integration.test_crm_api import app, crm, seed, seller  # noqa: F401  (fixtures)
from tests.integration.test_staff_pages import browser, sign_in, staff_token

S = OrderStatus
URL = "/api/v1/crm/orders/waiting"
HOUR = 3600


async def waiting(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get(URL, headers=headers, params={"limit": 200, **params})
    assert response.status_code == 200, response.text
    page = dict(response.json())
    WaitingPage.model_validate(page)
    return page


async def test_longest_waiting_first_with_lateness_and_counts(app: FastAPI, crm: httpx.AsyncClient,  # noqa: F811
                                                              seller: dict[str, str], settings: Settings) -> None:  # noqa: F811
    sla = settings.sla.seconds[S.PRICE_CALCULATED.value]
    before = (await waiting(crm, seller))["counts"]
    now = datetime.now(UTC)
    oldest = await seed(app, S.PRICE_CALCULATED, name="Olive Oldest", created_at=now - timedelta(seconds=sla + 900 * 86400))
    late = await seed(app, S.PRICE_CALCULATED, name="Lena Late", created_at=now - timedelta(seconds=sla + 3 * HOUR + 20 * 60))
    fresh = await seed(app, S.PRICE_CALCULATED, name="Fred Fresh")
    approved = await seed(app, S.MANUFACTURING_APPROVED, name="Anna Approved", created_at=now - timedelta(days=30))

    page = await waiting(crm, seller)
    ids = [i["id"] for i in page["items"]]
    # (orders other tests left waiting in the shared database may sort anywhere around these three)
    assert ids.index(str(oldest)) < ids.index(str(late)) < ids.index(str(fresh))
    assert str(approved) not in ids
    sinces = [i["status_since"] for i in page["items"]]
    assert sinces == sorted(sinces)
    row = next(i for i in page["items"] if i["id"] == str(late))
    assert row["late"] is True and row["sla_seconds"] == sla
    assert 3 * HOUR + 20 * 60 - 10 <= row["late_by_seconds"] <= 3 * HOUR + 21 * 60
    assert next(i for i in page["items"] if i["id"] == str(fresh))["late"] is False
    assert page["counts"] == {"waiting": before["waiting"] + 3, "late": before["late"] + 2}

    only_late = await waiting(crm, seller, late="true")
    assert {str(oldest), str(late)} <= {i["id"] for i in only_late["items"]}
    assert all(i["late"] for i in only_late["items"])
    on_time = await waiting(crm, seller, late="false")
    assert str(fresh) in [i["id"] for i in on_time["items"]] and not any(i["late"] for i in on_time["items"])

    seen, cursor = [], None
    while True:
        part = await waiting(crm, seller, limit=1, **({"cursor": cursor} if cursor else {}))
        seen += [i["id"] for i in part["items"]]
        cursor = part["next_cursor"]
        if not cursor:
            break
    assert seen == ids


async def test_bad_parameters_are_422(crm: httpx.AsyncClient, seller: dict[str, str]) -> None:  # noqa: F811
    list_cursor = (await crm.get("/api/v1/crm/orders", headers=seller, params={"limit": 1})).json()["next_cursor"]
    for params in ({"late": "soon"}, {"cursor": "nonsense"}, {"cursor": list_cursor}, {"limit": 0}):
        response = await crm.get(URL, headers=seller, params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["code"], params


async def test_the_page_marks_late_orders_in_words(app: FastAPI, settings: Settings) -> None:  # noqa: F811
    sla = settings.sla.seconds[S.PRICE_CALCULATED.value]
    late = await seed(app, S.PRICE_CALCULATED, name="Paula Page",
                      created_at=datetime.now(UTC) - timedelta(seconds=sla + 5 * HOUR + 30))
    async with browser(app, "crm.test") as client:
        await sign_in(client, staff_token(settings, "seller", "sally"), "/orders/waiting")
        html = (await client.get("/orders/waiting")).text
        row = html[html.index(f'/orders/{late}"'):]
        row = row[:row.index("</tr>")]
        assert "Late by 5 h" in row and "late-badge" in row and "Paula Page" in row
        assert "Approval SLA: 2 d" in html and 'href="/orders/waiting"' in html
        wrong = await client.get("/orders/waiting", params={"late": "soon"})
        assert wrong.status_code == 422 and "Pick all, late or on time." in wrong.text

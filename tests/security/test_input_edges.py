"""Edge values answer 4xx, never 500: extreme dates and cursors; page messages show only what the server wrote."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token
from tests.in_process import in_process_apps


@pytest.fixture(scope="module")
async def clients(settings: Settings) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with in_process_apps(settings) as apps:
        yield {name: client for name, (_, client) in apps.items()}


def bearer(settings: Settings, role: str) -> dict[str, str]:
    name = str(uuid.uuid4()) if role == "customer" else f"{role}-{uuid.uuid4().hex[:6]}"  # customers: account ids
    return {"Authorization": "Bearer " + issue_token(settings, Principal(role=role, subject=name, name=name), 600)}


def cursor(created: str, ident: str = "00000000-0000-4000-8000-000000000001") -> str:
    raw = json.dumps([created, ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


EDGE_DATES = ["9999-12-31T23:59:59.999999", "9999-12-31T23:59:59.999999-14:00", "9999-12-31",
              "0001-01-01T00:00:00+14:00", "0001-01-01", "0001-01-01T00:00:00", "10000-01-01", "0000-01-01",
              "2025-02-30", "2025-01-01T25:00:00", "2025-01-01T00:00:00+24:00", "nonsense", "", " ",
              "2025-01-01T00:00:00.0000001Z", "+002025-01-01"]
EDGE_CURSORS = [cursor("0001-01-01T00:00:00+14:00"), cursor("0001-01-01T00:00:00+00:00"), cursor("0001-01-01T00:00:00"),
                cursor("9999-12-31T23:59:59.999999-14:00"), cursor("9999-12-31T23:59:59.999999+00:00"),
                cursor("2025-01-01T00:00:00+00:00", "not-a-uuid"), "AAAA", "====", "%%%", "e30",
                base64.urlsafe_b64encode(b'["x"]').decode(), base64.urlsafe_b64encode(b"[1,2,3]").decode()]


@pytest.mark.parametrize("field", ["created_from", "created_to"])
@pytest.mark.parametrize("value", EDGE_DATES)
async def test_crm_date_filters_never_fail_with_500(clients: dict[str, httpx.AsyncClient], settings: Settings,
                                                    field: str, value: str) -> None:
    response = await clients["crm"].get("/api/v1/crm/orders", params={field: value}, headers=bearer(settings, "seller"))
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert response.json()["error"]["code"] in ("invalid_request", "invalid_filter")


@pytest.mark.parametrize("value", EDGE_CURSORS)
async def test_cursors_at_the_edges_of_time_never_fail_with_500(clients: dict[str, httpx.AsyncClient],
                                                                settings: Settings, value: str) -> None:
    for name, path, role in (("crm", "/api/v1/crm/orders", "seller"), ("mes", "/api/v1/production/orders", "operator"),
                             ("shop", "/api/v1/orders", "customer")):
        response = await clients[name].get(path, params={"cursor": value}, headers=bearer(settings, role))
        assert response.status_code in (200, 422), (name, value, response.text)
        if response.status_code == 422:
            assert response.json()["error"]["code"] in ("invalid_cursor", "invalid_request"), (name, response.text)


async def test_the_dashboard_page_refuses_an_edge_cursor_in_words(clients: dict[str, httpx.AsyncClient],
                                                                   settings: Settings) -> None:
    mes = clients["mes"]
    token = issue_token(settings, Principal(role="operator", subject="o", name="o"), 600)
    signin = await mes.post("/signin", data={"token": token, "next": "/production/dashboard"})
    assert signin.status_code in (200, 303)
    response = await mes.get("/production/dashboard", params={"cursor": cursor("0001-01-01T00:00:00+14:00")})
    assert response.status_code in (200, 422)


# --- page messages: only what the server itself wrote ------------------------------------------

ATTACKER_TEXT = "Your account is locked. Call +1-555-0100 and give us your password"


async def _customer_with_order(shop: httpx.AsyncClient) -> str:
    email = f"edge-{uuid.uuid4().hex[:8]}@example.test"
    page = await shop.get("/signup")
    assert page.status_code == 200
    signup = await shop.post("/signup", data={"name": "Edge", "email": email, "password": "s3cret-pass"},
                             headers={"Origin": "http://shop"})
    assert signup.status_code == 303, signup.text
    token = (await shop.post("/api/v1/auth/token", json={"email": email, "password": "s3cret-pass"})).json()
    order = await shop.post("/api/v1/orders", json={"alloy": "gold_585"},
                            headers={"Authorization": f"Bearer {token['access_token']}"})
    return str(order.json()["id"])


async def test_order_page_shows_no_attacker_chosen_text(clients: dict[str, httpx.AsyncClient]) -> None:
    shop = clients["shop"]
    order_id = await _customer_with_order(shop)
    for query in ({"error": ATTACKER_TEXT}, {"notice": ATTACKER_TEXT}, {"error": "<script>alert(1)</script>"},
                  {"notice": "submitted", "now": ATTACKER_TEXT}, {"error": "illegal_transition", "now": "x"}):
        page = await shop.get(f"/orders/{order_id}", params=query)
        assert page.status_code == 200
        assert ATTACKER_TEXT not in page.text and "alert(1)" not in page.text
        assert "x”" not in page.text
    known = await shop.get(f"/orders/{order_id}", params={"notice": "cancelled"})
    assert "Your order is cancelled." in known.text


async def test_staff_pages_show_no_attacker_chosen_text(clients: dict[str, httpx.AsyncClient],
                                                        settings: Settings) -> None:
    for name, signin_next, url in (("crm", "/orders", f"/orders/{uuid.uuid4()}"),
                                   ("mes", "/production/dashboard", "/production/dashboard")):
        client = clients[name]
        role = "seller" if name == "crm" else "operator"
        token = issue_token(settings, Principal(role=role, subject=role, name=role), 600)
        await client.post("/signin", data={"token": token, "next": signin_next})
        for query in ({"error": ATTACKER_TEXT}, {"notice": ATTACKER_TEXT}):
            page = await client.get(url, params=query)
            assert ATTACKER_TEXT not in page.text, (name, query)


async def test_sign_in_page_shows_no_attacker_chosen_reason(clients: dict[str, httpx.AsyncClient]) -> None:
    page = await clients["shop"].get("/signin", params={"why": ATTACKER_TEXT})
    assert page.status_code == 200 and ATTACKER_TEXT not in page.text

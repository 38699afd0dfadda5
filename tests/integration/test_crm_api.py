"""CRM seller API, carrier webhook and internal API against real PostgreSQL, app driven in-process."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select

from alexandrite.contracts.events import Envelope, StatusChanged, status_envelope
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.crm import handlers
from alexandrite.crm.app import create_app
from alexandrite.crm.consumers import handle_event
from alexandrite.kit.db import Database
from alexandrite.kit.messaging.consumer import Delivery
from alexandrite.kit.messaging.tables import OUTBOX
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token

S = OrderStatus
MODEL = {"key": "models/cd/cde.stl", "format": "stl_binary", "triangles": 640, "bytes": 32084, "sha256": "cd" * 32}
QUOTE = {"total": 455.0, "currency": "EUR", "breakdown": {"metal": 400.0, "labour": 55.0},
         "pricing_version": "2025-01"}
SELLER = Principal(role="seller", subject="alice", name="alice")
# Before approval: (producer, status) in order; after approval: production's statuses.
BEFORE = [("shop", S.INITIATED), ("shop", S.FILE_UPLOADED), ("shop", S.SUBMITTED),
          ("mes", S.PRICE_CALCULATING), ("mes", S.PRICE_CALCULATED)]
AFTER = [S.MANUFACTURING_STARTED, S.MANUFACTURING_COMPLETED, S.PACKAGING, S.SHIPPED]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    # No relay (the tests read the outbox), no consumer (events are fed to the handler),
    # and the peers point at a closed port: "the shop / production service is down".
    dead = f"http://127.0.0.1:{closed_port()}"
    application = create_app(settings.replace(**{
        "run_relay": False, "run_consumer": False, "shop_url": dead, "mes_url": dead,
        "peer_timeout_seconds": 2.0,
    }))
    async with LifespanManager(application):
        yield application


@pytest.fixture(scope="module")
async def crm(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://crm") as client:
        yield client


def bearer(settings: Settings, role: str = "seller", name: str = "alice") -> dict[str, str]:
    token = issue_token(settings, Principal(role=role, subject=name, name=name), 600)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def seller(settings: Settings) -> dict[str, str]:
    return bearer(settings)


async def feed(db: Database, envelope: Envelope) -> None:
    outcome = await handle_event(db, Delivery(body=envelope.model_dump_json().encode(), headers={},
                                              routing_key=envelope.type, message_id=str(envelope.event_id),
                                              attempt=0, redelivered=False))
    assert outcome == "ok"


async def seed(app: FastAPI, upto: OrderStatus, *, name: str = "Jane Test", created_at: datetime | None = None,
               tracking: str | None = None, carrier: str = "dhl") -> uuid.UUID:
    """An order brought to ``upto`` the way it happens live: other services' events, CRM's approval."""
    db: Database = app.state.db
    order_id = uuid.uuid4()
    t0 = created_at or datetime.now(UTC)
    actor = "customer:c-1"
    payloads: dict[OrderStatus, dict[str, Any]] = {
        S.INITIATED: {"alloy": "silver_925", "created_at": t0, "owner": {"kind": "customer", "id": "c-1",
                                                                          "name": name}},
        S.FILE_UPLOADED: {"model": MODEL},
        S.SUBMITTED: {"model": MODEL, "alloy": "silver_925"},
        S.PRICE_CALCULATED: {"quote": QUOTE},
        S.SHIPPED: {"tracking_number": tracking or f"TRK-{order_id.hex[:8].upper()}", "carrier": carrier},
    }
    seq = 0
    for producer, status in BEFORE:
        seq += 1
        await feed(db, status_envelope(producer=producer, order_id=order_id, seq=seq, change=StatusChanged(
            status=status, actor=actor if producer == "shop" else "mes:pricing",
            at=t0 + timedelta(seconds=seq), **payloads.get(status, {}))))
        if status is upto:
            return order_id
    await handlers.approve(db, SELLER, order_id)
    seq += 1
    if upto is S.MANUFACTURING_APPROVED:
        return order_id
    for status in AFTER:
        seq += 1
        await feed(db, status_envelope(producer="mes", order_id=order_id, seq=seq, change=StatusChanged(
            status=status, actor="operator:olga", **payloads.get(status, {}))))
        if status is upto:
            return order_id
    raise AssertionError(f"cannot seed {upto}")


async def outbox(app: FastAPI, order_id: uuid.UUID) -> list[Any]:
    async with app.state.db.sessions() as session:
        return list((await session.execute(
            select(OUTBOX).where(OUTBOX.c.order_id == order_id).order_by(OUTBOX.c.id))).all())


def sign(settings: Settings, body: bytes) -> dict[str, str]:
    digest = hmac.new(settings.auth.carrier_webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "X-Carrier-Signature": f"sha256={digest}"}


def token() -> str:
    return "zq" + uuid.uuid4().hex[:8]  # "z"/"q": never mistaken for an id prefix


# --- approve -------------------------------------------------------------------------------------------

async def test_approve_emits_the_next_event_once(app: FastAPI, crm: httpx.AsyncClient,
                                                 seller: dict[str, str]) -> None:
    order_id = await seed(app, S.PRICE_CALCULATED, name="Petra Approve")
    before = (await crm.get(f"/api/v1/crm/orders/{order_id}", headers=seller)).json()
    assert before["status"] == "PRICE_CALCULATED" and before["seq"] == 5
    assert before["total"] == "455.00" and before["currency"] == "EUR" and before["quote"] == QUOTE

    approved = await crm.post(f"/api/v1/crm/orders/{order_id}/approve",
                              headers={**seller, "X-Request-Id": "req-approve-1"})
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["status"] == "MANUFACTURING_APPROVED" and body["seq"] == 6
    assert body["history"][-1]["status"] == "MANUFACTURING_APPROVED"
    assert body["history"][-1]["by"] == "seller:alice" and len(body["history"]) == 6

    rows = await outbox(app, order_id)
    assert len(rows) == 1
    assert rows[0].routing_key == "crm.order.manufacturing_approved"
    event = Envelope.model_validate_json(rows[0].body)
    assert event.seq == 6 and event.producer == "crm" and event.order_id == order_id
    assert event.type == "crm.order.manufacturing_approved" and event.correlation_id == "req-approve-1"
    assert event.payload["status"] == "MANUFACTURING_APPROVED"
    assert event.payload["previous_status"] == "PRICE_CALCULATED" and event.payload["actor"] == "seller:alice"
    assert event.payload["quote"] == QUOTE and event.payload["alloy"] == "silver_925"
    assert event.payload["owner"] == {"kind": "customer", "id": "c-1", "name": "Petra Approve"}

    again = await crm.post(f"/api/v1/crm/orders/{order_id}/approve", headers=seller)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "illegal_transition"
    assert again.json()["error"]["details"] == {"status": "MANUFACTURING_APPROVED",
                                                "requested": "MANUFACTURING_APPROVED"}
    assert len(await outbox(app, order_id)) == 1


async def test_approve_before_the_price_is_known_is_409(app: FastAPI, crm: httpx.AsyncClient,
                                                        seller: dict[str, str]) -> None:
    order_id = await seed(app, S.PRICE_CALCULATING)
    response = await crm.post(f"/api/v1/crm/orders/{order_id}/approve", headers=seller)
    assert response.status_code == 409 and response.json()["error"]["code"] == "illegal_transition"
    assert (await crm.get(f"/api/v1/crm/orders/{order_id}", headers=seller)).json()["status"] == "PRICE_CALCULATING"
    assert await outbox(app, order_id) == []


# --- listing and search ----------------------------------------------------------------------------------

async def test_list_search_and_keyset_pagination(app: FastAPI, crm: httpx.AsyncClient,
                                                 seller: dict[str, str]) -> None:
    tok = token()
    base = datetime(2024, 1, 1, tzinfo=UTC)
    names = [f"Alma Quartz {tok}", f"Bruno Beryl {tok}", f"Carla Opal {tok}"]
    created: dict[uuid.UUID, tuple[datetime, str, str]] = {}
    for i in range(30):
        at = base + timedelta(minutes=i // 2)  # pairs share a creation time: the id breaks the tie
        status = S.PRICE_CALCULATED if i % 3 == 0 else S.INITIATED
        order_id = await seed(app, status, name=names[i % 3], created_at=at)
        created[order_id] = (at, names[i % 3], status.value)
    expected = sorted(created, key=lambda oid: (created[oid][0], oid), reverse=True)

    async def fetch(**params: Any) -> list[dict[str, Any]]:
        response = await crm.get("/api/v1/crm/orders", params=params, headers=seller)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    # Every page newest first; together: each order exactly once, no gap.
    seen: list[str] = []
    sizes = []
    cursor = None
    while True:
        params: dict[str, Any] = {"q": tok, "limit": 7, **({"cursor": cursor} if cursor else {})}
        page = (await crm.get("/api/v1/crm/orders", params=params, headers=seller)).json()
        sizes.append(len(page["items"]))
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sizes == [7, 7, 7, 7, 2]
    assert seen == [str(oid) for oid in expected]

    first = (await fetch(q=tok, limit=1))[0]
    oid = uuid.UUID(first["id"])
    assert first["owner"]["name"] == created[oid][1] and first["status"] == created[oid][2]
    assert datetime.fromisoformat(first["created_at"]) == created[oid][0]

    # Filters.
    by_status = await fetch(q=tok, status="PRICE_CALCULATED", limit=200)
    assert {i["id"] for i in by_status} == {str(o) for o, v in created.items() if v[2] == "PRICE_CALCULATED"}
    assert all(i["total"] == "455.00" for i in by_status) and len(by_status) == 10
    both = await fetch(q=tok, status=["PRICE_CALCULATED", "INITIATED"], limit=200)
    assert len(both) == 30
    assert await fetch(q=tok, status="SHIPPED") == []

    alma = await fetch(customer=names[0], limit=200)
    assert [i["id"] for i in alma] == [str(o) for o in expected if created[o][1] == names[0]]
    assert len(await fetch(customer=names[0].upper(), limit=200)) == 10  # whole name, any case
    assert await fetch(customer="Alma Quartz") == []  # not a substring match

    substring = await fetch(q=f"beryl {tok}".upper(), limit=200)
    assert {i["owner"]["name"] for i in substring} == {names[1]} and len(substring) == 10

    window = await fetch(q=tok, created_from=(base + timedelta(minutes=5)).isoformat(),
                         created_to=(base + timedelta(minutes=9)).isoformat(), limit=200)
    assert [i["id"] for i in window] == [str(o) for o in expected
                                         if base + timedelta(minutes=5) <= created[o][0]
                                         <= base + timedelta(minutes=9)]
    assert len(window) == 10
    assert len(await fetch(q=tok, created_from="2024-01-01", created_to="2024-01-01", limit=200)) == 30
    assert await fetch(q=tok, created_from="2024-01-02") == []

    # An id: in full (exactly that order), or its first 8+ hex digits.
    target = expected[11]
    assert [i["id"] for i in await fetch(q=str(target))] == [str(target)]
    assert [i["id"] for i in await fetch(q=target.hex.upper())] == [str(target)]
    assert str(target) in {i["id"] for i in await fetch(q=str(target)[:8], limit=200)}
    assert str(target) in {i["id"] for i in await fetch(q=str(target)[:13], limit=200)}

    # A tracking number, as typed by a seller (any case).
    tracking = f"TRK-{tok.upper()}"
    shipped = await seed(app, S.SHIPPED, name=f"Dora Topaz {tok}", tracking=tracking)
    found = await fetch(q=tracking.lower())
    assert [i["id"] for i in found] == [str(shipped)] and found[0]["tracking_number"] == tracking


@pytest.mark.parametrize("params", [
    {"status": "LOST"},
    {"cursor": "not-a-cursor"},
    {"cursor": "x" * 501},
    {"created_from": "yesterday"},
    {"created_to": "2025-02-30"},
    {"created_from": "2025-03-02", "created_to": "2025-03-01"},
    {"limit": 0},
    {"limit": 201},
    {"limit": "ten"},
    {"q": "x" * 201},
])
async def test_bad_list_parameters_are_422(crm: httpx.AsyncClient, seller: dict[str, str],
                                           params: dict[str, Any]) -> None:
    response = await crm.get("/api/v1/crm/orders", params=params, headers=seller)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] in {"invalid_request", "invalid_cursor"} and error["message"]


# --- carrier webhook --------------------------------------------------------------------------------------

async def test_carrier_delivery_closes_the_order_once(app: FastAPI, crm: httpx.AsyncClient, settings: Settings,
                                                      seller: dict[str, str]) -> None:
    tracking = f"TRK-{token().upper()}"
    order_id = await seed(app, S.SHIPPED, tracking=tracking, carrier="dhl")
    url = "/api/v1/crm/webhooks/carrier"
    delivered = json.dumps({"tracking_number": tracking, "event": "delivered",
                            "occurred_at": datetime.now(UTC).isoformat(), "location": "Berlin"}).encode()

    unsigned = await crm.post(url, content=delivered, headers={"content-type": "application/json"})
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "invalid_signature"
    forged = await crm.post(url, content=delivered, headers={**sign(settings, delivered),
                                                              "X-Carrier-Signature": "sha256=" + "0" * 64})
    assert forged.status_code == 401
    tampered = await crm.post(url, content=delivered.replace(b"Berlin", b"Paris"), headers=sign(settings, delivered))
    assert tampered.status_code == 401
    assert (await crm.get(f"/api/v1/crm/orders/{order_id}", headers=seller)).json()["status"] == "SHIPPED"

    unknown = json.dumps({"tracking_number": "TRK-NOPE-" + token(), "event": "delivered",
                          "occurred_at": "2025-01-01T00:00:00Z"}).encode()
    missing = await crm.post(url, content=unknown, headers=sign(settings, unknown))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    garbage = b'{"tracking_number": 42}'
    invalid = await crm.post(url, content=garbage, headers=sign(settings, garbage))
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "invalid_request"

    moving = json.dumps({"tracking_number": tracking, "event": "in_transit",
                         "occurred_at": datetime.now(UTC).isoformat()}).encode()
    ignored = await crm.post(url, content=moving, headers=sign(settings, moving))
    assert ignored.status_code == 202 and ignored.json()["outcome"] == "ignored"
    assert (await crm.get(f"/api/v1/crm/orders/{order_id}", headers=seller)).json()["status"] == "SHIPPED"
    assert len(await outbox(app, order_id)) == 1  # only the approval

    closed = await crm.post(url, content=delivered, headers=sign(settings, delivered))
    assert closed.status_code == 200, closed.text
    assert closed.json() == {"tracking_number": tracking, "event": "delivered", "outcome": "closed",
                             "orders": [{"id": str(order_id), "status": "CLOSED"}]}
    view = (await crm.get(f"/api/v1/crm/orders/{order_id}", headers=seller)).json()
    assert view["status"] == "CLOSED" and view["closed_reason"] == "delivered" and view["seq"] == 11
    assert view["history"][-1]["by"] == "carrier:dhl"
    rows = await outbox(app, order_id)
    assert [r.routing_key for r in rows] == ["crm.order.manufacturing_approved", "crm.order.closed"]
    event = Envelope.model_validate_json(rows[-1].body)
    assert event.seq == 11 and event.payload["reason"] == "delivered" and event.payload["actor"] == "carrier:dhl"

    repeat = await crm.post(url, content=delivered, headers=sign(settings, delivered))
    assert repeat.status_code == 200 and repeat.json()["outcome"] == "already_closed"
    assert len(await outbox(app, order_id)) == 2  # no second event
    assert len((await crm.get(f"/api/v1/crm/orders/{order_id}", headers=seller)).json()["history"]) == 11


# --- cancel, close ---------------------------------------------------------------------------------------

async def test_cancel_locally_while_crm_owns_the_order(app: FastAPI, crm: httpx.AsyncClient,
                                                       seller: dict[str, str]) -> None:
    order_id = await seed(app, S.PRICE_CALCULATED)
    response = await crm.post(f"/api/v1/crm/orders/{order_id}/cancel", headers=seller,
                              json={"reason": "customer called"})
    assert response.status_code == 200, response.text
    assert response.json() == {"id": str(order_id), "status": "CANCELLED"}
    view = (await crm.get(f"/api/v1/crm/orders/{order_id}", headers=seller)).json()
    assert view["status"] == "CANCELLED" and view["cancel_reason"] == "customer called"
    assert view["history"][-1] == {**view["history"][-1], "status": "CANCELLED", "by": "seller:alice"}
    rows = await outbox(app, order_id)
    assert [r.routing_key for r in rows] == ["crm.order.cancelled"]
    event = Envelope.model_validate_json(rows[0].body)
    assert event.seq == 6 and event.payload["reason"] == "customer called"

    again = await crm.post(f"/api/v1/crm/orders/{order_id}/cancel", headers=seller)
    assert again.status_code == 409 and again.json()["error"]["code"] == "illegal_transition"
    assert len(await outbox(app, order_id)) == 1


@pytest.mark.parametrize("status", [S.FILE_UPLOADED, S.SUBMITTED, S.MANUFACTURING_APPROVED])
async def test_cancel_owned_elsewhere_is_forwarded_and_503_when_the_owner_is_down(
        app: FastAPI, crm: httpx.AsyncClient, seller: dict[str, str], status: OrderStatus) -> None:
    order_id = await seed(app, status)
    before = (await crm.get(f"/api/v1/crm/orders/{order_id}", headers=seller)).json()
    outbox_before = len(await outbox(app, order_id))

    response = await crm.post(f"/api/v1/crm/orders/{order_id}/cancel", headers=seller, json={"reason": "no"})
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "dependency_unavailable"
    assert int(response.headers["Retry-After"]) > 0

    after = (await crm.get(f"/api/v1/crm/orders/{order_id}", headers=seller)).json()
    assert after == before  # nothing changed locally
    assert len(await outbox(app, order_id)) == outbox_before


async def test_cancel_after_manufacturing_started_is_409_without_asking_anyone(
        app: FastAPI, crm: httpx.AsyncClient, seller: dict[str, str]) -> None:
    order_id = await seed(app, S.MANUFACTURING_STARTED)
    response = await crm.post(f"/api/v1/crm/orders/{order_id}/cancel", headers=seller)
    assert response.status_code == 409 and response.json()["error"]["code"] == "illegal_transition"


async def test_seller_closes_a_shipped_order(app: FastAPI, crm: httpx.AsyncClient, seller: dict[str, str]) -> None:
    priced = await seed(app, S.PRICE_CALCULATED)
    early = await crm.post(f"/api/v1/crm/orders/{priced}/close", headers=seller, json={"reason": "x"})
    assert early.status_code == 409 and early.json()["error"]["code"] == "illegal_transition"

    order_id = await seed(app, S.SHIPPED, carrier="ups")
    closed = await crm.post(f"/api/v1/crm/orders/{order_id}/close", headers=seller,
                            json={"reason": "customer confirmed by phone"})
    assert closed.status_code == 200, closed.text
    body = closed.json()
    assert body["status"] == "CLOSED" and body["closed_reason"] == "customer confirmed by phone"
    assert body["history"][-1]["by"] == "seller:alice" and body["carrier"] == "ups"
    rows = await outbox(app, order_id)
    assert rows[-1].routing_key == "crm.order.closed"
    assert Envelope.model_validate_json(rows[-1].body).seq == 11

    twice = await crm.post(f"/api/v1/crm/orders/{order_id}/close", headers=seller)
    assert twice.status_code == 409


# --- internal API ------------------------------------------------------------------------------------------

async def test_internal_cancel_for_peers(app: FastAPI, crm: httpx.AsyncClient, settings: Settings) -> None:
    service = {"Authorization": f"Service {settings.auth.service_token}"}
    body = {"requested_by": "shop", "actor": "customer:c-1", "reason": "changed my mind"}

    order_id = await seed(app, S.PRICE_CALCULATED)
    done = await crm.post(f"/internal/v1/orders/{order_id}/cancel", headers=service, json=body)
    assert done.status_code == 200 and done.json() == {"id": str(order_id), "status": "CANCELLED"}
    rows = await outbox(app, order_id)
    assert [r.routing_key for r in rows] == ["crm.order.cancelled"]
    event = Envelope.model_validate_json(rows[0].body)
    assert event.payload["actor"] == "customer:c-1" and event.payload["reason"] == "changed my mind"

    again = await crm.post(f"/internal/v1/orders/{order_id}/cancel", headers=service, json=body)
    assert again.status_code == 409  # too late now

    submitted = await seed(app, S.SUBMITTED)
    not_owner = await crm.post(f"/internal/v1/orders/{submitted}/cancel", headers=service, json=body)
    assert not_owner.status_code == 409
    assert not_owner.json()["error"] == {"code": "not_owner", "message": not_owner.json()["error"]["message"],
                                         "details": {"status": "SUBMITTED", "owner": "mes"}}
    assert await outbox(app, submitted) == []

    unknown = await crm.post(f"/internal/v1/orders/{uuid.uuid4()}/cancel", headers=service, json=body)
    assert unknown.status_code == 404
    bad = await crm.post(f"/internal/v1/orders/{submitted}/cancel", headers=service,
                         json={**body, "requested_by": "mes"})
    assert bad.status_code == 422
    assert (await crm.post(f"/internal/v1/orders/{submitted}/cancel", json=body)).status_code == 401
    wrong = await crm.post(f"/internal/v1/orders/{submitted}/cancel", json=body,
                           headers={"Authorization": "Service not-the-token"})
    assert wrong.status_code == 401
    seller = await crm.post(f"/internal/v1/orders/{submitted}/cancel", json=body, headers=bearer(settings))
    assert seller.status_code == 403


# --- notes ---------------------------------------------------------------------------------------------------

async def test_notes(app: FastAPI, crm: httpx.AsyncClient, seller: dict[str, str], settings: Settings) -> None:
    order_id = await seed(app, S.SUBMITTED)
    first = await crm.post(f"/api/v1/crm/orders/{order_id}/notes", headers=seller,
                           json={"text": "  Wants it before the 14th.  "})
    assert first.status_code == 201, first.text
    assert first.json()["text"] == "Wants it before the 14th." and first.json()["author"] == "seller:alice"
    second = await crm.post(f"/api/v1/crm/orders/{order_id}/notes", headers=bearer(settings, name="bob"),
                            json={"text": "Called back: engraving confirmed."})
    assert second.status_code == 201
    view = (await crm.get(f"/api/v1/crm/orders/{order_id}", headers=seller)).json()
    assert [n["text"] for n in view["notes"]] == ["Called back: engraving confirmed.", "Wants it before the 14th."]
    assert [n["author"] for n in view["notes"]] == ["seller:bob", "seller:alice"]
    assert await outbox(app, order_id) == []  # notes are CRM's own: no event

    for bad in ({"text": ""}, {"text": "   "}, {"text": "x" * 2001}, {}, {"text": "ok", "extra": 1}):
        response = await crm.post(f"/api/v1/crm/orders/{order_id}/notes", headers=seller, json=bad)
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] == "invalid_request"
    assert len((await crm.get(f"/api/v1/crm/orders/{order_id}", headers=seller)).json()["notes"]) == 2
    assert (await crm.post(f"/api/v1/crm/orders/{order_id}/notes", headers=seller,
                           json={"text": "x" * 2000})).status_code == 201
    unknown = await crm.post(f"/api/v1/crm/orders/{uuid.uuid4()}/notes", headers=seller, json={"text": "hi"})
    assert unknown.status_code == 404


# --- authentication and bad requests -------------------------------------------------------------------------

async def test_who_may_do_what_and_bad_requests(app: FastAPI, crm: httpx.AsyncClient, settings: Settings,
                                                seller: dict[str, str]) -> None:
    order_id = await seed(app, S.PRICE_CALCULATED)
    endpoints = [("GET", "/api/v1/crm/orders", None), ("GET", f"/api/v1/crm/orders/{order_id}", None),
                 ("POST", f"/api/v1/crm/orders/{order_id}/approve", None),
                 ("POST", f"/api/v1/crm/orders/{order_id}/cancel", {"reason": None}),
                 ("POST", f"/api/v1/crm/orders/{order_id}/close", {"reason": None}),
                 ("POST", f"/api/v1/crm/orders/{order_id}/notes", {"text": "hello"})]
    operator = bearer(settings, role="operator", name="olga")
    customer = bearer(settings, role="customer", name="c-1")
    for method, path, body in endpoints:
        anonymous = await crm.request(method, path, json=body)
        assert anonymous.status_code == 401, path
        assert anonymous.json()["error"]["code"] == "unauthorized"
        assert anonymous.headers["WWW-Authenticate"] == "Bearer"
        forged = await crm.request(method, path, json=body, headers={"Authorization": "Bearer abc.def"})
        assert forged.status_code == 401, path
        forbidden = await crm.request(method, path, json=body, headers=operator)
        assert forbidden.status_code == 403, path
        assert forbidden.json()["error"]["code"] == "forbidden"
        # a customer's token is for the shop only (its audience): not valid here at all
        assert (await crm.request(method, path, json=body, headers=customer)).status_code == 401, path
    # Nothing of the above changed the order.
    view = (await crm.get(f"/api/v1/crm/orders/{order_id}", headers=seller)).json()
    assert view["status"] == "PRICE_CALCULATED" and view["notes"] == []
    assert await outbox(app, order_id) == []

    unknown = uuid.uuid4()
    for method, path in (("GET", f"/api/v1/crm/orders/{unknown}"), ("POST", f"/api/v1/crm/orders/{unknown}/approve"),
                         ("POST", f"/api/v1/crm/orders/{unknown}/cancel"),
                         ("POST", f"/api/v1/crm/orders/{unknown}/close")):
        response = await crm.request(method, path, headers=seller)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"

    bad_id = await crm.get("/api/v1/crm/orders/not-a-uuid", headers=seller)
    assert bad_id.status_code == 422 and bad_id.json()["error"]["code"] == "invalid_request"
    for path, body in ((f"/api/v1/crm/orders/{order_id}/cancel", {"reason": "x" * 501}),
                       (f"/api/v1/crm/orders/{order_id}/cancel", {"why": "x"}),
                       (f"/api/v1/crm/orders/{order_id}/close", {"reason": 5})):
        response = await crm.post(path, headers=seller, json=body)
        assert response.status_code == 422, (path, body)
        assert response.json()["error"]["details"]
    malformed = await crm.post(f"/api/v1/crm/orders/{order_id}/cancel", headers={
        **seller, "content-type": "application/json"}, content=b"{not json")
    assert malformed.status_code == 422
    assert (await crm.get(f"/api/v1/crm/orders/{order_id}", headers=seller)).json()["status"] == "PRICE_CALCULATED"

"""MES HTTP API in-process: operator dashboard and actions, the take race, the internal peer API.

Real PostgreSQL and RabbitMQ; orders reach production as the shop's and CRM's events,
applied with the service's own event handler.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from mes_orders import QUOTE, approved_order, priced_order, submitted_order
from sqlalchemy import select

from alexandrite.contracts.events import EVENTS_EXCHANGE, Envelope
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.db import Database
from alexandrite.kit.messaging.tables import OUTBOX
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token
from alexandrite.mes.pricing import jobs
from alexandrite.mes.tables import order_history, pricing_jobs, production_orders

S = OrderStatus
BASE = "/api/v1/production"


def bearer(settings: Settings, role: str, name: str) -> dict[str, str]:
    token = issue_token(settings, Principal(role=role, subject=name, name=name), 600)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def operator(settings: Settings) -> dict[str, str]:
    return bearer(settings, "operator", "olga")


@pytest.fixture(scope="module")
def service(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Service {settings.auth.service_token}"}


async def mes_events(db: Database, order_id: uuid.UUID) -> list[Envelope]:
    async with db.sessions() as session:
        rows = (await session.execute(
            select(OUTBOX.c.body).where(OUTBOX.c.order_id == order_id, OUTBOX.c.exchange == EVENTS_EXCHANGE)
            .order_by(OUTBOX.c.id)
        )).scalars()
        return [Envelope.model_validate_json(body) for body in rows]


async def status_of(db: Database, order_id: uuid.UUID) -> str:
    async with db.sessions() as session:
        return (await session.execute(
            select(production_orders.c.status).where(production_orders.c.id == order_id))).scalar_one()


# --- operator actions ----------------------------------------------------------------------------

async def test_twenty_operators_take_the_same_order_exactly_one_wins(
        client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    order_id = await approved_order(db)
    names = [f"op{i}" for i in range(20)]
    responses = await asyncio.gather(*(
        client.post(f"{BASE}/orders/{order_id}/take", headers=bearer(settings, "operator", name)) for name in names
    ))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 19, codes
    [winner] = [(name, r) for name, r in zip(names, responses, strict=True) if r.status_code == 200]
    assert winner[1].json()["operator"] == f"operator:{winner[0]}"
    assert winner[1].json()["status"] == "MANUFACTURING_STARTED"
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "illegal_transition"
            assert response.json()["error"]["details"]["status"] == "MANUFACTURING_STARTED"
    async with db.sessions() as session:
        started = (await session.execute(
            select(order_history).where(order_history.c.order_id == order_id,
                                        order_history.c.status == "MANUFACTURING_STARTED"))).all()
    assert len(started) == 1 and started[0].by == f"operator:{winner[0]}" and started[0].seq == 7
    assert [e.type for e in await mes_events(db, order_id)].count("mes.order.manufacturing_started") == 1


async def test_operator_flow_to_shipped_emits_every_step(client: httpx.AsyncClient, db: Database,
                                                         operator: dict[str, str]) -> None:
    order_id = await approved_order(db)
    url = f"{BASE}/orders/{order_id}"
    # Illegal jumps are refused and change nothing.
    jump = await client.post(f"{url}/ship", headers=operator, json={"tracking_number": "TRK-1", "carrier": "DHL"})
    assert jump.status_code == 409 and jump.json()["error"]["code"] == "illegal_transition"
    assert (await client.post(f"{url}/complete", headers=operator)).status_code == 409
    assert await status_of(db, order_id) == "MANUFACTURING_APPROVED"

    for action, status in (("take", "MANUFACTURING_STARTED"), ("complete", "MANUFACTURING_COMPLETED"),
                           ("package", "PACKAGING")):
        response = await client.post(f"{url}/{action}", headers=operator)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status
    bad = await client.post(f"{url}/ship", headers=operator, json={"tracking_number": "TRK 1/2", "carrier": "DHL"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    missing = await client.post(f"{url}/ship", headers=operator, json={"carrier": "DHL"})
    assert missing.status_code == 422
    shipped = await client.post(f"{url}/ship", headers=operator,
                                json={"tracking_number": "TRK-42-ABC", "carrier": "DHL Express"})
    assert shipped.status_code == 200, shipped.text
    body = shipped.json()
    assert body["status"] == "SHIPPED" and body["tracking_number"] == "TRK-42-ABC" and body["carrier"] == "DHL Express"
    assert body["operator"] == "operator:olga" and body["seq"] == 10
    assert [h["status"] for h in body["history"]] == [
        "INITIATED", "FILE_UPLOADED", "SUBMITTED", "PRICE_CALCULATING", "PRICE_CALCULATED",
        "MANUFACTURING_APPROVED", "MANUFACTURING_STARTED", "MANUFACTURING_COMPLETED", "PACKAGING", "SHIPPED"]
    assert body["history"][-1]["by"] == "operator:olga"
    assert body["pricing_jobs"][0]["state"] == "priced"

    events = [e for e in await mes_events(db, order_id) if e.seq >= 7]
    assert [(e.type, e.seq) for e in events] == [
        ("mes.order.manufacturing_started", 7), ("mes.order.manufacturing_completed", 8),
        ("mes.order.packaging", 9), ("mes.order.shipped", 10)]
    assert events[-1].payload["tracking_number"] == "TRK-42-ABC" and events[-1].payload["carrier"] == "DHL Express"
    assert all(e.payload["actor"] == "operator:olga" and e.producer == "mes" for e in events)
    again = await client.post(f"{url}/ship", headers=operator, json={"tracking_number": "TRK-2", "carrier": "DHL"})
    assert again.status_code == 409


async def test_operator_endpoints_need_an_operator(client: httpx.AsyncClient, db: Database,
                                                   settings: Settings, service: dict[str, str]) -> None:
    order_id = await approved_order(db)
    seller = bearer(settings, "seller", "bob")
    customer = bearer(settings, "customer", str(uuid.uuid4()))
    for method, path in (("GET", f"{BASE}/orders"), ("GET", f"{BASE}/orders/{order_id}"),
                         ("POST", f"{BASE}/orders/{order_id}/take"), ("POST", f"{BASE}/orders/{order_id}/package")):
        assert (await client.request(method, path)).status_code == 401
        assert (await client.request(method, path, headers={"Authorization": "Bearer nonsense"})).status_code == 401
        for headers in (seller, service):
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"]["code"] == "forbidden"
        # a customer's token names only the shop in its audience
        assert (await client.request(method, path, headers=customer)).status_code == 401
    assert await status_of(db, order_id) == "MANUFACTURING_APPROVED"
    admin = bearer(settings, "admin", "root")
    assert (await client.get(f"{BASE}/orders/{order_id}", headers=admin)).status_code == 200


async def test_unknown_order_and_bad_ids(client: httpx.AsyncClient, operator: dict[str, str]) -> None:
    unknown = uuid.uuid4()
    for method, path in (("GET", f"{BASE}/orders/{unknown}"), ("POST", f"{BASE}/orders/{unknown}/take"),
                         ("POST", f"{BASE}/orders/{unknown}/complete")):
        response = await client.request(method, path, headers=operator)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    shipped = await client.post(f"{BASE}/orders/{unknown}/ship", headers=operator,
                                json={"tracking_number": "T-1", "carrier": "DHL"})
    assert shipped.status_code == 404
    assert (await client.get(f"{BASE}/orders/not-a-uuid", headers=operator)).status_code == 422


# --- dashboard -----------------------------------------------------------------------------------

async def test_dashboard_lists_orders_in_work_newest_first_with_keyset_pages(
        client: httpx.AsyncClient, db: Database, operator: dict[str, str]) -> None:
    base = datetime(2031, 1, 1, tzinfo=UTC)  # newer than every other test's order
    ids = [await approved_order(db, created_at=base + timedelta(minutes=i)) for i in range(5)]
    started = ids[1]
    assert (await client.post(f"{BASE}/orders/{started}/take", headers=operator)).status_code == 200
    newest_first = list(reversed(ids))

    first = await client.get(f"{BASE}/orders", headers=operator, params={"limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [i["id"] for i in page["items"]] == [str(x) for x in newest_first[:2]]
    assert set(page["counts"]) == {"MANUFACTURING_APPROVED", "MANUFACTURING_STARTED", "MANUFACTURING_COMPLETED",
                                   "PACKAGING"}
    assert page["counts"]["MANUFACTURING_APPROVED"] >= 4 and page["counts"]["MANUFACTURING_STARTED"] >= 1
    item = page["items"][0]
    assert item["owner"] == {"kind": "customer", "name": "Ada Buyer"} and item["total"] == 812.4
    assert item["currency"] == "EUR" and item["approved_at"] is not None

    seen = [i["id"] for i in page["items"]]
    cursor = page["next_cursor"]
    while cursor and len(seen) < 5:
        response = await client.get(f"{BASE}/orders", headers=operator, params={"limit": 2, "cursor": cursor})
        assert response.status_code == 200
        seen += [i["id"] for i in response.json()["items"]]
        cursor = response.json()["next_cursor"]
    assert seen[:5] == [str(x) for x in newest_first]  # no gaps, no repeats, across statuses

    only_started = await client.get(f"{BASE}/orders", headers=operator,
                                    params={"status": "MANUFACTURING_STARTED", "limit": 200})
    listed = [i["id"] for i in only_started.json()["items"]]
    assert str(started) in listed and all(i["status"] == "MANUFACTURING_STARTED"
                                          for i in only_started.json()["items"])
    pricing = await submitted_order(db, created_at=base - timedelta(minutes=1))
    several = await client.get(f"{BASE}/orders", headers=operator,
                               params=[("status", "MANUFACTURING_STARTED"), ("status", "PRICE_CALCULATING"),
                                       ("limit", "200")])
    assert {i["status"] for i in several.json()["items"]} <= {"MANUFACTURING_STARTED", "PRICE_CALCULATING"}
    assert str(pricing) in [i["id"] for i in several.json()["items"]]


async def test_dashboard_rejects_bad_queries(client: httpx.AsyncClient, operator: dict[str, str]) -> None:
    for params in ({"status": "BAKING"}, {"limit": 0}, {"limit": 201}, {"limit": "many"},
                   {"cursor": "not-a-cursor"}, {"cursor": "W10"}):
        response = await client.get(f"{BASE}/orders", headers=operator, params=params)
        assert response.status_code == 422, params
        assert response.json()["error"]["code"] in {"invalid_request", "invalid_cursor"}


async def test_pricing_queue_overview(client: httpx.AsyncClient, db: Database, operator: dict[str, str],
                                      service: dict[str, str], settings: Settings) -> None:
    await submitted_order(db)
    response = await client.get(f"{BASE}/pricing/queue", headers=operator)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["queued"] >= 1 and body["running"] >= 0
    assert body["workers"] == 0  # nobody consumes the test's queue (one is assumed for the ETA)
    assert body["average_seconds"] > 0 and body["eta_seconds_for_new_job"] > 0
    assert body["oldest_queued_seconds"] is not None and body["oldest_queued_seconds"] >= 0
    assert (await client.get(f"{BASE}/pricing/queue", headers=service)).status_code == 200
    assert (await client.get(f"{BASE}/pricing/queue",
                             headers=bearer(settings, "seller", "bob"))).status_code == 403


# --- internal API --------------------------------------------------------------------------------

async def test_internal_cancel_while_pricing_cancels_the_job(client: httpx.AsyncClient, db: Database,
                                                             service: dict[str, str]) -> None:
    order_id = await submitted_order(db)
    response = await client.post(f"/internal/v1/orders/{order_id}/cancel", headers=service,
                                 json={"requested_by": "shop", "actor": "customer:cust-9", "reason": "too slow"})
    assert response.status_code == 200, response.text
    assert response.json() == {"id": str(order_id), "status": "CANCELLED"}
    async with db.sessions() as session:
        job = (await session.execute(select(pricing_jobs).where(pricing_jobs.c.order_id == order_id))).one()
        row = (await session.execute(select(production_orders).where(production_orders.c.id == order_id))).one()
    assert job.state == "cancelled" and job.finished_at is not None
    assert row.status == "CANCELLED" and row.progress is None and row.seq == 5
    [event] = [e for e in await mes_events(db, order_id) if e.type == "mes.order.cancelled"]
    assert event.seq == 5 and event.payload["actor"] == "customer:cust-9" and event.payload["reason"] == "too slow"

    # The worker that picks the job up later finds nothing to do.
    assert await jobs.begin_job(db, job.id, worker="w-late") == "cancelled"
    again = await client.post(f"/internal/v1/orders/{order_id}/cancel", headers=service,
                              json={"requested_by": "crm", "actor": "seller:bob"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "illegal_transition"


async def test_internal_cancel_rules(client: httpx.AsyncClient, db: Database, service: dict[str, str],
                                     operator: dict[str, str], settings: Settings) -> None:
    body = {"requested_by": "crm", "actor": "seller:bob", "reason": None}

    approved = await approved_order(db)
    response = await client.post(f"/internal/v1/orders/{approved}/cancel", headers=service, json=body)
    assert response.status_code == 200 and response.json()["status"] == "CANCELLED"
    [event] = [e for e in await mes_events(db, approved) if e.type == "mes.order.cancelled"]
    assert event.seq == 7 and event.payload["previous_status"] == "MANUFACTURING_APPROVED"

    started = await approved_order(db)
    assert (await client.post(f"{BASE}/orders/{started}/take", headers=operator)).status_code == 200
    too_late = await client.post(f"/internal/v1/orders/{started}/cancel", headers=service, json=body)
    assert too_late.status_code == 409 and too_late.json()["error"]["code"] == "illegal_transition"
    assert await status_of(db, started) == "MANUFACTURING_STARTED"

    priced = await priced_order(db)  # PRICE_CALCULATED: the CRM's to cancel
    not_owner = await client.post(f"/internal/v1/orders/{priced}/cancel", headers=service, json=body)
    assert not_owner.status_code == 409
    assert not_owner.json()["error"]["code"] == "not_owner"
    assert not_owner.json()["error"]["details"] == {"status": "PRICE_CALCULATED", "owner": "crm"}
    assert await status_of(db, priced) == "PRICE_CALCULATED"

    unknown = await client.post(f"/internal/v1/orders/{uuid.uuid4()}/cancel", headers=service, json=body)
    assert unknown.status_code == 404

    for bad in ({**body, "requested_by": "mes"}, {"requested_by": "shop"}, {**body, "actor": ""},
                {**body, "extra": 1}):
        assert (await client.post(f"/internal/v1/orders/{priced}/cancel", headers=service,
                                  json=bad)).status_code == 422
    assert (await client.post(f"/internal/v1/orders/{priced}/cancel", json=body)).status_code == 401
    wrong_token = {"Authorization": "Service not-the-token"}
    assert (await client.post(f"/internal/v1/orders/{priced}/cancel", headers=wrong_token,
                              json=body)).status_code == 401
    assert (await client.post(f"/internal/v1/orders/{priced}/cancel", headers=operator,
                              json=body)).status_code == 403


async def test_internal_progress_is_live(client: httpx.AsyncClient, db: Database, service: dict[str, str],
                                         operator: dict[str, str]) -> None:
    first = await submitted_order(db)
    second = await submitted_order(db)
    one = (await client.get(f"/internal/v1/orders/{first}/progress", headers=service)).json()
    two = (await client.get(f"/internal/v1/orders/{second}/progress", headers=service)).json()
    assert one["status"] == two["status"] == "PRICE_CALCULATING"
    assert two["progress"]["queue_position"] == one["progress"]["queue_position"] + 1
    assert two["progress"]["eta_seconds"] >= one["progress"]["eta_seconds"] > 0

    # The first job leaves the queue: the second moves up.
    async with db.sessions() as session:
        job_id = (await session.execute(select(pricing_jobs.c.id).where(pricing_jobs.c.order_id == first))).scalar_one()
    started = await jobs.begin_job(db, job_id, worker="w-progress")
    assert isinstance(started, jobs.StartedJob)
    running = (await client.get(f"/internal/v1/orders/{first}/progress", headers=service)).json()
    assert running["progress"]["queue_position"] == 1
    await jobs.finish_job(db, started, worker="w-progress", duration_ms=10, quote=QUOTE)
    moved = (await client.get(f"/internal/v1/orders/{second}/progress", headers=service)).json()
    assert moved["progress"]["queue_position"] == two["progress"]["queue_position"] - 1
    done = (await client.get(f"/internal/v1/orders/{first}/progress", headers=service)).json()
    assert done == {"status": "PRICE_CALCULATED", "progress": None}

    detail = (await client.get(f"{BASE}/orders/{second}", headers=operator)).json()
    assert detail["progress"]["queue_position"] == moved["progress"]["queue_position"]
    assert (await client.get(f"/internal/v1/orders/{uuid.uuid4()}/progress", headers=service)).status_code == 404
    assert (await client.get(f"/internal/v1/orders/{first}/progress", headers=operator)).status_code == 403
    assert (await client.get(f"/internal/v1/orders/{first}/progress")).status_code == 401

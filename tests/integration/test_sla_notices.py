"""Stage SLAs: the watchdog reports each overdue order and stage once, the shop e-mails the customer once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import delete, select, update

from alexandrite.contracts.events import ORDER_DELAYED_TYPE, Envelope, OrderDelayed, utcnow
from alexandrite.devtools.smtp_sink import SmtpSink
from alexandrite.kit import metrics
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.messaging.consumer import Delivery, PermanentError
from alexandrite.kit.messaging.tables import OUTBOX
from alexandrite.kit.setting_groups import DAY
from alexandrite.kit.settings import Settings
from alexandrite.mes.sla import StageSlas
from alexandrite.mes.tables import production_orders
from alexandrite.mes.watchdog import scan
from alexandrite.shop import delays
from alexandrite.shop.app import create_app
from alexandrite.shop.handlers import create_partner
from alexandrite.shop.notifier import send_pending
from alexandrite.shop.tables import notifications
from alexandrite.shop.tables import orders as shop_orders
from tests.e2e.processes import free_port

SLAS = StageSlas({"PRICE_CALCULATED": 5.0, "MANUFACTURING_APPROVED": 2 * DAY}, 21 * DAY)


@pytest.fixture(scope="module")
async def shop(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.replace(**{"run_relay": False, "run_consumer": False, "run_notifier": False}))
    async with LifespanManager(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://shop") as client:
            yield client


async def new_order(shop: httpx.AsyncClient, auth: dict[str, str]) -> str:
    response = await shop.post("/api/v1/orders", json={"alloy": "gold_585"}, headers=auth)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def production_order(db: Database, order_id: str, status: str, since_seconds: float, owner_kind: str,
                           approved_days_ago: float | None = None) -> None:
    """Production's projection of the order, as if its events had arrived ``since_seconds`` ago."""
    now = utcnow()
    async with UnitOfWork(db) as uow:
        await uow.session.execute(production_orders.insert().values(
            id=uuid.UUID(order_id), alloy="gold_585", status=status, seq=6, owner_kind=owner_kind, owner_name="x",
            created_at=now - timedelta(days=30), updated_at=now, status_since=now - timedelta(seconds=since_seconds),
            approved_at=now - timedelta(days=approved_days_ago) if approved_days_ago is not None else None))
        await uow.commit()


async def delay_events(db: Database, ids: set[str]) -> list[Envelope]:
    """The mes.order.delayed events in the outbox for ``ids``; removed so no later relay publishes them."""
    wanted = [uuid.UUID(i) for i in ids]
    async with UnitOfWork(db) as uow:
        rows = (await uow.session.execute(select(OUTBOX.c.body).where(
            OUTBOX.c.routing_key == ORDER_DELAYED_TYPE, OUTBOX.c.order_id.in_(wanted)))).scalars().all()
        await uow.session.execute(delete(OUTBOX).where(OUTBOX.c.order_id.in_(wanted)))
        await uow.commit()
    return [Envelope.model_validate_json(body) for body in rows]


def delivery(envelope: Envelope) -> Delivery:
    return Delivery(body=envelope.model_dump_json().encode(), headers={"event_type": envelope.type},
                    routing_key=envelope.type, message_id=str(envelope.event_id), attempt=0, redelivered=False)


async def test_each_delay_is_reported_and_mailed_once(shop: httpx.AsyncClient, settings: Settings,
                                                      db_factory) -> None:  # type: ignore[no-untyped-def]
    mes_db, shop_db = db_factory("mes"), db_factory("shop")
    email, password = f"late-{uuid.uuid4().hex[:8]}@example.test", "a-long-password"
    assert (await shop.post("/api/v1/auth/signup", json={"email": email, "password": password,
                                                         "name": "Ada Waiting"})).status_code == 201
    token = (await shop.post("/api/v1/auth/token", json={"email": email, "password": password})).json()
    customer = {"Authorization": f"Bearer {token['access_token']}"}
    partner = {"X-API-Key": await create_partner(shop_db, f"late-partner-{uuid.uuid4().hex[:6]}")}

    late, on_time, partners_late, late_delivery = (
        await new_order(shop, customer), await new_order(shop, customer), await new_order(shop, partner),
        await new_order(shop, customer))
    await production_order(mes_db, late, "PRICE_CALCULATED", 60, "customer")
    await production_order(mes_db, on_time, "PRICE_CALCULATED", 1, "customer")
    await production_order(mes_db, partners_late, "PRICE_CALCULATED", 60, "partner")
    await production_order(mes_db, late_delivery, "MANUFACTURING_APPROVED", 60, "customer", approved_days_ago=22)
    mine = {late, on_time, partners_late, late_delivery}

    first = {(str(o.order_id), o.stage) for o in await scan(mes_db, SLAS)}
    again = {(str(o.order_id), o.stage) for o in await scan(mes_db, SLAS)}
    assert {x for x in first if x[0] in mine} == {
        (late, "PRICE_CALCULATED"), (partners_late, "PRICE_CALCULATED"), (late_delivery, "DELIVERY")}
    assert not {x for x in again if x[0] in mine}, "a delay was reported twice"
    assert metrics.ORDERS_PAST_SLA.labels("PRICE_CALCULATED")._value.get() >= 2

    events = await delay_events(mes_db, mine)
    assert sorted((str(e.order_id), e.payload["stage"]) for e in events) == sorted(
        [(late, "PRICE_CALCULATED"), (partners_late, "PRICE_CALCULATED"), (late_delivery, "DELIVERY")])
    late_event = next(e for e in events if str(e.order_id) == late)
    payload = OrderDelayed.model_validate(late_event.payload)
    assert payload.sla_seconds == 5.0 and payload.owner_kind == "customer"
    assert payload.new_eta > payload.detected_at + timedelta(days=2)  # approval and manufacturing still ahead

    # The shop records each delay once (a redelivered event changes nothing) and queues one e-mail per customer.
    outcomes = [await delays.record_delay(shop_db, delivery(e)) for e in events + events]
    assert outcomes.count("ok") == 3 and outcomes.count("duplicate") == 3
    with pytest.raises(PermanentError):
        await delays.record_delay(shop_db, Delivery(b'{"nonsense": 1}', {"event_type": ORDER_DELAYED_TYPE},
                                                    ORDER_DELAYED_TYPE, None, 0, False))

    port = free_port()
    mail_settings = settings.replace(**{"smtp_port": port})
    assert await send_pending(shop_db, mail_settings) == 0  # nothing listening yet: kept, retried later
    async with UnitOfWork(shop_db) as uow:
        ids = [uuid.UUID(i) for i in mine]
        rows = (await uow.session.execute(select(notifications.c.attempts, notifications.c.last_error).where(
            notifications.c.order_id.in_(ids)))).all()
        assert len(rows) == 2 and all(r.attempts == 1 and "refused" in r.last_error for r in rows)
        await uow.session.execute(update(notifications).where(notifications.c.order_id.in_(ids))
                                  .values(next_attempt_at=utcnow()))  # skip the backoff
        await uow.commit()
    with SmtpSink(port=port) as sink:
        assert await send_pending(shop_db, mail_settings) >= 2
        assert await send_pending(shop_db, mail_settings) == 0
        mails = [m for m in sink.messages if m["X-Alexandrite-Order"] in mine]
    assert sorted((m["X-Alexandrite-Order"], m["X-Alexandrite-Notice"]) for m in mails) == sorted(
        [(late, "delay:PRICE_CALCULATED"), (late_delivery, "delay:DELIVERY")])  # partners get webhooks instead
    assert all(m["To"] == email for m in mails)
    assert "Ada Waiting" in mails[0].get_content() and "expect to ship it by" in mails[0].get_content()

    # The customer sees the delay of the stage the order is in, and the new estimate.
    async with UnitOfWork(shop_db) as uow:  # the shop's copy caught up with production meanwhile
        await uow.session.execute(update(shop_orders).where(shop_orders.c.id.in_([uuid.UUID(late), uuid.UUID(on_time)]))
                                  .values(status="PRICE_CALCULATED"))
        await uow.commit()
    view = (await shop.get(f"/api/v1/orders/{late}", headers=customer)).json()
    assert view["delay"]["stage"] == "PRICE_CALCULATED" and view["delay"]["sla_seconds"] == 5.0
    assert view["delay"]["new_eta"].startswith(payload.new_eta.isoformat()[:16])
    assert (await shop.get(f"/api/v1/orders/{on_time}", headers=customer)).json()["delay"] is None


def test_sla_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown statuses: PRICING"):
        Settings(_env_file=None, sla_seconds={"PRICING": 10})  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="positive"):
        Settings(_env_file=None, sla_seconds={"PACKAGING": 0})  # type: ignore[call-arg]

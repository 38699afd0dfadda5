"""CRM projection built from the other services' events: real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from sqlalchemy import func, select

from alexandrite.contracts.events import EVENTS_EXCHANGE, Envelope, StatusChanged, status_envelope
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.crm.consumers import handle_event
from alexandrite.crm.tables import inbox, order_history, orders
from alexandrite.kit.db import Database
from alexandrite.kit.messaging.consumer import Delivery, PermanentError
from alexandrite.kit.messaging.tables import OUTBOX
from alexandrite.kit.messaging.topology import dead_letter_queue, events_queue
from alexandrite.kit.settings import Settings

S = OrderStatus
MODEL = {"key": "models/ab/abc.stl", "filename": "ring.stl", "format": "stl_binary", "triangles": 1280,
         "bytes": 64084, "sha256": "ab" * 32}
QUOTE = {"total": 812.4, "currency": "EUR", "volume_mm3": 310.2, "surface_mm2": 880.0, "metal_mass_g": 4.8,
         "breakdown": {"metal": 600.0, "labour": 180.4, "fixed": 32.0}, "pricing_version": "2025-01"}


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url("crm"), pool_size=3)
    yield database
    await database.dispose()


def pipeline(order_id: uuid.UUID, *, customer: str = "cust-1", name: str = "Jane Test",
             created_at: datetime | None = None) -> list[Envelope]:
    """INITIATED -> FILE_UPLOADED -> SUBMITTED (shop) -> PRICE_CALCULATING -> PRICE_CALCULATED (mes)."""
    t0 = created_at or datetime.now(UTC)
    actor = f"customer:{customer}"
    steps: list[tuple[str, StatusChanged]] = [
        ("shop", StatusChanged(status=S.INITIATED, actor=actor, at=t0, alloy="gold_750", created_at=t0,
                               owner={"kind": "customer", "id": customer, "name": name})),
        ("shop", StatusChanged(status=S.FILE_UPLOADED, previous_status=S.INITIATED, actor=actor,
                               at=t0 + timedelta(seconds=30), model=MODEL)),
        ("shop", StatusChanged(status=S.SUBMITTED, previous_status=S.FILE_UPLOADED, actor=actor,
                               at=t0 + timedelta(seconds=40), model=MODEL, alloy="gold_750")),
        ("mes", StatusChanged(status=S.PRICE_CALCULATING, previous_status=S.SUBMITTED, actor="mes:pricing",
                              at=t0 + timedelta(seconds=41), progress={"queue_position": 3, "eta_seconds": 6})),
        ("mes", StatusChanged(status=S.PRICE_CALCULATED, previous_status=S.PRICE_CALCULATING,
                              actor="mes:pricing-worker-1", at=t0 + timedelta(seconds=47), quote=QUOTE)),
    ]
    return [status_envelope(producer=producer, order_id=order_id, seq=seq, change=change)
            for seq, (producer, change) in enumerate(steps, start=1)]


def delivery(envelope: Envelope, *, body: bytes | None = None) -> Delivery:
    return Delivery(body=body if body is not None else envelope.model_dump_json().encode(),
                    headers={"event_type": envelope.type}, routing_key=envelope.type,
                    message_id=str(envelope.event_id), attempt=0, redelivered=False)


async def feed(db: Database, envelope: Envelope) -> str:
    return await handle_event(db, delivery(envelope))


async def projection(db: Database, order_id: uuid.UUID) -> tuple[Any, list[Any]]:
    async with db.sessions() as session:
        row = (await session.execute(select(orders).where(orders.c.id == order_id))).first()
        history = (await session.execute(
            select(order_history).where(order_history.c.order_id == order_id).order_by(order_history.c.seq)
        )).all()
    return row, list(history)


async def test_full_event_sequence_builds_the_projection(db: Database) -> None:
    order_id = uuid.uuid4()
    created = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
    events = pipeline(order_id, customer="c-42", name="Anna Lapis", created_at=created)
    assert [await feed(db, e) for e in events] == ["ok"] * 5

    row, history = await projection(db, order_id)
    assert row.status == "PRICE_CALCULATED" and row.seq == 5
    assert row.alloy == "gold_750"
    assert (row.owner_kind, row.owner_id, row.owner_name) == ("customer", "c-42", "Anna Lapis")
    assert row.created_at == created
    assert row.status_since == created + timedelta(seconds=47)
    assert row.model["sha256"] == MODEL["sha256"] and row.model["triangles"] == 1280
    assert row.quote == QUOTE
    assert str(row.total) == "812.40" and row.currency == "EUR"
    assert row.failure is None and row.tracking_number is None
    assert [(h.seq, h.status, h.previous_status, h.by) for h in history] == [
        (1, "INITIATED", None, "customer:c-42"),
        (2, "FILE_UPLOADED", "INITIATED", "customer:c-42"),
        (3, "SUBMITTED", "FILE_UPLOADED", "customer:c-42"),
        (4, "PRICE_CALCULATING", "SUBMITTED", "mes:pricing"),
        (5, "PRICE_CALCULATED", "PRICE_CALCULATING", "mes:pricing-worker-1"),
    ]
    assert [h.at for h in history] == [datetime.fromisoformat(e.payload["at"]) for e in events]


async def test_duplicates_are_ignored_and_early_events_wait_for_their_turn(db: Database) -> None:
    order_id = uuid.uuid4()
    events = pipeline(order_id)
    for event in events[:3]:
        assert await feed(db, event) == "ok"
    assert await feed(db, events[2]) == "duplicate"  # the same event delivered again

    # PRICE_CALCULATED (seq 5) overtakes PRICE_CALCULATING (seq 4): parked, nothing applied yet.
    assert await feed(db, events[4]) == "deferred"
    row, history = await projection(db, order_id)
    assert row.status == "SUBMITTED" and row.seq == 3 and row.quote is None and len(history) == 3
    assert await feed(db, events[4]) == "duplicate"  # a redelivery of the parked event

    # The gap fills: both apply, in order, in one transaction.
    assert await feed(db, events[3]) == "ok"
    row, history = await projection(db, order_id)
    assert row.status == "PRICE_CALCULATED" and row.seq == 5 and row.quote == QUOTE
    assert [h.status for h in history] == [
        "INITIATED", "FILE_UPLOADED", "SUBMITTED", "PRICE_CALCULATING", "PRICE_CALCULATED"]
    async with db.sessions() as session:
        pending = (await session.execute(select(func.count()).select_from(inbox).where(
            inbox.c.order_id == order_id, inbox.c.applied_at.is_(None)))).scalar_one()
    assert pending == 0

    # Everything again, as a broker might redeliver it: nothing changes.
    assert {await feed(db, e) for e in events} == {"duplicate"}
    # The same step under a new event id: stale, ignored.
    again = status_envelope(producer="mes", order_id=order_id, seq=4, change=StatusChanged(
        status=S.PRICE_CALCULATING, actor="mes:pricing", progress={"queue_position": 1, "eta_seconds": 2}))
    assert await feed(db, again) == "stale"
    assert len((await projection(db, order_id))[1]) == 5


async def test_events_that_can_never_apply_are_permanent_errors(db: Database) -> None:
    order_id = uuid.uuid4()
    events = pipeline(order_id)
    for event in events[:3]:
        await feed(db, event)

    with pytest.raises(PermanentError):  # not JSON at all
        await handle_event(db, delivery(events[0], body=b"{not json"))
    bad_payload = Envelope(type="mes.order.price_calculated", order_id=order_id, seq=4, producer="mes",
                           payload={"status": "PRICE_CALCULATED", "actor": "mes:pricing"})  # no quote
    with pytest.raises(PermanentError):
        await feed(db, bad_payload)
    mislabelled = status_envelope(producer="mes", order_id=order_id, seq=4, change=StatusChanged(
        status=S.PRICE_CALCULATING, actor="mes:pricing")).model_copy(update={"type": "mes.order.shipped"})
    with pytest.raises(PermanentError):
        await feed(db, mislabelled)

    # Illegal in the transition table: SUBMITTED -> SHIPPED. A bug: dead-letter it, change nothing.
    illegal = status_envelope(producer="mes", order_id=order_id, seq=4, change=StatusChanged(
        status=S.SHIPPED, actor="operator:x", tracking_number="TRK-X"))
    with pytest.raises(PermanentError, match="cannot apply"):
        await feed(db, illegal)
    # Legal transition, but from a service that does not own SUBMITTED (single writer broken).
    forked = status_envelope(producer="shop", order_id=order_id, seq=4, change=StatusChanged(
        status=S.CANCELLED, actor="customer:cust-1"))
    with pytest.raises(PermanentError, match="owns"):
        await feed(db, forked)
    # A transition for an order CRM never heard of.
    with pytest.raises(PermanentError, match="unknown"):
        await feed(db, status_envelope(producer="shop", order_id=uuid.uuid4(), seq=1, change=StatusChanged(
            status=S.FILE_UPLOADED, actor="customer:x", model=MODEL)))

    row, history = await projection(db, order_id)
    assert row.status == "SUBMITTED" and row.seq == 3 and len(history) == 3
    async with db.sessions() as session:  # rolled back: the rejected events left no inbox rows
        ids = [illegal.event_id, forked.event_id, bad_payload.event_id]
        assert (await session.execute(select(func.count()).select_from(inbox).where(
            inbox.c.event_id.in_(ids)))).scalar_one() == 0
    # The legal next event still applies.
    assert await feed(db, events[3]) == "ok"


async def test_a_parked_event_that_cannot_apply_is_dead_lettered_alone(db: Database) -> None:
    """The bad event waits for its turn; when it comes, its innocent predecessor still applies."""
    order_id = uuid.uuid4()
    events = pipeline(order_id)
    for event in events[:3]:
        await feed(db, event)
    bad = status_envelope(producer="mes", order_id=order_id, seq=5, change=StatusChanged(
        status=S.SHIPPED, actor="operator:x", tracking_number="TRK-BUG"))  # PRICE_CALCULATING -> SHIPPED
    assert await feed(db, bad) == "deferred"
    assert await feed(db, events[3]) == "ok"

    row, history = await projection(db, order_id)
    assert row.status == "PRICE_CALCULATING" and row.seq == 4 and len(history) == 4
    async with db.sessions() as session:
        parked = (await session.execute(select(inbox.c.event_id).where(inbox.c.event_id == bad.event_id))).all()
        dead = (await session.execute(select(OUTBOX).where(OUTBOX.c.message_id == bad.event_id))).first()
    assert parked == []  # a replay of the dead letter is processed afresh
    assert dead is not None and dead.exchange == "" and dead.routing_key == "crm.events.dlq"
    assert Envelope.model_validate_json(dead.body) == bad
    assert "cannot apply" in dead.headers["x-error"] and dead.headers["x-original-queue"] == "crm.events"

    # The real PRICE_CALCULATED still applies; the replayed bad event is now simply stale.
    assert await feed(db, events[4]) == "ok"
    assert await feed(db, bad) == "stale"
    assert (await projection(db, order_id))[0].status == "PRICE_CALCULATED"


async def test_the_running_service_consumes_from_the_broker(settings: Settings, db: Database) -> None:
    """Events published on the exchange reach the projection; a bug lands in the DLQ, visible."""
    from asgi_lifespan import LifespanManager

    from alexandrite.crm.app import create_app

    app = create_app(settings.replace(**{"run_relay": False}))
    order_id = uuid.uuid4()
    events = pipeline(order_id, name="Broker Test")
    illegal = status_envelope(producer="mes", order_id=order_id, seq=6, change=StatusChanged(
        status=S.SHIPPED, actor="operator:x", tracking_number="TRK-BUG"))  # PRICE_CALCULATED -> SHIPPED
    async with LifespanManager(app):
        connection = await aio_pika.connect(settings.broker.url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(EVENTS_EXCHANGE)

            async def publish(event: Envelope) -> None:
                await exchange.publish(aio_pika.Message(event.model_dump_json().encode(),
                                                        message_id=str(event.event_id),
                                                        headers={"event_type": event.type}),
                                       routing_key=event.type, mandatory=True)

            # Shuffled and duplicated on purpose: the projection must not depend on delivery order.
            for event in [events[1], events[0], events[4], events[2], events[3], events[0]]:
                await publish(event)
            for _ in range(200):
                row, history = await projection(db, order_id)
                if row is not None and row.status == "PRICE_CALCULATED":
                    break
                await asyncio.sleep(0.05)
            assert row is not None and row.status == "PRICE_CALCULATED" and len(history) == 5

            await publish(illegal)
            dlq = await channel.get_queue(dead_letter_queue(events_queue("crm")))
            found, others = None, []
            for _ in range(200):
                message = await dlq.get(no_ack=False, fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                if message.message_id == str(illegal.event_id):
                    found = message
                    await message.ack()
                    break
                others.append(message)  # someone else's dead letter: held, then given back
            for message in others:
                await message.nack(requeue=True)
            assert found is not None, "the illegal event must be dead-lettered"
            assert "cannot apply" in str(found.headers.get("x-error"))
            assert json.loads(found.body)["seq"] == 6
    row, history = await projection(db, order_id)
    assert row.status == "PRICE_CALCULATED" and len(history) == 5

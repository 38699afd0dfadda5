"""The shop applies mes's and crm's order events like the other services: in order, once, single writer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from alexandrite.contracts.events import Envelope, StatusChanged, status_envelope
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.db import Database
from alexandrite.kit.messaging.consumer import Delivery, PermanentError
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.storage import LocalStorage
from alexandrite.models3d.rings import ring
from alexandrite.models3d.writers import to_binary_stl
from alexandrite.shop import handlers
from alexandrite.shop.consumers import handle_event
from alexandrite.shop.tables import inbox, orders

S = OrderStatus


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url("shop"), pool_size=3)
    yield database
    await database.dispose()


def delivery(envelope: Envelope) -> Delivery:
    return Delivery(body=envelope.model_dump_json().encode(), headers={}, routing_key=envelope.type,
                    message_id=str(envelope.event_id), attempt=0, redelivered=False)


async def submitted_order(db: Database, settings: Settings) -> uuid.UUID:
    customer = Principal(role="customer", subject=str(uuid.uuid4()), name="Ring Buyer")
    order_id, _ = await handlers.create_order(db, customer, "gold_585", None)
    await handlers.attach_model(db, LocalStorage(settings.uploads.storage_dir), settings, customer, order_id,
                                to_binary_stl(ring(segments=48)), "ring.stl")
    await handlers.submit(db, customer, order_id)
    return order_id


async def status_and_seq(db: Database, order_id: uuid.UUID) -> tuple[str, int]:
    async with db.sessions() as session:
        row = (await session.execute(select(orders.c.status, orders.c.seq).where(orders.c.id == order_id))).one()
    return row.status, row.seq


async def test_an_event_from_a_service_that_does_not_own_the_status_is_refused(db: Database,
                                                                              settings: Settings) -> None:
    order_id = await submitted_order(db, settings)
    assert await status_and_seq(db, order_id) == ("SUBMITTED", 3)
    # SUBMITTED -> CANCELLED is in the transition table for crm, but production owns a SUBMITTED order:
    # crm may only ask it to cancel; an event from crm moving the order itself breaks the single writer.
    forked = status_envelope(producer="crm", order_id=order_id, seq=4, change=StatusChanged(
        status=S.CANCELLED, actor="seller:eve", reason="forked"))
    with pytest.raises(PermanentError, match="crm moved an order in SUBMITTED, which mes owns"):
        await handle_event(db, delivery(forked))
    assert await status_and_seq(db, order_id) == ("SUBMITTED", 3)
    async with db.sessions() as session:  # rolled back: a replay of a fixed event is processed afresh
        assert (await session.execute(select(inbox.c.event_id).where(
            inbox.c.event_id == forked.event_id))).first() is None

    # The owner's event applies.
    calculating = status_envelope(producer="mes", order_id=order_id, seq=4, change=StatusChanged(
        status=S.PRICE_CALCULATING, previous_status=S.SUBMITTED, actor="mes:pricing",
        progress={"queue_position": 1, "eta_seconds": 2}))
    assert await handle_event(db, delivery(calculating)) == "ok"
    assert await status_and_seq(db, order_id) == ("PRICE_CALCULATING", 4)


async def test_a_parked_event_from_the_wrong_service_does_not_take_its_predecessor_down(
        db: Database, settings: Settings) -> None:
    order_id = await submitted_order(db, settings)
    # seq 5 from the shop's own peer crm arrives first and is parked; when seq 4 (mes) fills the gap,
    # the order is PRICE_CALCULATING, which mes owns: seq 5 from crm is broken, seq 4 still applies.
    early = status_envelope(producer="crm", order_id=order_id, seq=5, change=StatusChanged(
        status=S.CANCELLED, actor="seller:eve"))
    assert await handle_event(db, delivery(early)) == "deferred"
    calculating = status_envelope(producer="mes", order_id=order_id, seq=4, change=StatusChanged(
        status=S.PRICE_CALCULATING, previous_status=S.SUBMITTED, actor="mes:pricing",
        progress={"queue_position": 1, "eta_seconds": 2}))
    assert await handle_event(db, delivery(calculating)) == "ok"
    assert await status_and_seq(db, order_id) == ("PRICE_CALCULATING", 4)

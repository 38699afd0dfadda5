"""Delays production reported: record them on the order and queue the customer's e-mail.

``mes.order.delayed`` arrives once per order and stage (and maybe again as a duplicate):
the ``order_delays`` primary key keeps one row, and only the transaction that inserted it
queues a notice in the notification outbox, so the customer gets exactly one per stage.
Partner orders get no e-mail: the partner's webhook delivers the event.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from alexandrite.contracts.events import DELIVERY_STAGE, ORDER_DELAYED_TYPE, Envelope, OrderDelayed
from alexandrite.kit.db import Database, OrderChange, UnitOfWork, notify_order
from alexandrite.kit.messaging.consumer import Delivery, PermanentError
from alexandrite.shop import webhooks
from alexandrite.shop.tables import customers, notifications, order_delays, orders

log = structlog.get_logger(__name__)

STAGE_WORDS = {
    "SUBMITTED": "accepting your order",
    "PRICE_CALCULATING": "calculating the price of your model",
    "PRICE_CALCULATED": "confirming your order for manufacturing",
    "MANUFACTURING_APPROVED": "starting manufacturing",
    "MANUFACTURING_STARTED": "manufacturing",
    "MANUFACTURING_COMPLETED": "finishing",
    "PACKAGING": "packaging",
    "SHIPPED": "delivery by the carrier",
    DELIVERY_STAGE: "the promised delivery",
}


def delay_email(order_id: uuid.UUID, name: str, delay: OrderDelayed) -> tuple[str, str]:
    """(subject, body) of the delay notice; no data beyond the customer's name and the order."""
    stage = STAGE_WORDS.get(delay.stage, delay.stage.lower().replace("_", " "))
    eta = delay.new_eta.strftime("%d %B %Y")
    subject = f"Your Alexandrite order {str(order_id)[:8]} is delayed"
    body = (
        f"Dear {name},\n\n"
        f"{stage.capitalize()} for your order {order_id} is taking longer than we promised.\n"
        f"We now expect to ship it by {eta}.\n\n"
        "We are sorry for the wait; you can follow the order in your account at any time.\n\n"
        "Alexandrite\n"
    )
    return subject, body


async def record_delay(db: Database, delivery: Delivery) -> str:
    try:
        envelope = Envelope.model_validate_json(delivery.body)
        delay = OrderDelayed.model_validate(envelope.payload)
    except ValidationError as error:
        raise PermanentError(f"invalid delay event: {error.errors(include_url=False)[:3]}") from error
    return await apply_delay(db, envelope.order_id, delay)


async def apply_delay(db: Database, order_id: uuid.UUID, delay: OrderDelayed) -> str:
    """Returns "ok" (recorded, notice queued if a customer's), "duplicate" or "unknown_order"."""
    async with UnitOfWork(db) as uow:
        order = (
            await uow.session.execute(
                select(orders.c.owner_kind, orders.c.owner_id).where(orders.c.id == order_id)
            )
        ).first()
        if order is None:
            raise LookupError(f"order {order_id} is unknown here yet")  # retried: its events are in flight
        inserted = (
            await uow.session.execute(
                insert(order_delays)
                .values(order_id=order_id, stage=delay.stage, since=delay.since, sla_seconds=delay.sla_seconds,
                        detected_at=delay.detected_at, new_eta=delay.new_eta)
                .on_conflict_do_nothing()
                .returning(order_delays.c.order_id)
            )
        ).scalar_one_or_none()
        if inserted is None:
            return "duplicate"
        await webhooks.enqueue(uow, order_id, ORDER_DELAYED_TYPE, {  # partner orders: to the partner's webhook
            "type": "order.delayed", "order_id": str(order_id),
            **delay.model_dump(mode="json", exclude_none=True, exclude={"owner_kind"})})
        if order.owner_kind == "customer":
            customer = (
                await uow.session.execute(
                    select(customers.c.email, customers.c.name).where(customers.c.id == order.owner_id)
                )
            ).first()
            if customer is not None:
                subject, body = delay_email(order_id, customer.name, delay)
                await uow.session.execute(
                    insert(notifications)
                    .values(id=uuid.uuid4(), order_id=order_id, kind=f"delay:{delay.stage}", channel="email",
                            recipient=customer.email, subject=subject, body=body)
                    .on_conflict_do_nothing()
                )
        notify_order(uow, OrderChange(order_id=order_id, status=delay.stage, kind="delay"))
        await uow.commit()
    log.info("order_delay_recorded", order_id=str(order_id), stage=delay.stage, owner_kind=order.owner_kind)
    return "ok"


async def current_delay(session: AsyncSession, order_id: uuid.UUID, status: str) -> dict[str, Any] | None:
    """The delay to show on the order: the latest one of its current stage or its delivery."""
    if status in ("CLOSED", "CANCELLED"):
        return None
    row = (
        await session.execute(
            select(order_delays)
            .where(order_delays.c.order_id == order_id, order_delays.c.stage.in_([status, DELIVERY_STAGE]))
            .order_by(order_delays.c.detected_at.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    return {"stage": row.stage, "since": row.since, "sla_seconds": row.sla_seconds,
            "detected_at": row.detected_at, "new_eta": row.new_eta}


"""The delivery queue, a table of the shop: a row is written in the same transaction as the order change it
reports, so a status change a partner should hear about is never lost; :mod:`.dispatch` sends the rows."""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import CursorResult, and_, bindparam, func, select, update

from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.shop.tables import orders, partners, webhook_deliveries

STATES = ("pending", "delivered", "dead")
# What a partner reads back about a failed attempt besides the status code its endpoint answered: one
# word, never the network error (which would tell open internal ports from closed ones).
UNREACHABLE = "unreachable"
NO_ENDPOINT = "no_endpoint"
_ERROR_WORDS = frozenset({UNREACHABLE, NO_ENDPOINT})
# Every statement that queues deliveries notifies this channel (delivered at commit): the dispatcher
# wakes on it instead of polling fast; its slow poll still finds retries as they fall due.
WEBHOOK_CHANNEL = "alexandrite_webhooks"


def error_word(stored: str | None) -> str | None:
    """The word shown for a stored attempt error (rows written before the words existed collapse too)."""
    if stored is None or stored.startswith("HTTP "):  # the status code is shown on its own
        return None
    return stored if stored in _ERROR_WORDS else UNREACHABLE


def _enqueue_statement() -> Any:
    """INSERT ... SELECT of a delivery for the order's partner if it has a webhook, then its NOTIFY; built once
    with bind parameters (building it per event cost ~0.4 ms of CPU, more than sending it)."""
    source = (
        select(bindparam("delivery_id", type_=webhook_deliveries.c.delivery_id.type), partners.c.id, orders.c.id,
               bindparam("event_type", type_=webhook_deliveries.c.event_type.type),
               bindparam("payload", type_=webhook_deliveries.c.payload.type))
        .select_from(orders.join(partners, and_(orders.c.owner_kind == "partner",
                                                partners.c.id == orders.c.owner_id)))
        .where(orders.c.id == bindparam("order_id", type_=orders.c.id.type), partners.c.webhook_url.is_not(None),
               partners.c.active.is_(True))
    )
    queued = (
        webhook_deliveries.insert()
        .from_select(["delivery_id", "partner_id", "order_id", "event_type", "payload"], source)
        .returning(webhook_deliveries.c.delivery_id)
        .cte("queued")
    )
    return select(func.pg_notify(WEBHOOK_CHANNEL, "")).select_from(queued)


_ENQUEUE = _enqueue_statement()


def delivery_cte(row: str, delivery: str, event_type: str, payload: str) -> str:
    """``wh``: a partner's delivery for the order the CTE ``row`` wrote (returning ``id, owner_kind,
    owner_id``), when its owner is a partner with a webhook; starts with a comma. The other arguments are
    the parameters of the delivery's id, event type and payload. :data:`DISPATCHER_WAKEUP` wakes the sender."""
    return f""", wh AS (
    INSERT INTO webhook_deliveries (delivery_id, partner_id, order_id, event_type, payload)
    SELECT {delivery}::uuid, p.id, {row}.id, {event_type}::text, {payload}::jsonb
      FROM {row} JOIN partners p ON {row}.owner_kind = 'partner' AND p.id = {row}.owner_id
     WHERE p.webhook_url IS NOT NULL AND p.active
    RETURNING 1
)"""


# A select-list expression after :func:`delivery_cte`: the dispatcher's wake-up, sent at commit.
DISPATCHER_WAKEUP = f"(SELECT pg_notify('{WEBHOOK_CHANNEL}', '') FROM wh)"


async def enqueue(uow: UnitOfWork, order_id: uuid.UUID, event_type: str, payload: dict[str, Any]) -> None:
    """Queue a delivery if the order belongs to a partner with a webhook (one INSERT ... SELECT)."""
    await uow.session.execute(_ENQUEUE, {"delivery_id": uuid.uuid4(), "order_id": order_id, "event_type": event_type,
                                         "payload": payload})


def status_payload(order_id: uuid.UUID, seq: int, change: Any) -> dict[str, Any]:
    """What a partner gets for a status change: the change without internal actors."""
    data = change.model_dump(mode="json", exclude_none=True, exclude={"actor", "owner"})
    return {"type": "order.status_changed", "order_id": str(order_id), "seq": seq, **data}


async def list_deliveries(db: Database, partner_id: uuid.UUID | None, state: str | None, limit: int = 100,
                          ) -> list[dict[str, Any]]:
    query = select(webhook_deliveries, partners.c.name.label("partner")).join(
        partners, partners.c.id == webhook_deliveries.c.partner_id)
    if partner_id is not None:
        query = query.where(webhook_deliveries.c.partner_id == partner_id)
    if state is not None:
        query = query.where(webhook_deliveries.c.state == state)
    async with db.sessions() as session:
        rows = (await session.execute(query.order_by(webhook_deliveries.c.id.desc()).limit(limit))).all()
    return [
        {"delivery_id": str(r.delivery_id), "partner": r.partner, "order_id": str(r.order_id),
         "event_type": r.event_type, "state": r.state, "attempts": r.attempts, "last_status": r.last_status,
         "last_error": error_word(r.last_error), "created_at": r.created_at.isoformat(),
         "delivered_at": r.delivered_at.isoformat() if r.delivered_at else None,
         "next_attempt_at": r.next_attempt_at.isoformat() if r.state == "pending" else None}
        for r in rows
    ]


async def replay(db: Database, partner_id: uuid.UUID | None, delivery_ids: list[uuid.UUID] | None) -> int:
    """Send dead-lettered deliveries again (all of them, or the given ids); returns how many."""
    query = update(webhook_deliveries).where(webhook_deliveries.c.state == "dead")
    if partner_id is not None:
        query = query.where(webhook_deliveries.c.partner_id == partner_id)
    if delivery_ids is not None:
        query = query.where(webhook_deliveries.c.delivery_id.in_(delivery_ids))
    async with UnitOfWork(db) as uow:
        result = await uow.session.execute(
            query.values(state="pending", attempts=0, next_attempt_at=func.now(), last_error=None))
        await uow.commit()
    return int(cast("CursorResult[Any]", result).rowcount or 0)

"""Partner webhooks: endpoint registration, signing, and the delivery queue (a table of the shop).

A delivery row is written in the same transaction as the order change it reports, so a status
change a partner should hear about is never lost; :mod:`alexandrite.shop.webhook_dispatch`
sends the rows. Signature: ``X-Alexandrite-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``
with ``X-Alexandrite-Timestamp`` (Unix seconds); see docs/webhooks.md.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
import uuid
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import CursorResult, and_, func, literal, select, update

from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.errors import ApiError
from alexandrite.kit.settings import Settings
from alexandrite.shop.tables import orders, partners, webhook_deliveries

SIGNATURE_HEADER = "X-Alexandrite-Signature"
TIMESTAMP_HEADER = "X-Alexandrite-Timestamp"
DELIVERY_HEADER = "X-Alexandrite-Delivery"
EVENT_HEADER = "X-Alexandrite-Event"
STATES = ("pending", "delivered", "dead")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: int = 300,
           now: float | None = None) -> bool:
    """What a partner runs: a valid signature over a timestamp no older than ``tolerance`` seconds."""
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def check_url(url: str, settings: Settings) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise ApiError(422, "invalid_webhook_url", "The webhook URL must be an absolute http(s) URL.")
    if settings.environment == "production" and not settings.webhooks.allow_private_urls:
        if parts.scheme != "https":
            raise ApiError(422, "invalid_webhook_url", "The webhook URL must use https.")
        host = parts.hostname
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if host == "localhost" or (address is not None and not address.is_global):
            raise ApiError(422, "invalid_webhook_url", "The webhook URL must point to a public host.")
    return url


# --- registration ---------------------------------------------------------------------------------

async def register(db: Database, partner_id: uuid.UUID, url: str) -> str:
    """Set the partner's webhook URL with a fresh signing secret; returns the secret."""
    secret = new_secret()
    async with UnitOfWork(db) as uow:
        await uow.session.execute(
            update(partners).where(partners.c.id == partner_id).values(webhook_url=url, webhook_secret=secret))
        await uow.commit()
    return secret


async def unregister(db: Database, partner_id: uuid.UUID) -> None:
    async with UnitOfWork(db) as uow:
        await uow.session.execute(
            update(partners).where(partners.c.id == partner_id).values(webhook_url=None, webhook_secret=None))
        await uow.commit()


async def endpoint(db: Database, partner_id: uuid.UUID) -> dict[str, Any]:
    async with db.sessions() as session:
        url = (await session.execute(select(partners.c.webhook_url).where(partners.c.id == partner_id))).scalar()
        counts: dict[str, int] = dict((await session.execute(
            select(webhook_deliveries.c.state, func.count()).where(webhook_deliveries.c.partner_id == partner_id)
            .group_by(webhook_deliveries.c.state))).all())
    return {"url": url, "deliveries": {state: int(counts.get(state, 0)) for state in STATES}}


# --- the queue ------------------------------------------------------------------------------------

async def enqueue(uow: UnitOfWork, order_id: uuid.UUID, event_type: str, payload: dict[str, Any]) -> None:
    """Queue a delivery if the order belongs to a partner with a webhook (one INSERT ... SELECT)."""
    source = (
        select(literal(uuid.uuid4()), partners.c.id, orders.c.id, literal(event_type),
               literal(payload, type_=webhook_deliveries.c.payload.type))
        .select_from(orders.join(partners, and_(orders.c.owner_kind == "partner",
                                                partners.c.id == orders.c.owner_id)))
        .where(orders.c.id == order_id, partners.c.webhook_url.is_not(None), partners.c.active.is_(True))
    )
    await uow.session.execute(
        webhook_deliveries.insert().from_select(
            ["delivery_id", "partner_id", "order_id", "event_type", "payload"], source))


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
         "last_error": r.last_error, "created_at": r.created_at.isoformat(),
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

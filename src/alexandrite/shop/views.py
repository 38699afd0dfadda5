"""Read side: the order as the customer sees it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.db import Database
from alexandrite.kit.peers import Peers
from alexandrite.orders.records import load_history
from alexandrite.shop import repository
from alexandrite.shop.delays import current_delay
from alexandrite.shop.domain import Owner
from alexandrite.shop.tables import order_history


def live_progress(row: Any, now: datetime | None = None) -> dict[str, Any] | None:
    """Progress while pricing: the estimate given when pricing was queued, counted down."""
    if row.status != OrderStatus.PRICE_CALCULATING.value or not row.progress:
        return None
    now = now or datetime.now(UTC)
    elapsed = max((now - row.status_since).total_seconds(), 0.0)
    eta = float(row.progress.get("eta_seconds", 0.0))
    return {
        "queue_position": int(row.progress.get("queue_position", 0)),
        "eta_seconds": round(max(eta - elapsed, 0.0), 1),
    }


async def order_view(session: AsyncSession, order_id: uuid.UUID, owner: Owner | None) -> dict[str, Any] | None:
    row = await repository.get_owned_order(session, order_id, owner)
    if row is None:
        return None
    history = await load_history(session, order_history, order_id)
    return {
        "id": row.id,
        "status": row.status,
        "alloy": row.alloy,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "history": [{"status": h["status"], "at": h["at"], "by": h["by"]} for h in history],
        "progress": live_progress(row),
        "quote": row.quote,
        "failure": row.failure,
        "model": row.model,
        "tracking_number": row.tracking_number,
        "carrier": row.carrier,
        "delay": await current_delay(session, order_id, row.status),
    }


async def live_order_view(db: Database, peers: Peers, order_id: uuid.UUID, owner: Owner | None, *,
                          live: bool = False) -> dict[str, Any] | None:
    """The order view; with ``live``, a priced-right-now queue position asked from production."""
    async with db.sessions() as session:
        view = await order_view(session, order_id, owner)
    if view is not None and live and view["status"] == OrderStatus.PRICE_CALCULATING.value:
        # Production knows the queue right now; the estimate from the event is the fallback.
        answer = await peers.get_quick("mes", f"/internal/v1/orders/{order_id}/progress")
        if answer and answer.get("progress"):
            view["progress"] = answer["progress"]
    return view


def summary(row: Any) -> dict[str, Any]:
    quote = row.quote or {}
    return {
        "id": row.id,
        "status": row.status,
        "alloy": row.alloy,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "total": quote.get("total"),
        "currency": quote.get("currency"),
    }

"""Read side: orders as the seller sees them, with history, quote and notes."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from alexandrite.crm import repository
from alexandrite.crm.repository import OrderFilter
from alexandrite.crm.tables import order_history
from alexandrite.kit import pagination
from alexandrite.kit.errors import ApiError
from alexandrite.orders.records import load_history

NOTES_SHOWN = 200  # newest notes embedded in the order view


def encode_cursor(created_at: datetime, order_id: uuid.UUID) -> str:
    return pagination.encode_cursor(created_at, order_id)


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The keyset position of an opaque cursor; 422 ``invalid_cursor`` for anything we did not issue."""
    created_at, order_id = pagination.decode_cursor(cursor)
    if created_at.tzinfo is None:
        raise ApiError(422, "invalid_cursor", "The cursor is not one this API returned.")
    return created_at, order_id


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _owner(row: Any) -> dict[str, str]:
    return {"kind": row.owner_kind, "id": row.owner_id, "name": row.owner_name}


def summary(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status,
        "alloy": row.alloy,
        "owner": _owner(row),
        "total": _money(row.total),
        "currency": row.currency,
        "tracking_number": row.tracking_number,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "status_since": row.status_since,
    }


async def order_page(session: AsyncSession, flt: OrderFilter, limit: int) -> dict[str, Any]:
    rows = await repository.list_orders(session, flt, limit)
    items, next_cursor = pagination.page(rows, limit)
    return {"items": [summary(r) for r in items], "next_cursor": next_cursor}


async def order_view(session: AsyncSession, order_id: uuid.UUID) -> dict[str, Any] | None:
    row = await repository.get_order(session, order_id)
    if row is None:
        return None
    history = await load_history(session, order_history, order_id)
    note_rows = await repository.order_notes(session, order_id, NOTES_SHOWN)
    return {
        **summary(row),
        "seq": row.seq,
        "model": row.model,
        "quote": row.quote,
        "failure": row.failure,
        "carrier": row.carrier,
        "closed_reason": row.closed_reason,
        "cancel_reason": row.cancel_reason,
        "history": [{"status": h["status"], "at": h["at"], "by": h["by"]} for h in history],
        "notes": [note(n) for n in note_rows],
    }


def note(row: Any) -> dict[str, Any]:
    return {"id": row.id, "order_id": row.order_id, "author": row.author, "text": row.text, "at": row.at}

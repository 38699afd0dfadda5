"""Read side: orders as the seller sees them, with history, quote and notes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from alexandrite.crm import repository
from alexandrite.crm.repository import OrderFilter
from alexandrite.crm.tables import order_history
from alexandrite.kit import pagination
from alexandrite.kit.errors import ApiError
from alexandrite.orders import stage_clock
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


def encode_waiting_cursor(status_since: datetime, order_id: uuid.UUID) -> str:
    return "waiting." + pagination.encode_cursor(status_since, order_id)


def decode_waiting_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    kind, _, inner = cursor.partition(".")
    if kind != "waiting":
        raise ApiError(422, "invalid_cursor", "The cursor is not one this API returned for this list.")
    return decode_cursor(inner)


async def waiting_page(session: AsyncSession, slas: Mapping[str, float], *, late: bool | None,
                       cursor: str | None, limit: int, now: datetime) -> dict[str, Any]:
    """Orders waiting for the seller's approval, longest waiting first, with their stage clocks and
    counts (waiting, late: past the approval SLA, ``ALEX_SLA_SECONDS["PRICE_CALCULATED"]``)."""
    after = decode_waiting_cursor(cursor) if cursor else None
    sla = stage_clock.sla_seconds(slas, repository.WAITING)
    late_before = now - timedelta(seconds=sla) if sla else None
    if late is True and late_before is None:
        rows: list[Any] = []  # no SLA: nothing is late
    else:
        rows = await repository.waiting_for_approval(
            session, late_before=late_before, on_time=None if late is None else not late, after=after, limit=limit)
    waiting, overdue = await repository.count_waiting(session, late_before)
    items = rows[:limit]
    next_cursor = encode_waiting_cursor(items[-1].status_since, items[-1].id) if len(rows) > limit else None
    return {
        "items": [{**summary(r), "sla_seconds": sla, "due_at": stage_clock.due_at(r.status_since, sla) if sla else None,
                   **stage_clock.clock(r.status_since, sla, now)} for r in items],
        "next_cursor": next_cursor,
        "counts": {"waiting": waiting, "late": overdue},
        "sla_seconds": sla,
        "as_of": now,
    }

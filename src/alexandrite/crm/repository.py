"""CRM queries (no commits here: the unit of work commits)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, literal_column, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from alexandrite.crm.domain import CreatedRange, SearchTerms, like_pattern
from alexandrite.crm.tables import notes, orders

SUMMARY_COLUMNS = (
    orders.c.id,
    orders.c.status,
    orders.c.alloy,
    orders.c.owner_kind,
    orders.c.owner_id,
    orders.c.owner_name,
    orders.c.total,
    orders.c.currency,
    orders.c.tracking_number,
    orders.c.created_at,
    orders.c.updated_at,
    orders.c.status_since,
)


@dataclass(frozen=True)
class OrderFilter:
    statuses: tuple[str, ...] = ()
    search: SearchTerms | None = None
    customer: str | None = None
    created: CreatedRange = CreatedRange(None, None)
    after: tuple[datetime, uuid.UUID] | None = None  # keyset position: (created_at, id) of the last row seen


def _search_condition(terms: SearchTerms) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    if terms.id_range is not None:
        low, high = terms.id_range
        parts.append(orders.c.id.between(low, high))
    if terms.tracking_numbers:
        parts.append(orders.c.tracking_number.in_(terms.tracking_numbers))
    parts.append(func.lower(orders.c.owner_name).like(like_pattern(terms.name_fragment), escape="\\"))
    return or_(*parts)


def _filtered(stmt: Select[Any], flt: OrderFilter) -> Select[Any]:
    conditions: list[ColumnElement[bool]] = []
    if flt.statuses:
        conditions.append(orders.c.status.in_(flt.statuses))
    if flt.search is not None and flt.search.text:
        conditions.append(_search_condition(flt.search))
    if flt.customer:
        conditions.append(func.lower(orders.c.owner_name) == flt.customer.strip().lower())
    if flt.created.start is not None:
        conditions.append(orders.c.created_at >= flt.created.start)
    if flt.created.end is not None:
        conditions.append(orders.c.created_at < flt.created.end)
    if flt.after is not None:
        conditions.append(tuple_(orders.c.created_at, orders.c.id) < tuple_(*flt.after))
    return stmt.where(and_(*conditions)) if conditions else stmt


async def list_orders(session: AsyncSession, flt: OrderFilter, limit: int) -> list[Any]:
    """Newest first; fetches ``limit + 1`` rows so the caller knows whether a next page exists."""
    stmt = _filtered(select(*SUMMARY_COLUMNS), flt)
    stmt = stmt.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit + 1)
    return list((await session.execute(stmt)).all())


async def get_order(session: AsyncSession, order_id: uuid.UUID, *, for_update: bool = False) -> Any:
    stmt = select(orders).where(orders.c.id == order_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).first()


async def orders_by_tracking(session: AsyncSession, tracking_number: str, *, for_update: bool = False) -> list[Any]:
    """Every order shipped under this tracking number (a parcel may hold several), locked in id order."""
    stmt = select(orders).where(orders.c.tracking_number == tracking_number).order_by(orders.c.id)
    if for_update:
        stmt = stmt.with_for_update()
    return list((await session.execute(stmt)).all())


async def add_note(session: AsyncSession, *, note_id: uuid.UUID, order_id: uuid.UUID, author: str, text: str,
                   at: datetime) -> Any:
    return (
        await session.execute(
            notes.insert()
            .values(id=note_id, order_id=order_id, author=author, text=text, at=at)
            .returning(notes)
        )
    ).first()


async def order_notes(session: AsyncSession, order_id: uuid.UUID, limit: int) -> list[Any]:
    """The order's notes, newest first."""
    stmt = (
        select(notes)
        .where(notes.c.order_id == order_id)
        .order_by(notes.c.at.desc(), notes.c.id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).all())


# --- waiting for the seller's approval (the stage clock of PRICE_CALCULATED) ------------------------

WAITING = "PRICE_CALCULATED"


def _waiting() -> ColumnElement[bool]:
    return orders.c.status == literal_column(f"'{WAITING}'")  # a literal: the partial index's own predicate


async def waiting_for_approval(session: AsyncSession, *, late_before: datetime | None, on_time: bool | None,
                               after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[Any]:
    """Priced orders, longest waiting first (the partial ``(status_since, id)`` index, keyset pages).
    ``late_before`` is now - SLA: ``on_time=False`` keeps those waiting since before it, True the others."""
    stmt = select(*SUMMARY_COLUMNS).where(_waiting())
    if late_before is not None and on_time is False:
        stmt = stmt.where(orders.c.status_since < late_before)
    elif late_before is not None and on_time is True:
        stmt = stmt.where(orders.c.status_since >= late_before)
    if after is not None:
        stmt = stmt.where(tuple_(orders.c.status_since, orders.c.id) > tuple_(*after))
    stmt = stmt.order_by(orders.c.status_since, orders.c.id).limit(limit + 1)
    return list((await session.execute(stmt)).all())


async def count_waiting(session: AsyncSession, late_before: datetime | None) -> tuple[int, int]:
    """Orders waiting for approval, and how many of them since before ``late_before`` (index only)."""
    late = (func.count().filter(orders.c.status_since < late_before) if late_before is not None
            else literal_column("0"))
    waiting, overdue = (await session.execute(select(func.count(), late).select_from(orders).where(_waiting()))).one()
    return int(waiting), int(overdue)

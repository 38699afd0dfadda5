"""Read side: the production dashboard and orders as operators see them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from alexandrite.contracts.order_status import IN_WORK, OrderStatus
from alexandrite.kit import pagination
from alexandrite.kit.errors import ApiError
from alexandrite.mes import progress, repository
from alexandrite.mes.domain import quote_summary
from alexandrite.mes.tables import order_history
from alexandrite.orders import stage_clock
from alexandrite.orders.records import load_history

IN_WORK_STATUSES = tuple(s.value for s in IN_WORK)


def encode_cursor(created_at: datetime, order_id: uuid.UUID) -> str:
    return pagination.encode_cursor(created_at, order_id)


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The keyset position of an opaque cursor; 422 ``invalid_cursor`` for anything we did not issue."""
    created_at, order_id = pagination.decode_cursor(cursor)
    if created_at.tzinfo is None:
        raise ApiError(422, "invalid_cursor", "The cursor is not one this API returned.")
    return created_at, order_id


def encode_clock_cursor(sort: str, row: Any) -> str:
    """The keyset position after ``row`` in a stage-clock order: (stage rank, due_at or status_since, id)."""
    position = row.due_at if sort == "late" else row.status_since
    return f"{sort}.{row.stage_rank}.{pagination.encode_cursor(position, row.id)}"


def decode_clock_cursor(cursor: str, sort: str) -> tuple[int, datetime, uuid.UUID]:
    kind, _, rest = cursor.partition(".")
    rank, _, inner = rest.partition(".")
    if kind != sort or not rank.isdigit() or int(rank) >= len(IN_WORK_STATUSES):
        raise ApiError(422, "invalid_cursor", "The cursor is not one this API returned for this sort.")
    position, order_id = decode_cursor(inner)
    return int(rank), position, order_id


def summary(row: Any, slas: Mapping[str, float] | None = None) -> dict[str, Any]:
    """An order as lists show it, from a whole order row (its quote gives the total)."""
    return _summary(row, *quote_summary(row.quote), slas or {})


def list_item(row: Any, slas: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The same, from a row of ``repository.SUMMARY_COLUMNS`` (total and currency selected)."""
    return _summary(row, row.total, row.currency, slas or {})


def _summary(row: Any, total: Any, currency: str | None, slas: Mapping[str, float]) -> dict[str, Any]:
    sla = stage_clock.sla_seconds(slas, row.status)
    return {
        "id": row.id,
        "status": row.status,
        "alloy": row.alloy,
        "owner": {"kind": row.owner_kind, "name": row.owner_name},
        "operator": row.operator,
        "total": total,
        "currency": currency,
        "tracking_number": row.tracking_number,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "status_since": row.status_since,
        "approved_at": row.approved_at,
        "sla_seconds": sla,
        "due_at": stage_clock.due_at(row.status_since, sla) if sla else None,
    }


def job(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "submit_seq": row.submit_seq, "state": row.state, "enqueued_at": row.enqueued_at,
        "started_at": row.started_at, "finished_at": row.finished_at, "attempts": row.attempts,
        "worker": row.worker, "duration_ms": row.duration_ms,
    }


async def order_view(session: AsyncSession, order_id: uuid.UUID,
                     estimate: progress.QueueEstimate | None = None) -> dict[str, Any] | None:
    """The order with its history and pricing jobs; progress recomputed live while it is priced."""
    row = await repository.get_order(session, order_id)
    if row is None:  # an archived month is still readable
        row = await repository.get_archived_order(session, order_id)
    if row is None:
        return None
    history = await load_history(session, order_history, order_id)
    jobs = await repository.order_jobs(session, order_id)
    live = row.progress
    if row.status == OrderStatus.PRICE_CALCULATING.value and estimate is not None:
        active = next((j for j in reversed(jobs) if j.state in ("queued", "running")), None)
        if active is not None:
            live = await progress.job_progress(session, active, estimate)
    return {
        **summary(row),
        "seq": row.seq,
        "model": row.model,
        "quote": row.quote,
        "failure": row.failure,
        "progress": live if row.status == OrderStatus.PRICE_CALCULATING.value else None,
        "carrier": row.carrier,
        "history": [{"status": h["status"], "at": h["at"], "by": h["by"]} for h in history],
        "pricing_jobs": [job(j) for j in jobs],
    }

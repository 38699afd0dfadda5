"""MES queries (no commits here: the unit of work commits)."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, literal_column, select, tuple_, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from alexandrite.contracts.order_status import OrderStatus
from alexandrite.mes.domain import ACTIVE_JOB_STATES, AVERAGE_WINDOW, JobState
from alexandrite.mes.tables import (
    archived_production_orders,
    pricing_jobs,
    production_orders,
    production_status_counts,
)
from alexandrite.orders import stage_clock

orders = production_orders
_ACTIVE = tuple(s.value for s in ACTIVE_JOB_STATES)

SUMMARY_COLUMNS = (
    orders.c.id,
    orders.c.status,
    orders.c.alloy,
    orders.c.owner_kind,
    orders.c.owner_name,
    orders.c.operator,
    # Only what a list shows of the quote (a whole quote is a JSON document to decode per row).
    orders.c.quote["total"].label("total"),
    orders.c.quote["currency"].astext.label("currency"),
    orders.c.tracking_number,
    orders.c.created_at,
    orders.c.updated_at,
    orders.c.status_since,
    orders.c.approved_at,
)


# --- orders -------------------------------------------------------------------------------------

async def get_order(session: AsyncSession, order_id: uuid.UUID, *, for_update: bool = False) -> Any:
    stmt = select(orders).where(orders.c.id == order_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).first()


async def get_archived_order(session: AsyncSession, order_id: uuid.UUID) -> Any:
    """An order in a month that ``alexandrite maintain`` archived (read-only)."""
    stmt = select(archived_production_orders).where(archived_production_orders.c.id == order_id)
    return (await session.execute(stmt)).first()


def _statuses(name: str, statuses: tuple[str, ...]) -> Any:
    """The statuses inlined as literals (they are enum values): the plan, cached or not, sees them and
    can use the partial in-work index. A bound parameter list would get a generic plan that cannot."""
    return bindparam(name, list(statuses), expanding=True, literal_execute=True)


async def order_status(session: AsyncSession, order_id: uuid.UUID) -> str | None:
    return (await session.execute(select(orders.c.status).where(orders.c.id == order_id))).scalar_one_or_none()


async def list_orders(session: AsyncSession, statuses: tuple[str, ...],
                      after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[Any]:
    """Newest first; fetches ``limit + 1`` rows so the caller knows whether a next page exists."""
    stmt = _first_page(statuses, limit) if after is None else _newest_first(statuses, after, limit)
    return list((await session.execute(stmt)).all())


@functools.lru_cache(maxsize=64)
def _first_page(statuses: tuple[str, ...], limit: int) -> Any:
    return _newest_first(statuses, None, limit)  # no parameters: built once, planned once per connection


def _newest_first(statuses: tuple[str, ...], after: tuple[datetime, uuid.UUID] | None, limit: int) -> Any:
    stmt = select(*SUMMARY_COLUMNS).where(orders.c.status.in_(_statuses("statuses", statuses)))
    if after is not None:
        # The plain bound lets the planner skip the months newer than the cursor (pruning).
        stmt = stmt.where(orders.c.created_at <= after[0], tuple_(orders.c.created_at, orders.c.id) < tuple_(*after))
    # The limit is inlined too: the first page's statement has no parameters, so each connection
    # plans it once (planning over every month's partition costs more than running it).
    return stmt.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(
        bindparam("page_limit", int(limit) + 1, literal_execute=True))


async def count_by_status(session: AsyncSession, statuses: tuple[str, ...]) -> dict[str, int]:
    """Orders in each of the in-work ``statuses`` (kept up to date by a trigger, read in one small scan)."""
    counts = production_status_counts
    rows = (await session.execute(select(counts.c.status, counts.c.n).where(counts.c.status.in_(statuses)))).all()
    found = {status: int(n) for status, n in rows}
    return {status: found.get(status, 0) for status in statuses}


# --- pricing jobs -------------------------------------------------------------------------------

async def insert_job(session: AsyncSession, *, job_id: uuid.UUID, order_id: uuid.UUID, submit_seq: int,
                     enqueued_at: datetime, confirm: list[str] | None = None) -> None:
    await session.execute(
        pricing_jobs.insert().values(
            id=job_id, order_id=order_id, submit_seq=submit_seq, state=JobState.QUEUED.value,
            enqueued_at=enqueued_at, confirm=confirm or None,
        )
    )


async def active_job(session: AsyncSession, order_id: uuid.UUID) -> Any:
    """The order's queued or running job (at most one: a new job needs a new submission)."""
    return (
        await session.execute(
            select(pricing_jobs)
            .where(pricing_jobs.c.order_id == order_id, pricing_jobs.c.state.in_(_ACTIVE))
            .order_by(pricing_jobs.c.submit_seq.desc())
            .limit(1)
        )
    ).first()


async def order_jobs(session: AsyncSession, order_id: uuid.UUID) -> list[Any]:
    return list(
        (
            await session.execute(
                select(pricing_jobs).where(pricing_jobs.c.order_id == order_id).order_by(pricing_jobs.c.submit_seq)
            )
        ).all()
    )


async def jobs_ahead(session: AsyncSession, enqueued_at: datetime, job_id: uuid.UUID) -> int:
    """Queued or running jobs enqueued before this one (ties broken by id)."""
    return int(
        (
            await session.execute(
                select(func.count())
                .select_from(pricing_jobs)
                .where(
                    pricing_jobs.c.state.in_(_ACTIVE),
                    pricing_jobs.c.enqueued_at <= enqueued_at,
                    tuple_(pricing_jobs.c.enqueued_at, pricing_jobs.c.id) < tuple_(enqueued_at, job_id),
                )
            )
        ).scalar_one()
    )


async def recent_durations(session: AsyncSession, window: int = AVERAGE_WINDOW) -> list[int]:
    """Durations (ms) of the latest finished jobs, newest first."""
    return list(
        (
            await session.execute(
                select(pricing_jobs.c.duration_ms)
                .where(pricing_jobs.c.duration_ms.is_not(None))  # priced or failed (jobs.py: _durations)
                .order_by(pricing_jobs.c.finished_at.desc())
                .limit(window)
            )
        ).scalars()
    )


async def queue_counts(session: AsyncSession) -> dict[str, Any]:
    """Queued and running jobs, and when the oldest queued one was enqueued."""
    rows = (
        await session.execute(
            select(pricing_jobs.c.state, func.count(), func.min(pricing_jobs.c.enqueued_at))
            .where(pricing_jobs.c.state.in_(_ACTIVE))
            .group_by(pricing_jobs.c.state)
        )
    ).all()
    found = {state: (int(n), oldest) for state, n, oldest in rows}
    queued, oldest = found.get(JobState.QUEUED.value, (0, None))
    running, _ = found.get(JobState.RUNNING.value, (0, None))
    return {"queued": queued, "running": running, "oldest_queued_at": oldest}


async def requeue(session: AsyncSession, job_id: uuid.UUID, *, worker: str) -> None:
    """A job this worker could not finish goes back to "queued" (its message is retried)."""
    await session.execute(
        update(pricing_jobs)
        .where(pricing_jobs.c.id == job_id, pricing_jobs.c.state == JobState.RUNNING.value,
               pricing_jobs.c.worker == worker)
        .values(state=JobState.QUEUED.value)
    )


async def cancel_active_jobs(session: AsyncSession, order_id: uuid.UUID, *, now: datetime) -> int:
    result = await session.execute(
        update(pricing_jobs)
        .where(pricing_jobs.c.order_id == order_id, pricing_jobs.c.state.in_(_ACTIVE))
        .values(state=JobState.CANCELLED.value, finished_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- stage clock (time in stage, lateness) ----------------------------------------------------------

def _interval(seconds: float) -> Any:
    return literal_column(f"interval '{float(seconds):.6f} seconds'")


async def list_by_stage_clock(session: AsyncSession, statuses: tuple[str, ...], slas: dict[str, float],
                              *, order: str, after: tuple[int, datetime, uuid.UUID] | None,
                              late: bool | None, limit: int) -> list[Any]:
    if after is None:  # the first page's statement depends on settings only: built once
        stmt = _first_clock_page(statuses, tuple(sorted(slas.items())), order, late, limit)
    else:
        stmt = stage_clock_query(statuses, slas, order=order, after=after, late=late, limit=limit)
    return [] if stmt is None else list((await session.execute(stmt)).all())


@functools.lru_cache(maxsize=64)
def _first_clock_page(statuses: tuple[str, ...], slas: tuple[tuple[str, float], ...], order: str,
                      late: bool | None, limit: int) -> Any:
    return stage_clock_query(statuses, dict(slas), order=order, after=None, late=late, limit=limit)


def stage_clock_query(statuses: tuple[str, ...], slas: dict[str, float], *, order: str,
                      after: tuple[int, datetime, uuid.UUID] | None, late: bool | None, limit: int) -> Any:
    """In-work orders by their stage clock: ``order="late"`` most overdue first (``due_at`` ascending),
    ``order="stage"`` by stage (workflow order) and longest in it first. ``late`` keeps only the late
    (True) or on-time (False) ones at the database's ``now()``. ``after`` is the last row's (stage rank, due_at, id) for
    "late", (stage rank, status_since, id) for "stage".

    One branch per status, each an ordered scan of the partial ``(status, status_since, id)`` index
    with its own LIMIT; within one status, due_at order is status_since order (one SLA), so the
    branches merge into the global order reading at most ``limit + 1`` entries each. Statuses, SLAs
    and the limit are literals (enum values and settings), so the first page has no parameters."""
    branches = []
    page_limit = int(limit) + 1
    for rank, status in enumerate(statuses):
        sla = slas.get(status) or stage_clock.NO_SLA_SECONDS
        branch = select(
            *SUMMARY_COLUMNS,
            (orders.c.status_since + _interval(sla)).label("due_at"),
            literal_column(str(rank)).label("stage_rank"),
        ).where(orders.c.status == literal_column(f"'{OrderStatus(status).value}'"))
        # The database's clock, not a parameter: the statement's text stays the same, so it is planned
        # once per connection (planning the branches over every month costs more than running them).
        if late is True:
            branch = branch.where(orders.c.status_since < func.now() - _interval(sla))
        elif late is False:
            branch = branch.where(orders.c.status_since >= func.now() - _interval(sla))
        if after is not None:
            after_rank, position, after_id = after
            if order == "late":
                since = position - timedelta(seconds=sla)
                branch = branch.where(tuple_(orders.c.status_since, orders.c.id) > tuple_(since, after_id))
            elif rank < after_rank:
                continue
            elif rank == after_rank:
                branch = branch.where(tuple_(orders.c.status_since, orders.c.id) > tuple_(position, after_id))
        branches.append(branch.order_by(orders.c.status_since, orders.c.id).limit(
            literal_column(str(page_limit))))
    if not branches:
        return None
    merged = union_all(*branches).subquery("by_clock")
    keys = ((merged.c.due_at, merged.c.id) if order == "late"
            else (merged.c.stage_rank, merged.c.status_since, merged.c.id))
    return select(merged).order_by(*keys).limit(literal_column(str(page_limit)))

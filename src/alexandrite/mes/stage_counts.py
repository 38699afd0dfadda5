"""Orders per in-work status and how many of them are late, read in one small statement.

Two tables are kept by the row trigger on ``production_orders`` (migration ``e4b5c6d7e8f9``):
``production_in_work`` mirrors the stage clock (status, status_since) of the orders in work, a few
thousand rows in one unpartitioned table, so a range of it is one index probe, not one per month;
``production_status_counts`` holds per in-work status ``n`` (orders in it) and ``late`` (those whose
``status_since`` is before ``late_before``), both exact whatever the clock. Lateness moves with the
clock, not with writes, so the SLA watchdog moves ``late_before`` up to ``now - SLA`` on each scan
(:func:`advance`) and adds the orders it passed. A reader (:func:`read`) adds only the orders between
``late_before`` and ``now - SLA``: the few that turned late since the last scan (or, when the SLA was
raised since, takes out those no longer late). Without the watchdog the figures stay exact, only the
range a reader counts grows.

Both statements are text built once per set of SLAs: the statuses and SLAs are literals (enum values
and settings), so each connection plans them once, and no per-request SQL construction is paid.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from alexandrite.contracts.order_status import OrderStatus

COUNTS = "production_status_counts"
CLOCKS = "production_in_work"  # the stage clock of the orders in work (kept by the same trigger)


@dataclass(frozen=True)
class StageCounts:
    """Orders per in-work status, the late ones among them, and when the next on-time order turns
    late (None: none will): the figures hold until then or until a status change."""

    counts: dict[str, int]
    late: dict[str, int]
    until: datetime | None


def _interval(seconds: float) -> str:
    return f"interval '{float(seconds):.6f} seconds'"


def _literal(status: str) -> str:
    return f"'{OrderStatus(status).value}'"  # an enum value: safe to inline


def _status_sql(status: str, sla: float | None) -> str:
    where = f"c.status = {_literal(status)}"
    if not sla:
        return f"SELECT c.status, c.n, 0::bigint AS late, NULL::timestamptz AS due FROM {COUNTS} c WHERE {where}"
    of_status = f"o.status = {_literal(status)}"
    bound = f"now() - {_interval(sla)}"
    # Only the branch taken runs: the orders that turned late since the watchdog's mark, or (SLA raised
    # since) those before the mark that are no longer late.
    late = (f"c.late + CASE WHEN c.late_before <= {bound} "
            f"THEN (SELECT count(*) FROM {CLOCKS} o WHERE {of_status} "
            f"AND o.status_since >= c.late_before AND o.status_since < {bound}) "
            f"ELSE -(SELECT count(*) FROM {CLOCKS} o WHERE {of_status} "
            f"AND o.status_since >= {bound} AND o.status_since < c.late_before) END")
    due = (f"(SELECT o.status_since + {_interval(sla)} FROM {CLOCKS} o WHERE {of_status} "
           f"AND o.status_since >= {bound} ORDER BY o.status_since LIMIT 1)")
    return f"SELECT c.status, c.n, {late} AS late, {due} AS due FROM {COUNTS} c WHERE {where}"


@functools.lru_cache(maxsize=32)
def _read_sql(statuses: tuple[str, ...], slas: tuple[tuple[str, float], ...]) -> Any:
    by_status = dict(slas)
    return text(" UNION ALL ".join(_status_sql(s, by_status.get(s)) for s in statuses))


def _key(slas: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((s, float(v)) for s, v in slas.items() if v))


async def read(session: AsyncSession, statuses: tuple[str, ...], slas: Mapping[str, float]) -> StageCounts:
    """The counts, late counts and next due time of ``statuses``: one statement, one small scan of the
    count table plus the index ranges the watchdog has not passed yet."""
    rows = (await session.execute(_read_sql(statuses, _key(slas)))).all()
    found = {status: (int(n), max(int(late), 0), due) for status, n, late, due in rows}
    dues = [due for _, _, due in found.values() if due is not None]
    return StageCounts(counts={s: found.get(s, (0, 0, None))[0] for s in statuses},
                       late={s: found.get(s, (0, 0, None))[1] for s in statuses},
                       until=min(dues) if dues else None)


def _advance_sql(status: str, sla: float) -> str:
    bound = f"CAST(:now AS timestamptz) - {_interval(sla)}"
    of_status = f"o.status = {_literal(status)}"
    return (f"UPDATE {COUNTS} c SET late_before = {bound}, late = c.late + CASE WHEN c.late_before <= {bound} "
            f"THEN (SELECT count(*) FROM {CLOCKS} o WHERE {of_status} "
            f"AND o.status_since >= c.late_before AND o.status_since < {bound}) "
            f"ELSE -(SELECT count(*) FROM {CLOCKS} o WHERE {of_status} "
            f"AND o.status_since >= {bound} AND o.status_since < c.late_before) END "
            f"WHERE c.status = {_literal(status)}")


async def advance(session: AsyncSession, statuses: tuple[str, ...], slas: Mapping[str, float],
                  now: datetime) -> None:
    """Move each of ``statuses``'s late mark to ``now - SLA``, adding (or taking out) the orders it passes.

    Call inside a transaction (the caller commits). The count table is locked first against writers
    (SHARE ROW EXCLUSIVE: status changes update it under ROW EXCLUSIVE), so every status change that
    already touched it has committed before the counts below take their snapshot, and every later one
    waits and then compares with the new mark: each order is counted exactly once. Nothing else is
    held when the lock is asked for, so this cannot deadlock with a status change."""
    marked = [s for s in statuses if slas.get(s)]
    if not marked:
        return
    await session.execute(text("SET LOCAL lock_timeout = '5s'"))
    await session.execute(text(f"LOCK TABLE {COUNTS} IN SHARE ROW EXCLUSIVE MODE"))
    for status in marked:
        await session.execute(text(_advance_sql(status, float(slas[status]))), {"now": now})

"""The operators' dashboard: orders in the chosen statuses, newest first, with counts per in-work status.

:func:`dashboard_page` is the one view function behind both the JSON API
(``GET /api/v1/production/orders``) and the HTML page (``GET /production/dashboard``); its dict
is the JSON body: ``{"items": [OrderSummary...], "next_cursor": str | None, "counts": {status: n},
"late_counts": {status: n}, "as_of": datetime}``; each item carries its stage clock (``status_since``,
``sla_seconds``, ``due_at``, ``time_in_stage_seconds``, ``late_by_seconds``, ``late``; see
orders/stage_clock.py). Besides newest first, the board lists by the stage clock: most overdue
first (``sort=late``) or by stage (``sort=stage``), optionally only the late or on-time orders.

The first page of each filter and the counts are cached in Redis (kit/cache.py), tagged with
the statuses they show; every committed status change drops the entries of its old and new
status (:func:`attach_cache`). What moves with the clock (time in stage, lateness) is added to
the page when it is served, so a cached page never shows an old age. Reads that miss the cache go
to the read replica when one is configured, or to the primary right after a change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic_core import from_json, to_json
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alexandrite.contracts.events import utcnow
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit import pagination
from alexandrite.kit.cache import Loader, PageCache
from alexandrite.kit.db import Database
from alexandrite.kit.errors import ApiError
from alexandrite.kit.settings import Settings
from alexandrite.mes import repository, stage_counts, views
from alexandrite.orders import stage_clock

CACHE_NAME = "mes-dashboard"
IN_WORK_STATUSES = views.IN_WORK_STATUSES
COUNTS_KEY = "counts"
CLOCK_TAG = "stage-clock"  # entries that go stale when an order turns late
SORTS = ("newest", "late", "stage")


def make_cache(settings: Settings) -> PageCache | None:
    return PageCache.from_settings(settings, CACHE_NAME)


def attach_cache(db: Database, cache: PageCache | None) -> None:
    """Drop cached pages after every status change committed through ``db`` (API, events, workers)."""
    if cache is None:
        return

    async def _changed(previous: str | None, status: str) -> None:
        await cache.invalidate([s for s in (previous, status) if s is not None])

    db.status_listeners.append(_changed)


def wanted_statuses(statuses: Iterable[OrderStatus | str]) -> tuple[str, ...]:
    """The filter's statuses, deduplicated in order; the in-work ones when none are given."""
    return tuple(dict.fromkeys(OrderStatus(s).value for s in statuses)) or IN_WORK_STATUSES


def _sessions(db: Database, fresh: bool) -> async_sessionmaker[AsyncSession]:
    return db.sessions if fresh else db.read_sessions


def _tally_json(tally: stage_counts.StageCounts) -> dict[str, Any]:
    return {"counts": tally.counts, "late_counts": tally.late, "until": tally.until}


async def _tally(session: AsyncSession, slas: Mapping[str, float]) -> dict[str, Any]:
    return _tally_json(await stage_counts.read(session, IN_WORK_STATUSES, slas))


async def _render(db: Database, fresh: bool, wanted: tuple[str, ...], after: Any, limit: int,
                  tally: dict[str, Any] | None, slas: Mapping[str, float]) -> bytes:
    async with _sessions(db, fresh)() as session:
        rows = await repository.list_orders(session, wanted, after, limit)
        if tally is None:
            tally = await _tally(session, slas)
    items, next_cursor = pagination.page(rows, limit)
    # Serialised straight from the summaries (the shape of schemas.OrderPage, which documents it).
    return to_json({"items": [views.list_item(r, slas) for r in items], "next_cursor": next_cursor, **tally})


async def _render_by_clock(db: Database, fresh: bool, wanted: tuple[str, ...], board: Board,
                           after: Any, tally: dict[str, Any] | None) -> bytes:
    statuses = tuple(s for s in IN_WORK_STATUSES if s in wanted)  # workflow order (stage ranks)
    async with _sessions(db, fresh)() as session:
        rows = await repository.list_by_stage_clock(session, statuses, dict(board.slas), order=board.sort,
                                                    after=after, late=board.late, limit=board.limit)
        if tally is None:
            tally = await _tally(session, board.slas)
    items = rows[:board.limit]
    next_cursor = views.encode_clock_cursor(board.sort, items[-1]) if len(rows) > board.limit else None
    return to_json({"items": [views.list_item(r, board.slas) for r in items], "next_cursor": next_cursor, **tally})


async def _fresh_entry(cache: PageCache, key: str, tags: tuple[str, ...], load: Loader,
                       now: datetime) -> dict[str, Any]:
    """A cached body carrying ``until`` (when its late counts go stale), parsed: dropped and loaded again
    once that time has passed. Lateness moves with the clock, so these entries are also tagged CLOCK_TAG."""
    for _ in range(2):
        page = dict(from_json(await cache.get_or_load(key, (*tags, CLOCK_TAG), load)))
        until = page.get("until")
        if not until or datetime.fromisoformat(until) > now:
            return page
        await cache.invalidate([CLOCK_TAG])
    return dict(from_json(await load(False)))


async def cached_tally(db: Database, cache: PageCache | None, slas: Mapping[str, float],
                       now: datetime) -> dict[str, Any]:
    """Orders per in-work status, the late ones, and when the next turns late (mes/stage_counts.py):
    cached like a page, dropped on every status change and once the next order turns late."""
    async def _load(fresh: bool) -> bytes:
        async with _sessions(db, fresh)() as session:
            return to_json(await _tally(session, slas))

    if cache is None:
        return dict(from_json(await _load(False)))
    return await _fresh_entry(cache, COUNTS_KEY, IN_WORK_STATUSES, _load, now)


@dataclass(frozen=True)
class Board:
    """What a board request asks for: the order (``newest``, ``late`` = most overdue first, ``stage``),
    the late filter (None: all), the page size and the stage SLAs (ALEX_SLA_SECONDS)."""

    slas: Mapping[str, float]
    sort: str = "newest"
    late: bool | None = None
    limit: int = 50

    def checked(self) -> Board:
        if self.sort not in SORTS:
            raise ApiError(422, "invalid_sort", f"sort must be one of: {', '.join(SORTS)}.",
                           details={"sort": self.sort})
        if self.late is not None and self.sort == "newest":
            return replace(self, sort="late")  # the late filter reads the stage clock: most overdue first
        return self


def _with_clock(page: dict[str, Any] | bytes, now: datetime) -> bytes:
    """Add what moves with the clock to a (possibly cached) page: each row's time in stage and lateness."""
    if isinstance(page, bytes):
        page = dict(from_json(page))
    for item in page["items"]:
        since = datetime.fromisoformat(item["status_since"])
        item.update(stage_clock.clock(since, item["sla_seconds"], now))
    page.pop("until", None)
    page["as_of"] = now
    return to_json(page)


async def dashboard_payload(db: Database, cache: PageCache | None, statuses: Iterable[OrderStatus | str],
                            cursor: str | None, limit: int, board: Board | None = None,
                            now: datetime | None = None) -> bytes:
    """The dashboard page as a JSON body (bytes). Raises ApiError 422 for a cursor we did not issue
    or a sort we do not know."""
    board = replace(board or Board(slas={}), limit=limit).checked()
    now = now or utcnow()
    wanted = wanted_statuses(statuses)
    if board.sort != "newest" and not set(wanted) <= set(IN_WORK_STATUSES):
        raise ApiError(422, "invalid_filter", "Late first, by stage and the late filter list orders in work only.",
                       details={"status": [s for s in wanted if s not in IN_WORK_STATUSES]})
    if board.sort != "newest":
        return _with_clock(await _clock_payload(db, cache, wanted, board, cursor, now), now)
    after = views.decode_cursor(cursor) if cursor else None
    if after is not None or cache is None:  # deeper pages are read each time; the counts come from the cache
        tally = await cached_tally(db, cache, board.slas, now) if cache is not None else None
        return _with_clock(await _render(db, False, wanted, after, limit, tally, board.slas), now)

    async def _load(fresh: bool) -> bytes:
        return await _render(db, fresh, wanted, None, limit, None, board.slas)

    key = f"page:{','.join(sorted(wanted))}:{limit}"
    return _with_clock(await _fresh_entry(cache, key, (*wanted, *IN_WORK_STATUSES), _load, now), now)


async def _clock_payload(db: Database, cache: PageCache | None, wanted: tuple[str, ...], board: Board,
                         cursor: str | None, now: datetime) -> dict[str, Any] | bytes:
    after = views.decode_clock_cursor(cursor, board.sort) if cursor else None
    if after is not None or board.late is not None or cache is None:
        # Deeper pages and the late filter (its rows change with the clock) are read each time.
        tally = await cached_tally(db, cache, board.slas, now) if cache is not None else None
        return await _render_by_clock(db, False, wanted, board, after, tally)

    async def _load(fresh: bool) -> bytes:
        return await _render_by_clock(db, fresh, wanted, board, None, None)

    # The order by due date does not move with the clock: a first page stays right until a status change
    # or until the next order turns late (the late counts it carries).
    key = f"{board.sort}:{','.join(sorted(wanted))}:{board.limit}"
    return await _fresh_entry(cache, key, (*wanted, *IN_WORK_STATUSES), _load, now)


async def dashboard_page(db: Database, cache: PageCache | None, statuses: Iterable[OrderStatus | str] = (),
                         cursor: str | None = None, limit: int = 50, board: Board | None = None,
                         now: datetime | None = None) -> dict[str, Any]:
    """The dashboard page as the JSON API's body, parsed (for server-rendered pages)."""
    return dict(from_json(await dashboard_payload(db, cache, statuses, cursor, limit, board, now)))

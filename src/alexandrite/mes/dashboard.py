"""The operators' dashboard: orders in the chosen statuses, newest first, with counts per in-work status.

:func:`dashboard_page` is the one view function behind both the JSON API
(``GET /api/v1/production/orders``) and the HTML page (``GET /production/dashboard``); its dict
is the JSON body: ``{"items": [OrderSummary...], "next_cursor": str | None, "counts": {status: n}}``.

The first page of each filter and the counts are cached in Redis (kit/cache.py), tagged with
the statuses they show; every committed status change drops the entries of its old and new
status (:func:`attach_cache`). Reads that miss the cache go to the read replica when one is
configured, or to the primary right after a change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit import pagination
from alexandrite.kit.cache import PageCache
from alexandrite.kit.db import Database
from alexandrite.kit.settings import Settings
from alexandrite.mes import repository, views

CACHE_NAME = "mes-dashboard"
IN_WORK_STATUSES = views.IN_WORK_STATUSES
COUNTS_KEY = "counts"


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


async def _counts(db: Database, fresh: bool) -> dict[str, int]:
    async with _sessions(db, fresh)() as session:
        return await repository.count_by_status(session, IN_WORK_STATUSES)


async def _render(db: Database, fresh: bool, wanted: tuple[str, ...], after: Any, limit: int,
                  counts: dict[str, int] | None) -> bytes:
    async with _sessions(db, fresh)() as session:
        rows = await repository.list_orders(session, wanted, after, limit)
        if counts is None:
            counts = await repository.count_by_status(session, IN_WORK_STATUSES)
    items, next_cursor = pagination.page(rows, limit)
    # Serialised straight from the summaries (the shape of schemas.OrderPage, which documents it).
    return to_json({"items": [views.list_item(r) for r in items], "next_cursor": next_cursor, "counts": counts})


async def cached_counts(db: Database, cache: PageCache | None) -> dict[str, int]:
    if cache is None:
        return await _counts(db, False)

    async def _load(fresh: bool) -> bytes:
        return json.dumps(await _counts(db, fresh)).encode()

    return dict(json.loads(await cache.get_or_load(COUNTS_KEY, IN_WORK_STATUSES, _load)))


async def dashboard_payload(db: Database, cache: PageCache | None, statuses: Iterable[OrderStatus | str],
                            cursor: str | None, limit: int) -> bytes:
    """The dashboard page as a JSON body (bytes). Raises ApiError 422 for a cursor we did not issue."""
    wanted = wanted_statuses(statuses)
    after = views.decode_cursor(cursor) if cursor else None
    if after is not None:  # deeper pages are read each time; the counts still come from the cache
        return await _render(db, False, wanted, after, limit, await cached_counts(db, cache))

    async def _load(fresh: bool) -> bytes:
        return await _render(db, fresh, wanted, None, limit, None)

    if cache is None:
        return await _load(False)
    key = f"page:{','.join(sorted(wanted))}:{limit}"
    return await cache.get_or_load(key, (*wanted, *IN_WORK_STATUSES), _load)


async def dashboard_page(db: Database, cache: PageCache | None, statuses: Iterable[OrderStatus | str] = (),
                         cursor: str | None = None, limit: int = 50) -> dict[str, Any]:
    """The dashboard page as the JSON API's body, parsed (for server-rendered pages)."""
    return dict(json.loads(await dashboard_payload(db, cache, statuses, cursor, limit)))

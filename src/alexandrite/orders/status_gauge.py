"""The orders-in-status gauge: a periodic count of live orders per status in one projection.

Only non-final statuses are counted (an index-only scan on the status index); CLOSED and
CANCELLED grow forever and are better read from the transition counters.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from sqlalchemy import Table, func, select

from alexandrite.contracts.order_status import TERMINAL, OrderStatus
from alexandrite.kit import metrics
from alexandrite.kit.db import Database

log = structlog.get_logger(__name__)
LIVE = [s.value for s in OrderStatus if s not in TERMINAL]


async def count_live_orders(db: Database, orders: Table) -> dict[str, int]:
    async with db.read_sessions() as session:
        rows = (
            await session.execute(
                select(orders.c.status, func.count()).where(orders.c.status.in_(LIVE)).group_by(orders.c.status)
            )
        ).all()
    counts = dict.fromkeys(LIVE, 0)
    counts.update({status: int(n) for status, n in rows})
    return counts


async def refresh(db: Database, orders: Table, service: str) -> dict[str, int]:
    counts = await count_live_orders(db, orders)
    for status, n in counts.items():
        metrics.ORDERS_IN_STATUS.labels(service, status).set(n)
    return counts


async def run_status_gauge(db: Database, orders: Table, service: str, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await refresh(db, orders, service)
        except Exception as error:  # database away: keep the last values, try again later
            log.warning("status_gauge_failed", error=repr(error)[:300])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)

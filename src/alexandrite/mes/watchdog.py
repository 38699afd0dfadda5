"""The SLA watchdog: finds orders past their stage SLA, exports them, reports each delay once.

Each scan (0) moves the boards' late counts up to now (mes/stage_counts.py), (1) counts the orders
now past each stage's SLA into ``alexandrite_orders_past_sla`` and (2) for every overdue (order, stage)
not reported yet inserts an ``order_delays`` row and emits ``mes.order.delayed`` through the outbox,
in one transaction. The row's primary key makes the report exactly-once per order and stage, however
many watchdogs run. It runs inside
the mes API process (``ALEX_RUN_WATCHDOG``) and as ``alexandrite watchdog``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.dialects.postgresql import insert

from alexandrite.contracts.events import DELIVERY_STAGE, OrderDelayed, order_delayed_envelope, utcnow
from alexandrite.contracts.order_status import IN_WORK
from alexandrite.kit import metrics
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.setting_groups import DAY
from alexandrite.kit.settings import Settings
from alexandrite.mes import stage_counts
from alexandrite.mes.sla import DELIVERY_RUNS_IN, StageSlas
from alexandrite.mes.tables import order_delays, production_orders

log = structlog.get_logger(__name__)
P = production_orders


@dataclass(frozen=True)
class Overdue:
    order_id: uuid.UUID
    stage: str
    status: str
    since: datetime
    seq: int
    owner_kind: str


def slas_from(settings: Settings) -> StageSlas:
    return StageSlas(dict(settings.sla.seconds), settings.sla.promised_delivery_days * DAY)


def _overdue_condition(slas: StageSlas, now: datetime) -> list[tuple[str, ColumnElement[bool]]]:
    """SQL: (stage, condition) pairs for every stage with an SLA."""
    pairs = [
        (status, and_(P.c.status == status, P.c.status_since < now - timedelta(seconds=seconds)))
        for status, seconds in slas.per_status.items()
    ]
    pairs.append((DELIVERY_STAGE, and_(P.c.status.in_([s.value for s in DELIVERY_RUNS_IN]),
                                       P.c.approved_at < now - timedelta(seconds=slas.delivery_seconds))))
    return pairs


async def scan(db: Database, slas: StageSlas, *, now: datetime | None = None, limit: int = 500) -> list[Overdue]:
    """One pass: move the boards' late counts up to now, export the gauge, report new delays; returns
    the delays reported now."""
    now = now or utcnow()
    async with UnitOfWork(db) as uow:
        await stage_counts.advance(uow.session, tuple(s.value for s in IN_WORK), slas.per_status, now)
        await uow.commit()
    reported: list[Overdue] = []
    found: list[Overdue] = []
    async with db.sessions() as session:
        for stage, condition in _overdue_condition(slas, now):
            count = (await session.execute(select(func.count()).select_from(P).where(condition))).scalar_one()
            metrics.ORDERS_PAST_SLA.labels(stage).set(int(count))
            if not count:
                continue
            since = P.c.approved_at if stage == DELIVERY_STAGE else P.c.status_since
            rows = (
                await session.execute(
                    select(P.c.id, P.c.status, since.label("since"), P.c.seq, P.c.owner_kind)
                    .where(condition)
                    .where(~select(order_delays.c.order_id)
                           .where(order_delays.c.order_id == P.c.id, order_delays.c.stage == stage).exists())
                    .limit(limit)
                )
            ).all()
            found += [Overdue(r.id, stage, r.status, r.since, r.seq, r.owner_kind) for r in rows]
    for item in found:
        if await report(db, slas, item, now):
            reported.append(item)
    return reported


async def report(db: Database, slas: StageSlas, item: Overdue, now: datetime) -> bool:
    """Record the delay and emit its event, once per order and stage; False if already reported."""
    sla = slas.for_stage(item.stage) or 0.0
    delay = OrderDelayed(stage=item.stage, status=item.status, since=item.since, sla_seconds=sla,  # type: ignore[arg-type]
                         detected_at=now, new_eta=slas.new_eta(item.status, now), owner_kind=item.owner_kind)
    async with UnitOfWork(db) as uow:
        inserted = (
            await uow.session.execute(
                insert(order_delays)
                .values(order_id=item.order_id, stage=item.stage, since=item.since, sla_seconds=sla,
                        detected_at=now, new_eta=delay.new_eta)
                .on_conflict_do_nothing()
                .returning(order_delays.c.order_id)
            )
        ).scalar_one_or_none()
        if inserted is None:
            return False
        uow.emit(order_delayed_envelope(order_id=item.order_id, seq=item.seq, delay=delay))
        uow.after_commit(lambda: metrics.DELAYS_DETECTED.labels(item.stage).inc())
        await uow.commit()
    log.warning("order_delayed", order_id=str(item.order_id), stage=item.stage, status=item.status,
                sla_seconds=sla, since=item.since.isoformat())
    return True


async def run_watchdog(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    slas = slas_from(settings)
    while not stop.is_set():
        try:
            await scan(db, slas)
            metrics.WATCHDOG_RUNS.labels("ok").inc()
            metrics.WATCHDOG_LAST_RUN.set_to_current_time()
        except Exception as error:  # database away: try again at the next interval
            metrics.WATCHDOG_RUNS.labels("error").inc()
            log.warning("sla_watchdog_failed", error=repr(error)[:300])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.sla.watchdog_interval_seconds)

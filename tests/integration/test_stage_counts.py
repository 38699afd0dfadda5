"""The boards' counts and late counts per in-work status (mes/stage_counts.py) against a real count of
``production_orders``: through inserts, status changes, stage clocks moved, deletes, the watchdog's
mark moved forward and back, SLAs raised and lowered, concurrent status changes while the mark moves,
and a month archived and restored."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.migrations import create_databases, drop_databases, upgrade
from alexandrite.kit.settings import Settings
from alexandrite.mes import partitions, stage_counts, watchdog
from alexandrite.mes.views import IN_WORK_STATUSES

S = OrderStatus
HOUR = 3600.0
SLAS = {S.MANUFACTURING_APPROVED.value: 48 * HOUR, S.MANUFACTURING_STARTED.value: 168 * HOUR,
        S.MANUFACTURING_COMPLETED.value: 24 * HOUR, S.PACKAGING.value: 24 * HOUR}
OTHER = (S.PRICE_CALCULATED.value, S.SHIPPED.value, S.CANCELLED.value)


@pytest.fixture(scope="module")
async def clock_db(settings: Settings) -> AsyncIterator[Database]:
    """A MES database of this module's own: the figures are compared with the whole table."""
    own = settings.replace(db_prefix=f"{settings.db.prefix}_clk")
    await create_databases(own, ("mes",))
    try:
        await asyncio.to_thread(upgrade, "mes", own)
        database = Database(own.database_url("mes"), pool_size=12)
        yield database
        await database.dispose()
    finally:
        await drop_databases(own, ("mes",))


async def _empty(db: Database) -> None:
    async with db.sessions.begin() as session:
        await session.execute(text("DELETE FROM production_orders"))
        await session.execute(text("DELETE FROM order_delays"))
        await session.execute(text("UPDATE production_status_counts SET late = 0, late_before = '-infinity'"))


def _ago(hours: float) -> datetime:
    # Half-hour offsets: never within a few minutes of an SLA's bound, so the clock's progress during
    # a test cannot move an order across it.
    return datetime.now(UTC) - timedelta(hours=round(hours * 2) / 2 + 0.25)


async def insert(db: Database, status: str, since: datetime, created: datetime | None = None) -> uuid.UUID:
    order_id = uuid.uuid4()
    async with db.sessions.begin() as session:
        await session.execute(text(
            "INSERT INTO production_orders (id, alloy, status, seq, owner_kind, owner_name, created_at, updated_at, "
            "status_since) VALUES (:id, 'silver_925', :status, 7, 'customer', 'Ada', :created, :since, :since)"),
            {"id": order_id, "status": status, "since": since, "created": created or since})
    return order_id


async def move(db: Database, order_id: uuid.UUID, status: str | None, since: datetime) -> None:
    async with db.sessions.begin() as session:
        await session.execute(text("UPDATE production_orders SET status = coalesce(:status, status), "
                                   "status_since = :since WHERE id = :id"),
                              {"id": order_id, "status": status, "since": since})


async def real(db: Database, slas: dict[str, float]) -> tuple[dict[str, int], dict[str, int]]:
    """What a count of the whole table says, now."""
    async with db.sessions() as session:
        now = (await session.execute(text("SELECT now()"))).scalar_one()
        rows = (await session.execute(text("SELECT status, status_since FROM production_orders "
                                           "WHERE status = ANY(:s)"), {"s": list(IN_WORK_STATUSES)})).all()
    counts = {s: 0 for s in IN_WORK_STATUSES}
    late = {s: 0 for s in IN_WORK_STATUSES}
    for status, since in rows:
        counts[status] += 1
        sla = slas.get(status)
        late[status] += bool(sla and since < now - timedelta(seconds=sla))
    return counts, late


async def kept(db: Database, slas: dict[str, float]) -> tuple[dict[str, int], dict[str, int]]:
    async with db.read_sessions() as session:
        found = await stage_counts.read(session, IN_WORK_STATUSES, slas)
    return found.counts, found.late


async def advance(db: Database, slas: dict[str, float], at: datetime) -> None:
    async with UnitOfWork(db) as uow:
        await stage_counts.advance(uow.session, IN_WORK_STATUSES, slas, at)
        await uow.commit()


async def assert_exact(db: Database, slas: dict[str, float] = SLAS) -> None:
    assert await kept(db, slas) == await real(db, slas)
    async with db.sessions() as session:  # the stage-clock mirror holds exactly the orders in work
        mirrored = set((await session.execute(text(
            "SELECT order_id, status, status_since FROM production_in_work"))).all())
        live = set((await session.execute(text(
            "SELECT id, status, status_since FROM production_orders WHERE status = ANY(:s)"),
            {"s": list(IN_WORK_STATUSES)})).all())
    assert mirrored == live


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_figures_stay_exact_through_a_random_walk(clock_db: Database, seed: int) -> None:
    db = clock_db
    await _empty(db)
    rng = random.Random(seed)
    statuses = list(IN_WORK_STATUSES) + list(OTHER)
    orders: list[uuid.UUID] = []
    for step in range(120):
        op = rng.random()
        if op < 0.35 or not orders:
            orders.append(await insert(db, rng.choice(statuses), _ago(rng.uniform(0, 400))))
        elif op < 0.6:
            await move(db, rng.choice(orders), rng.choice(statuses), _ago(rng.uniform(0, 400)))
        elif op < 0.7:
            await move(db, rng.choice(orders), None, _ago(rng.uniform(0, 400)))  # the stage clock alone
        elif op < 0.75:
            gone = orders.pop(rng.randrange(len(orders)))
            async with db.sessions.begin() as session:
                await session.execute(text("DELETE FROM production_orders WHERE id = :id"), {"id": gone})
        elif op < 0.9:
            # The watchdog's mark, moved to any time: usually now, sometimes behind or ahead of it.
            await advance(db, SLAS, datetime.now(UTC) + timedelta(hours=rng.choice([0, 0, 0, -30, -200, 5, 90])))
        if step % 10 == 9:
            await assert_exact(db)
            # Other SLAs than the mark was set with (raised, lowered, none for a status) read right too.
            await assert_exact(db, {**SLAS, S.MANUFACTURING_APPROVED.value: 300 * HOUR,
                                    S.PACKAGING.value: 2 * HOUR, S.MANUFACTURING_STARTED.value: 0})
    assert sum((await kept(db, SLAS))[1].values()) > 0  # the walk did make late orders


async def test_status_changes_while_the_mark_moves_are_each_counted_once(clock_db: Database) -> None:
    db = clock_db
    await _empty(db)
    approved, started = S.MANUFACTURING_APPROVED.value, S.MANUFACTURING_STARTED.value
    # Orders just around the APPROVED bound (48 h): the watchdog's moves pass over them while they move.
    ids = [await insert(db, approved, _ago(46 + (i % 8) * 0.5)) for i in range(96)]

    async def operator(mine: list[uuid.UUID]) -> None:
        for order_id in mine:
            await move(db, order_id, started, datetime.now(UTC))

    async def watchdog_loop() -> None:
        for k in range(60):
            await advance(db, SLAS, datetime.now(UTC) + timedelta(hours=(k % 6) * 0.5))
            await asyncio.sleep(0)

    await asyncio.gather(watchdog_loop(), *(operator(ids[i::6]) for i in range(6)))
    await advance(db, SLAS, datetime.now(UTC))
    await assert_exact(db)
    counts, late = await kept(db, SLAS)
    assert counts[approved] == 0 and counts[started] == 96 and late[approved] == 0


async def test_the_watchdog_moves_the_mark_and_the_figures_hold(clock_db: Database, settings: Settings) -> None:
    db = clock_db
    await _empty(db)
    approved = S.MANUFACTURING_APPROVED.value
    for hours in (1, 30, 47, 49, 60, 200):
        await insert(db, approved, _ago(hours))
    before = await kept(db, SLAS)
    slas = watchdog.slas_from(settings)
    assert {s: slas.per_status[s] for s in IN_WORK_STATUSES} == SLAS  # the defaults this module assumes
    await watchdog.scan(db, slas)
    async with db.sessions() as session:
        mark = dict((await session.execute(text(
            "SELECT status, late_before FROM production_status_counts"))).all())
        late_column = dict((await session.execute(text("SELECT status, late FROM production_status_counts"))).all())
    bound = datetime.now(UTC) - timedelta(seconds=SLAS[approved])
    assert abs((mark[approved] - bound).total_seconds()) < 60
    assert late_column[approved] == 3  # 49 h, 60 h and 200 h: counted into the column, not per read
    assert await kept(db, SLAS) == before
    await assert_exact(db)


async def test_archiving_and_restoring_a_month_keeps_late_counts(clock_db: Database) -> None:
    db = clock_db
    await _empty(db)
    month = partitions.add_months(partitions.month_start(date.today()), -14)
    async with db.engine.begin() as conn:
        await partitions.ensure_months(conn, month, month)
    created = datetime.combine(month, datetime.min.time(), UTC) + timedelta(days=3)
    for hours in (3, 70, 500):
        await insert(db, S.MANUFACTURING_APPROVED.value, _ago(hours), created=created)
    await insert(db, S.PACKAGING.value, _ago(30))
    await advance(db, SLAS, datetime.now(UTC))
    await assert_exact(db)
    async with db.engine.begin() as conn:
        await partitions.archive_month(conn, month)
    await assert_exact(db)
    assert (await kept(db, SLAS))[0][S.MANUFACTURING_APPROVED.value] == 0
    async with db.engine.begin() as conn:
        await partitions.restore_month(conn, month)
    await assert_exact(db)
    assert (await kept(db, SLAS))[1][S.MANUFACTURING_APPROVED.value] == 2

"""A consumed order event: one statement in its turn, four otherwise. The claim reads the order's row as
committed, whatever another consumer committed while this one waited for the order's lock; duplicates and
gaps through the broker. Real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable

import aio_pika
import pytest
from sqlalchemy import func, select, text

from alexandrite.contracts.events import EVENTS_EXCHANGE, Envelope, parse_status_change
from alexandrite.crm import handlers
from alexandrite.crm.tables import inbox, orders
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.settings import Settings
from alexandrite.orders.sequencing import accept_claimed, claim_event
from tests.integration.test_crm_events import feed, pipeline, projection


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url("crm"), pool_size=3)
    yield database
    await database.dispose()


async def _waiting_for_the_order_lock(db: Database) -> None:
    """Until a transaction of this database waits for an advisory lock (the claim behind the holder)."""
    async with db.read_sessions() as session:
        for _ in range(400):
            waiting = (await session.execute(text(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                " WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"
            ))).scalar_one()
            if waiting:
                return
            await asyncio.sleep(0.025)
    raise AssertionError("the second consumer never waited for the order's lock")


async def _hold_and_apply(db: Database, event: Envelope, behind: Awaitable[str]) -> str:
    """Apply ``event`` as one consumer would, but commit only once ``behind`` waits for the order's lock."""
    task = None
    async with UnitOfWork(db) as uow:
        consumed = await claim_event(uow, orders, event)
        assert consumed is not None

        async def apply(env: Envelope) -> None:
            await handlers.apply_event(uow, env, parse_status_change(env))

        outcome = await accept_claimed(uow, event, consumed, current_seq=_never, apply=apply)
        task = asyncio.ensure_future(behind)
        await _waiting_for_the_order_lock(db)
        await uow.commit()
    return outcome + "/" + await task


async def _never(_: uuid.UUID) -> int:
    raise AssertionError("nothing is parked here")


async def test_an_event_behind_a_committing_predecessor_applies_in_order(db: Database) -> None:
    """The claim's snapshot predates the predecessor's commit; the row it locks is the committed one."""
    order_id = uuid.uuid4()
    events = pipeline(order_id)
    for event in events[:3]:
        assert await feed(db, event) == "ok"
    # seq 4 is being applied (lock held, row written) when seq 5 arrives at another consumer.
    assert await _hold_and_apply(db, events[3], feed(db, events[4])) == "ok/ok"  # not "deferred"
    row, history = await projection(db, order_id)
    assert row.status == "PRICE_CALCULATED" and row.seq == 5
    assert [h.seq for h in history] == [1, 2, 3, 4, 5]


async def test_an_event_behind_its_order_being_created_applies_in_order(db: Database) -> None:
    """A row created after the claim's snapshot is invisible to it: the claim reads again, never parks."""
    order_id = uuid.uuid4()
    events = pipeline(order_id)
    assert await _hold_and_apply(db, events[0], feed(db, events[1])) == "ok/ok"
    row, history = await projection(db, order_id)
    assert row.status == "FILE_UPLOADED" and row.seq == 2 and len(history) == 2
    async with db.sessions() as session:
        pending = (await session.execute(select(func.count()).select_from(inbox).where(
            inbox.c.order_id == order_id, inbox.c.applied_at.is_(None)))).scalar_one()
    assert pending == 0


async def test_a_handler_that_writes_no_order_row_still_marks_its_event(db: Database) -> None:
    """The inbox mark falls back to a statement of its own when no order write carried it."""
    order_id = uuid.uuid4()
    events = pipeline(order_id)
    async with UnitOfWork(db) as uow:
        consumed = await claim_event(uow, orders, events[0])
        assert consumed is not None and consumed.seq is None

        async def nothing(_: Envelope) -> None:
            return None

        assert await accept_claimed(uow, events[0], consumed, current_seq=_never, apply=nothing) == "ok"
        await uow.commit()
    async with db.sessions() as session:
        outcome = (await session.execute(select(inbox.c.outcome).where(
            inbox.c.event_id == events[0].event_id))).scalar_one()
    assert outcome == "applied"


async def test_duplicates_and_a_gap_through_the_broker(settings: Settings, db: Database) -> None:
    """The running consumer: a redelivered event is a no-op, an early one waits and applies when the gap fills."""
    from asgi_lifespan import LifespanManager

    from alexandrite.crm.app import create_app

    app = create_app(settings.replace(**{"run_relay": False}))
    order_id = uuid.uuid4()
    events = pipeline(order_id, name="Gap Test")

    async def until(check: object) -> tuple[object, list[object]]:
        for _ in range(400):
            row, history = await projection(db, order_id)
            if callable(check) and check(row, history):
                return row, history
            await asyncio.sleep(0.025)
        raise AssertionError("the projection never got there")

    async def inbox_rows() -> dict[int, str | None]:
        async with db.sessions() as session:
            rows = (await session.execute(select(inbox.c.seq, inbox.c.outcome).where(
                inbox.c.order_id == order_id))).all()
        return {r.seq: r.outcome for r in rows}

    async with LifespanManager(app):
        connection = await aio_pika.connect(settings.broker.url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(EVENTS_EXCHANGE)

            async def publish(event: Envelope) -> None:
                await exchange.publish(aio_pika.Message(event.model_dump_json().encode(),
                                                        message_id=str(event.event_id),
                                                        headers={"event_type": event.type}),
                                       routing_key=event.type, mandatory=True)

            await publish(events[0])
            await publish(events[0])  # delivered twice
            await until(lambda row, history: row is not None and row.seq == 1)
            await publish(events[2])  # SUBMITTED before FILE_UPLOADED: parked
            await publish(events[2])
            for _ in range(400):
                if 3 in await inbox_rows():
                    break
                await asyncio.sleep(0.025)
            assert await inbox_rows() == {1: "applied", 3: None}
            row, history = await projection(db, order_id)
            assert row.seq == 1 and len(history) == 1
            await publish(events[1])  # fills the gap: 2 and the parked 3 apply
            await publish(events[0])  # and the first, once more
            row, history = await until(lambda row, history: row is not None and row.seq == 3)
            assert row.status == "SUBMITTED" and [h.seq for h in history] == [1, 2, 3]
            assert await inbox_rows() == {1: "applied", 2: "applied", 3: "applied"}


async def test_an_event_in_its_turn_is_one_statement(settings: Settings) -> None:
    """A creation and a transition in their turn: one statement each on the raw pool, no BEGIN, no COMMIT. A
    duplicate, after the one statement found it applied, takes the general path (BEGIN, the claim, COMMIT);
    none through SQLAlchemy's statement path.

    Counted by asyncpg's query logs of the one pooled connection of each pool."""
    from sqlalchemy import event

    database = Database(settings.database_url("crm"), pool_size=1)
    try:
        async with UnitOfWork(database) as uow:  # the one pooled connection, to listen to
            conn = await uow.driver()
        general: list[str] = []
        conn.add_query_logger(lambda logged: general.append(logged.query))
        raw: list[str] = []
        async with (await database.raw()).acquire() as raw_conn:
            raw_conn.add_query_logger(lambda logged: raw.append(logged.query))
        through_sqlalchemy: list[str] = []

        def _seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            through_sqlalchemy.append(statement)

        event.listen(database.engine.sync_engine, "before_cursor_execute", _seen)
        order_id = uuid.uuid4()
        events = pipeline(order_id)
        assert await feed(database, events[0]) == "ok"  # a creation
        assert await feed(database, events[1]) == "ok"  # a transition in its turn
        assert await feed(database, events[1]) == "duplicate"
        for _ in range(5):  # asyncpg calls its query loggers soon after each query, not during it
            await asyncio.sleep(0)
        kinds = ["claim" if "claimed AS" in q else "write" if "UPDATE inbox" in q else q.strip(" ;")
                 for q in general]
        assert kinds == ["BEGIN", "claim", "COMMIT"], general
        assert len(raw) == 3 and all("inbox_parked" in q for q in raw), raw
        assert 'INSERT INTO "orders"' in raw[0] and all('UPDATE "orders"' in q for q in raw[1:]), raw
        assert through_sqlalchemy == []
        row, history = await projection(database, order_id)
        assert row.status == "FILE_UPLOADED" and row.seq == 2 and [h.seq for h in history] == [1, 2]
        async with database.sessions() as session:
            marks = (await session.execute(select(inbox.c.seq, inbox.c.outcome, inbox.c.applied_at.is_not(None))
                                           .where(inbox.c.order_id == order_id).order_by(inbox.c.seq))).all()
        assert [tuple(m) for m in marks] == [(1, "applied", True), (2, "applied", True)]
    finally:
        await database.dispose()

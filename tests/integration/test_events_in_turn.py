"""An order event in its turn applied by one statement (orders/in_turn.py): it writes what the general
path writes, it leaves to the general path whatever it cannot apply, and no parked successor is left behind,
neither one parked while the statement waited for the order's lock nor one left by a delivery that stopped
after applying its event. Real PostgreSQL (the CRM's and production's databases)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Table, select, text

from alexandrite.contracts.events import Envelope, StatusChanged, parse_status_change, status_envelope
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.crm import handlers
from alexandrite.crm.consumers import CANNOT_APPLY, PRODUCERS, handle_event
from alexandrite.crm.domain import SERVICE
from alexandrite.crm.tables import inbox, order_history, orders
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.messaging.consumer import PermanentError
from alexandrite.kit.settings import Settings
from alexandrite.orders.events import consume_order_event
from alexandrite.orders.in_turn import apply_in_turn
from alexandrite.orders.sequencing import accept_claimed, claim_event
from tests.integration.test_crm_events import delivery, feed, pipeline, projection

S = OrderStatus


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url("crm"), pool_size=3)
    yield database
    await database.dispose()


async def general_path(db: Database, envelope: Envelope) -> str:
    """What the CRM's consumer did before the one statement: always a unit of work."""
    return await consume_order_event(db, delivery(envelope), service=SERVICE, producers=PRODUCERS, orders=orders,
                                     apply=handlers.apply_event, cannot_apply=CANNOT_APPLY)


async def written(db: Database, order_id: uuid.UUID) -> dict[str, Any]:
    """What the order's events left in the CRM's database, without ids and write times."""
    async with db.sessions() as session:
        row = (await session.execute(select(orders).where(orders.c.id == order_id))).one()._asdict()
        history = (await session.execute(
            select(order_history.c.seq, order_history.c.status, order_history.c.previous_status,
                   order_history.c.at, order_history.c.by)
            .where(order_history.c.order_id == order_id).order_by(order_history.c.seq))).all()
        marks = (await session.execute(
            select(inbox.c.seq, inbox.c.type, inbox.c.outcome, inbox.c.applied_at.is_not(None), inbox.c.envelope)
            .where(inbox.c.order_id == order_id).order_by(inbox.c.seq))).all()
    for volatile in ("id", "updated_at"):
        row.pop(volatile)
    return {"row": row, "history": [tuple(h) for h in history],
            "inbox": [(m[0], m[1], m[2], m[3], m[4]["payload"]) for m in marks]}


async def test_in_turn_writes_what_the_general_path_writes(db: Database) -> None:
    """Two orders with the same events, one through the general path only: rows, history lines and inbox
    marks are the same, column for column (JSON nulls included)."""
    created = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    general, in_turn = uuid.uuid4(), uuid.uuid4()
    for order_id, consume in ((general, general_path), (in_turn, lambda d, e: feed(d, e))):
        assert [await consume(db, event) for event in pipeline(order_id, created_at=created)] == ["ok"] * 5
    assert await written(db, general) == await written(db, in_turn)
    assert (await written(db, in_turn))["row"]["status"] == "PRICE_CALCULATED"


async def test_what_one_statement_cannot_apply_goes_the_general_way(db: Database) -> None:
    """A gap, an order it does not know, a producer that did not own the status, a status the event did not
    leave: the statement writes nothing and the general path parks, refuses or applies as before."""
    order_id = uuid.uuid4()
    events = pipeline(order_id)
    assert await feed(db, events[0]) == "ok"
    unknown = pipeline(uuid.uuid4())[1]
    for event in (events[2], unknown):  # seq 3 before seq 2: parked; seq 2 of an order never created: parked
        assert await apply_in_turn(db, orders, event, parse_status_change(event), handlers.in_turn(
            event, parse_status_change(event)), service=SERVICE) is None
        assert await feed(db, event) == "deferred"
    assert await feed(db, events[1]) == "ok"  # fills the gap; the parked seq 3 follows at once
    assert (await projection(db, order_id))[0].seq == 3
    forged = status_envelope(producer="shop", order_id=order_id, seq=4, change=StatusChanged(
        status=S.PRICE_CALCULATING, previous_status=S.SUBMITTED, actor="shop:forged"))
    with pytest.raises(PermanentError, match="shop moved an order in SUBMITTED"):
        await feed(db, forged)
    claims_other_start = status_envelope(producer="mes", order_id=order_id, seq=4, change=StatusChanged(
        status=S.PRICE_CALCULATING, previous_status=S.PRICE_CALCULATION_FAILED, actor="mes:pricing"))
    assert await apply_in_turn(db, orders, claims_other_start, parse_status_change(claims_other_start),
                               handlers.in_turn(claims_other_start, parse_status_change(claims_other_start)),
                               service=SERVICE) is None
    assert await feed(db, claims_other_start) == "ok"  # the general path goes by the row's own status
    row, history = await projection(db, order_id)
    assert row.status == "PRICE_CALCULATING" and row.seq == 4
    assert [(h.seq, h.previous_status) for h in history][-1] == (4, "SUBMITTED")


async def _waiting_for_the_order_lock(db: Database) -> None:
    async with db.read_sessions() as session:
        for _ in range(400):
            if (await session.execute(text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                    " WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"
            ))).scalar_one():
                return
            await asyncio.sleep(0.025)
    raise AssertionError("the statement never waited for the order's lock")


async def test_a_successor_parked_while_the_statement_waited_is_applied(db: Database) -> None:
    """seq 4 arrives first and is being parked (the order's lock held) when seq 3 arrives: the statement
    for seq 3 waits, and its snapshot predates seq 4's inbox row. The count of parked events is taken once
    the lock is its (inbox_parked()), so seq 4 is applied right after seq 3, not left waiting."""
    order_id = uuid.uuid4()
    events = pipeline(order_id)
    for event in events[:2]:
        assert await feed(db, event) == "ok"
    async with UnitOfWork(db) as uow:
        consumed = await claim_event(uow, orders, events[3])
        assert consumed is not None and consumed.seq == 2

        async def never(_: Any) -> Any:
            raise AssertionError("a parked event applies nothing")

        assert await accept_claimed(uow, events[3], consumed, current_seq=never, apply=never) == "deferred"
        behind = asyncio.ensure_future(feed(db, events[2]))
        await _waiting_for_the_order_lock(db)
        await uow.commit()
    assert await behind == "ok"
    row, history = await projection(db, order_id)
    assert row.status == "PRICE_CALCULATING" and row.seq == 4 and [h.seq for h in history] == [1, 2, 3, 4]
    assert await pending(db, order_id) == 0


async def pending(db: Database, order_id: uuid.UUID, table: Table = inbox) -> int:
    async with db.sessions() as session:
        return len((await session.execute(select(table.c.seq).where(
            table.c.order_id == order_id, table.c.applied_at.is_(None)))).all())


async def test_a_redelivery_applies_what_a_stopped_delivery_left_parked(db: Database) -> None:
    """The statement applied seq 3 and counted seq 4 parked, then the delivery stopped (a crash) before it
    applied seq 4. The broker delivers seq 3 again: a duplicate, which applies seq 4."""
    order_id = uuid.uuid4()
    events = pipeline(order_id)
    for event in events[:2]:
        assert await feed(db, event) == "ok"
    assert await feed(db, events[3]) == "deferred"
    change = parse_status_change(events[2])
    applied = await apply_in_turn(db, orders, events[2], change, handlers.in_turn(events[2], change),
                                  service=SERVICE)
    assert applied is not None and applied.parked == 1  # ... and the delivery stops here
    assert (await projection(db, order_id))[0].seq == 3 and await pending(db, order_id) == 1
    assert await handle_event(db, delivery(events[2])) == "duplicate"
    row, history = await projection(db, order_id)
    assert row.status == "PRICE_CALCULATING" and row.seq == 4 and [h.seq for h in history] == [1, 2, 3, 4]
    assert await pending(db, order_id) == 0


# --- an order's first event ------------------------------------------------------------------------

async def test_a_new_order_is_one_round_trip_and_its_redelivery_writes_nothing(settings: Settings) -> None:
    """The INITIATED event writes the order's row, its history line and the event's inbox mark in ONE
    statement on the plain pool (no BEGIN, no COMMIT); delivered again, it is a duplicate and adds nothing."""
    database = Database(settings.database_url("crm"), pool_size=1)
    try:
        order_id = uuid.uuid4()
        first = pipeline(order_id)[0]
        queries: list[str] = []
        async with (await database.raw()).acquire() as conn:  # the plain pool's one connection
            conn.add_query_logger(lambda logged: queries.append(logged.query))
        assert await feed(database, first) == "ok"
        for _ in range(5):  # asyncpg calls its query loggers soon after each query, not during it
            await asyncio.sleep(0)
        assert len(queries) == 1 and queries[0].startswith("WITH locked") and 'INSERT INTO "orders"' in queries[0]
        row, history = await projection(database, order_id)
        assert (row.status, row.seq, row.owner_name, row.alloy) == ("INITIATED", 1, "Jane Test", "gold_750")
        assert [(h.seq, h.status, h.previous_status) for h in history] == [(1, "INITIATED", None)]
        assert await pending(database, order_id) == 0
        assert await feed(database, first) == "duplicate"
        again, history_again = await projection(database, order_id)
        assert again == row and len(history_again) == 1
    finally:
        await database.dispose()


async def test_successors_parked_before_the_order_was_known_follow_its_creation(db: Database) -> None:
    """Its upload and submission arrive before the order's first event: both are parked; the creation
    statement counts them and they are applied at once, in order."""
    order_id = uuid.uuid4()
    events = pipeline(order_id)
    assert [await feed(db, e) for e in (events[2], events[1])] == ["deferred", "deferred"]
    change = parse_status_change(events[0])
    applied = await apply_in_turn(db, orders, events[0], change, handlers.in_turn(events[0], change), service=SERVICE)
    assert applied is not None and applied.parked == 2  # the delivery stops here: they wait for a redelivery
    assert (await projection(db, order_id))[0].seq == 1
    assert await feed(db, events[0]) == "duplicate"  # ... which applies them
    row, history = await projection(db, order_id)
    assert (row.status, row.seq) == ("SUBMITTED", 3) and [h.seq for h in history] == [1, 2, 3]
    assert await pending(db, order_id) == 0
    other = uuid.uuid4()  # the consumer itself applies them right after the creation
    later = pipeline(other)
    assert await feed(db, later[1]) == "deferred"
    assert await feed(db, later[0]) == "ok"
    assert (await projection(db, other))[0].seq == 2 and await pending(db, other) == 0


async def test_the_first_event_delivered_twice_at_once_creates_one_order(db: Database) -> None:
    """Two deliveries of the same INITIATED event race: the order's lock makes one wait, and what the first
    committed meanwhile (the row, the inbox row) stops the second from writing anything."""
    for _ in range(5):
        order_id = uuid.uuid4()
        first = pipeline(order_id)[0]
        outcomes = await asyncio.gather(feed(db, first), feed(db, first))
        assert sorted(outcomes) == ["duplicate", "ok"]
        row, history = await projection(db, order_id)
        assert row.seq == 1 and len(history) == 1


async def test_a_first_event_for_a_known_order_writes_nothing(db: Database) -> None:
    """An INITIATED event with a new id for an order the service already has (a replay): the statement
    finds the row and writes nothing; the general path calls it stale."""
    order_id = uuid.uuid4()
    events = pipeline(order_id)
    assert await feed(db, events[0]) == "ok"
    replay = events[0].model_copy(update={"event_id": uuid.uuid4()})
    change = parse_status_change(replay)
    assert await apply_in_turn(db, orders, replay, change, handlers.in_turn(replay, change), service=SERVICE) is None
    assert await feed(db, replay) == "stale"
    assert len((await projection(db, order_id))[1]) == 1

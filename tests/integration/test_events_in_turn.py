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

"""Pooled connections: one that died while idle is replaced before use (the idle ping); a transaction left
idle is ended by the server after the configured limit."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from alexandrite.kit import db as kit_db
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.settings import Settings


async def test_a_connection_killed_while_idle_is_replaced(settings: Settings) -> None:
    db = Database(settings.database_url("mes"), pool_size=1)
    admin = Database(settings.database_url("mes"), pool_size=1)
    try:
        async with db.read_sessions() as session:
            first = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with admin.read_sessions() as session:
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        await asyncio.sleep(kit_db.PING_AFTER_IDLE_SECONDS + 0.2)
        async with db.read_sessions() as session:  # no error: the dead connection was swapped
            second = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert second != first
    finally:
        await db.dispose()
        await admin.dispose()


async def test_the_idle_ping_is_one_round_trip(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection taken after a second idle is pinged with one empty query on the driver, not with the
    adapter's ping (BEGIN, the query, ROLLBACK: three round trips); one taken again at once is not pinged."""
    db = Database(settings.database_url("mes"), pool_size=1)
    adapter_pings: list[object] = []
    monkeypatch.setattr(db.engine.sync_engine.dialect, "do_ping", adapter_pings.append)
    try:
        async with db.read_sessions() as session:
            conn = (await (await session.connection()).get_raw_connection()).driver_connection
            await session.execute(text("SELECT 1"))
        queries: list[str] = []
        conn.add_query_logger(lambda logged: queries.append(logged.query.strip()))
        await asyncio.sleep(kit_db.PING_AFTER_IDLE_SECONDS + 0.2)
        async with db.read_sessions() as session:
            await session.execute(text("SELECT 2"))
        async with db.read_sessions() as session:
            await session.execute(text("SELECT 3"))
        for _ in range(5):  # asyncpg calls its query loggers soon after each query, not during it
            await asyncio.sleep(0)
        assert queries == [";"], queries  # the sessions' own statements are prepared ones, which are not logged
        assert adapter_pings == []
    finally:
        await db.dispose()


async def test_a_transaction_left_idle_is_ended_by_the_server_and_its_locks_released(settings: Settings) -> None:
    """A unit whose task stalls inside its transaction (holding an order's advisory lock) does not block that
    order for good: the server ends the session after the idle limit and the next claim of the lock gets it."""
    stalled = Database(settings.database_url("crm"), pool_size=1, idle_in_transaction_seconds=0.5)
    other = Database(settings.database_url("crm"), pool_size=1, idle_in_transaction_seconds=0.5)
    unlimited = Database(settings.database_url("crm"), pool_size=1, idle_in_transaction_seconds=0)
    key = {"key": "an order whose event stalled"}
    try:
        session = stalled.sessions()
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), key)
        async with other.sessions() as waiting:
            taken = (await waiting.execute(
                text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"), key)).scalar_one()
            assert taken is False  # held by the stalled unit
            await waiting.rollback()
            await asyncio.sleep(1.5)  # the stalled unit sits idle in its transaction past the limit
            await waiting.execute(text("SET LOCAL lock_timeout = '5s'"))  # fails fast if still held
            await waiting.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), key)
            await waiting.commit()  # granted: the server ended the stalled session
        with pytest.raises(Exception) as ended:  # the stalled unit learns its transaction is gone
            await session.execute(text("SELECT 1"))
        assert "idle-in-transaction" in str(ended.value) or "closed" in str(ended.value).lower(), ended.value
        await session.close()

        # With the limit off, the server leaves such a transaction alone.
        async with unlimited.sessions() as idle:
            await idle.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), key)
            await asyncio.sleep(1.0)
            assert (await idle.execute(text("SELECT 1"))).scalar_one() == 1
            timeout = (await idle.execute(text("SHOW idle_in_transaction_session_timeout"))).scalar_one()
            assert timeout == "0"
    finally:
        for database in (stalled, other, unlimited):
            await database.dispose()


async def test_a_connection_inside_a_transaction_the_pool_does_not_know_of_is_not_reused(settings: Settings) -> None:
    """A task cancelled while its BEGIN was on the wire leaves asyncpg inside a transaction SQLAlchemy does not
    track. Reused, every later unit on that connection would run in savepoints of it: its commit would commit
    nothing and its locks would stay held. The pool closes such a connection instead."""
    db = Database(settings.database_url("crm"), pool_size=1)
    other = Database(settings.database_url("crm"), pool_size=1)
    key = {"key": f"order {uuid.uuid4()}"}
    try:
        session = db.sessions()
        fairy = await (await session.connection()).get_raw_connection()
        driver = fairy.driver_connection
        first_pid = driver.get_server_pid()
        await driver.transaction().start()  # registered by asyncpg, begun on the server, unknown to the adapter
        assert kit_db.untracked_transaction(fairy.dbapi_connection) is not None
        await session.close()  # back to the pool: the adapter has nothing to roll back

        async with UnitOfWork(db) as uow:
            conn = await uow.driver()
            assert conn.get_server_pid() != first_pid  # a new connection, not the one left inside a transaction
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key["key"])
            await uow.commit()
        async with other.sessions() as session:  # the commit was a real one: the lock is free again
            free = (await session.execute(
                text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"), key)).scalar_one()
            assert free is True
            gone = (await session.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": first_pid})).scalar_one()
            assert gone == 0  # the discarded connection was closed (the server rolled its transaction back)
    finally:
        await db.dispose()
        await other.dispose()

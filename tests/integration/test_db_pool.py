"""Pooled connections: one that died while idle is replaced before use (the idle ping)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from alexandrite.kit import db as kit_db
from alexandrite.kit.db import Database
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

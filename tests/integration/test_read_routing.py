"""Read routing: dashboard reads go to the replica DSN, writes and fresh refills to the primary.

The "replica" here is a read-only login role on the same server whose search path shows its
own copy of ``production_orders`` holding one extra order: a page that lists that order was
served through the replica connection; anything the primary has alone was not.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from mes_orders import approved_order
from sqlalchemy import text

from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token
from alexandrite.mes.app import create_app

BASE = "/api/v1/production"


@pytest.fixture(scope="module")
async def replica(settings: Settings) -> AsyncIterator[tuple[str, uuid.UUID]]:
    """A read-only role seeing ``probe.production_orders`` (one order only it has); yields (role, order id)."""
    role = f"{settings.db.prefix}_replica"
    marker = uuid.uuid4()
    admin = Database(settings.database_url("mes"), pool_size=1)
    statements = [
        f'CREATE ROLE "{role}" LOGIN',
        "CREATE SCHEMA probe",
        "CREATE TABLE probe.production_orders (LIKE public.production_orders INCLUDING DEFAULTS)",
        "INSERT INTO probe.production_orders (id, alloy, status, seq, owner_kind, owner_name, created_at, updated_at,"
        " status_since) VALUES (:id, 'gold_750', 'MANUFACTURING_APPROVED', 6, 'customer', 'Replica Only', "
        ":at, :at, :at)",
        f'GRANT USAGE ON SCHEMA probe TO "{role}"',
        f'GRANT SELECT ON ALL TABLES IN SCHEMA probe, public TO "{role}"',
        f'ALTER ROLE "{role}" IN DATABASE "{settings.database_name("mes")}" SET search_path = probe, public',
        f'ALTER ROLE "{role}" SET default_transaction_read_only = on',
    ]
    async with admin.engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement), {"id": marker, "at": datetime.now(UTC) + timedelta(days=900)})
    try:
        yield role, marker
    finally:
        async with admin.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA probe CASCADE"))
            await conn.execute(text(f'DROP OWNED BY "{role}"'))
        await admin.dispose()
        cleanup = Database(settings.admin_database_url(), pool_size=1)
        async with cleanup.engine.begin() as conn:
            await conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        await cleanup.dispose()


def operator(settings: Settings) -> dict[str, str]:
    token = issue_token(settings, Principal(role="operator", subject="rita", name="rita"), 600)
    return {"Authorization": f"Bearer {token}"}


async def run_app(settings: Settings, **overrides: Any) -> Any:
    return create_app(settings.replace(**{"run_relay": False, "run_consumer": False, **overrides}))


async def test_reads_use_the_replica_and_writes_the_primary(settings: Settings,
                                                            replica: tuple[str, uuid.UUID]) -> None:
    role, marker = replica
    app = await run_app(settings, pg_replica_dsn=f"postgresql+asyncpg://{role}@127.0.0.1:5432", cache_ttl_seconds=0)
    async with LifespanManager(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                       base_url="http://mes.test") as http:
        db: Database = app.state.db
        async with db.read_sessions() as session:
            assert (await session.execute(text("SELECT current_user"))).scalar_one() == role
        async with UnitOfWork(db) as uow:
            assert (await uow.session.execute(text("SELECT current_user"))).scalar_one() == "postgres"

        primary_only = await approved_order(db, created_at=datetime.now(UTC) + timedelta(days=899))
        page = (await http.get(f"{BASE}/orders", headers=operator(settings), params={"limit": 5})).json()
        listed = [i["id"] for i in page["items"]]
        assert str(marker) in listed and str(primary_only) not in listed  # served by the replica

        taken = await http.post(f"{BASE}/orders/{primary_only}/take", headers=operator(settings))
        assert taken.status_code == 200, taken.text  # the write went to the primary (the replica is read-only)
        assert taken.json()["status"] == "MANUFACTURING_STARTED"
        async with db.read_sessions() as session:
            with pytest.raises(Exception, match="read-only transaction"):
                await session.execute(text("UPDATE production_orders SET seq = seq WHERE false"))


async def test_cache_refills_right_after_a_change_read_the_primary(settings: Settings,
                                                                   replica: tuple[str, uuid.UUID]) -> None:
    role, marker = replica
    app = await run_app(settings, pg_replica_dsn=f"postgresql+asyncpg://{role}@127.0.0.1:5432",
                        replica_fresh_seconds=30, redis_prefix=f"{settings.redis.prefix}:fresh")
    async with LifespanManager(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                       base_url="http://mes.test") as http:
        page = (await http.get(f"{BASE}/orders", headers=operator(settings), params={"limit": 5})).json()
        assert str(marker) in [i["id"] for i in page["items"]]  # a cold miss reads the replica
        order_id = await approved_order(app.state.db, created_at=datetime.now(UTC) + timedelta(days=898))
        page = (await http.get(f"{BASE}/orders", headers=operator(settings), params={"limit": 200})).json()
        listed = [i["id"] for i in page["items"]]
        assert str(order_id) in listed and str(marker) not in listed  # after the change: the primary


async def test_without_a_replica_everything_uses_the_primary(settings: Settings) -> None:
    db = Database(settings.database_url("mes"), pool_size=1)
    try:
        assert db.replica_engine is None
        async with db.read_sessions() as session:
            assert (await session.execute(text("SELECT current_user"))).scalar_one() == "postgres"
            assert await session.connection() is not None
            assert (await session.connection()).engine.url == db.engine.url
    finally:
        await db.dispose()

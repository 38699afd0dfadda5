"""MES orders partitioned by month: the dashboard's plans (index, pruning), maintenance, archive/restore."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from mes_orders import approved_order
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql

from alexandrite.devtools.seed_orders import Plan, load_service
from alexandrite.kit.db import Database
from alexandrite.kit.migrations import create_databases, drop_databases, upgrade
from alexandrite.kit.pagination import encode_cursor
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token
from alexandrite.mes import partitions, repository
from alexandrite.mes.dashboard import IN_WORK_STATUSES
from alexandrite.mes.tables import production_orders

BASE = "/api/v1/production"


@pytest.fixture(scope="module")
def operator(settings: Settings) -> dict[str, str]:
    token = issue_token(settings, Principal(role="operator", subject="pia", name="pia"), 600)
    return {"Authorization": f"Bearer {token}"}


async def ensure(db: Database, first: date, last: date) -> None:
    async with db.engine.begin() as conn:
        await partitions.ensure_months(conn, first, last)


async def child_indexes(db: Database, parent: str) -> set[str]:
    async with db.engine.connect() as conn:
        return set((await conn.execute(text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :parent"), {"parent": parent})).scalars())


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", ()):
        nodes += plan_nodes(child)
    return nodes


async def explain(db: Database, statuses: tuple[str, ...], after: tuple[datetime, uuid.UUID] | None) -> list[Any]:
    """EXPLAIN of the dashboard's real statement (as the repository builds it)."""
    captured: list[str] = []

    class Recorder:
        async def execute(self, stmt: Any) -> Any:
            captured.append(str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})))
            raise LookupError  # stop here: only the statement is wanted

    with pytest.raises(LookupError):
        await repository.list_orders(Recorder(), statuses, after, 50)  # type: ignore[arg-type]
    async with db.engine.connect() as conn:
        raw = (await conn.execute(text("EXPLAIN (FORMAT JSON) " + captured[0]))).scalar_one()
    document = raw if isinstance(raw, list) else json.loads(raw)
    return plan_nodes(document[0]["Plan"])


@pytest.fixture(scope="module")
async def seeded(settings: Settings) -> AsyncIterator[Database]:
    """A separate MES database with two years of generated orders (plans depend on realistic statistics)."""
    scratch = settings.replace(**{"db_prefix": f"{settings.db.prefix}_plans"})
    await create_databases(scratch, ("mes",))
    try:
        await asyncio.to_thread(upgrade, "mes", scratch)
        await load_service(scratch, "mes", Plan.make(60_000, in_work=600))
        database = Database(scratch.database_url("mes"), pool_size=2)
        yield database
        await database.dispose()
    finally:
        await drop_databases(scratch, ("mes",))


async def test_dashboard_plan_uses_the_in_work_index_and_prunes_months(seeded: Database) -> None:
    db = seeded
    this_month = partitions.month_start(datetime.now(UTC))
    in_work_indexes = await child_indexes(db, "ix_production_orders_in_work")
    assert len(in_work_indexes) >= 25

    nodes = await explain(db, IN_WORK_STATUSES, None)
    scans = [n for n in nodes if "Index Name" in n]
    assert scans and {n["Index Name"] for n in scans} <= in_work_indexes
    assert not any(n["Node Type"] in ("Sort", "Seq Scan", "Bitmap Heap Scan") for n in nodes)
    assert any(n["Node Type"] == "Merge Append" for n in nodes)  # months read newest first, merged in order

    # A deeper page: months newer than the cursor are pruned, the older ones still merged by index.
    cursor_at = datetime.combine(partitions.add_months(this_month, -6), datetime.min.time(), UTC)
    nodes = await explain(db, IN_WORK_STATUSES[:2], (cursor_at, uuid.UUID(int=0)))
    read = {n["Relation Name"] for n in nodes if "Relation Name" in n}
    newer = {partitions.partition_name(partitions.add_months(this_month, -k)) for k in range(0, 6)}
    assert read and not read & newer
    assert partitions.partition_name(partitions.add_months(this_month, -7)) in read
    assert {n["Index Name"] for n in nodes if "Index Name" in n} <= in_work_indexes

    # Another status (not in work) uses the general (status, created_at, id) index.
    nodes = await explain(db, ("SHIPPED",), None)
    general = await child_indexes(db, "ix_production_orders_status_newest")
    assert {n["Index Name"] for n in nodes if "Index Name" in n} <= general
    assert not any(n["Node Type"] == "Sort" for n in nodes)


async def assert_counts_exact(db: Database) -> None:
    """The trigger-kept counts per in-work status equal a real count of the live table."""
    async with db.sessions() as session:
        kept = await repository.count_by_status(session, IN_WORK_STATUSES)
        real = dict((await session.execute(text(
            "SELECT status, count(*) FROM production_orders WHERE status = ANY(:s) GROUP BY status"),
            {"s": list(IN_WORK_STATUSES)})).all())
    assert kept == {s: real.get(s, 0) for s in IN_WORK_STATUSES}


async def test_rows_in_the_default_partition_move_into_a_new_month(db: Database) -> None:
    far = date(2019, 3, 1)  # older than any month the migration made
    order_id = await approved_order(db, created_at=datetime(2019, 3, 15, tzinfo=UTC))
    async with db.engine.connect() as conn:
        where = (await conn.execute(text("SELECT tableoid::regclass::text FROM production_orders WHERE id = :id"),
                                    {"id": order_id})).scalar_one()
    assert where == partitions.DEFAULT_PARTITION
    await ensure(db, far, far)
    async with db.engine.connect() as conn:
        where = (await conn.execute(text("SELECT tableoid::regclass::text FROM production_orders WHERE id = :id"),
                                    {"id": order_id})).scalar_one()
    assert where == partitions.partition_name(far)
    await assert_counts_exact(db)


async def test_archive_keeps_an_order_readable_by_id_and_restore_brings_it_back(
        client: httpx.AsyncClient, db: Database, operator: dict[str, str]) -> None:
    month = date(2022, 5, 1)
    await ensure(db, month, month)
    order_id = await approved_order(db, created_at=datetime(2022, 5, 20, 8, 0, tzinfo=UTC))

    async def listed() -> bool:
        cursor = partitions.add_months(month, 1)
        page = await client.get(f"{BASE}/orders", headers=operator, params={
            "cursor": encode_cursor(datetime.combine(cursor, datetime.min.time(), UTC), uuid.UUID(int=0)),
            "limit": 200})
        assert page.status_code == 200, page.text
        return str(order_id) in [i["id"] for i in page.json()["items"]]

    assert await listed()
    async with db.engine.begin() as conn:
        await partitions.archive_month(conn, month)
    async with db.sessions() as session:
        assert (await session.execute(select(production_orders.c.id).where(
            production_orders.c.id == order_id))).first() is None
    assert not await listed()
    await assert_counts_exact(db)
    archived = await client.get(f"{BASE}/orders/{order_id}", headers=operator)
    assert archived.status_code == 200, archived.text
    body = archived.json()
    assert body["status"] == "MANUFACTURING_APPROVED" and [h["status"] for h in body["history"]][-1] == \
        "MANUFACTURING_APPROVED"
    async with db.engine.connect() as conn:
        found = {(p.schema, p.name) for p in await partitions.list_partitions(conn)}
    assert ("archive", partitions.partition_name(month)) in found

    async with db.engine.begin() as conn:
        await partitions.restore_month(conn, month)
    assert await listed()
    with pytest.raises(LookupError):
        async with db.engine.begin() as conn:
            await partitions.restore_month(conn, month)  # not archived any more
    await assert_counts_exact(db)


async def test_maintain_creates_months_ahead_and_archives_old_ones(db: Database) -> None:
    today = date(2040, 6, 10)
    old = date(2038, 1, 1)
    await ensure(db, old, old)
    async with db.engine.begin() as conn:
        report = await partitions.maintain(conn, months_ahead=2, archive_after_months=24, today=today)
    assert report.created == [partitions.partition_name(date(2040, m, 1)) for m in (6, 7, 8)]
    assert partitions.partition_name(old) in report.archived
    async with db.engine.begin() as conn:  # idempotent
        again = await partitions.maintain(conn, months_ahead=2, archive_after_months=0, today=today)
    assert again.created == [] and again.archived == []
    async with db.engine.begin() as conn:
        await partitions.restore_month(conn, old)


def run_cli(test_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alexandrite", *args], env=test_env, capture_output=True,
                          text=True, timeout=120)


def test_maintain_command(test_env: dict[str, str]) -> None:
    done = run_cli(test_env, "maintain", "--archive-after-months", "0", "--list")
    assert done.returncode == 0, done.stderr
    assert f"public.{partitions.DEFAULT_PARTITION}" in done.stdout
    this_month = partitions.month_start(datetime.now(UTC))
    assert partitions.partition_name(partitions.add_months(this_month, 3)) in done.stdout
    for bad in (["--archive", "2023-13"], ["--restore", "last-year"], ["--months-ahead", "-1"]):
        failed = run_cli(test_env, "maintain", *bad)
        assert failed.returncode == 2 and "alexandrite:" in failed.stderr, bad
    missing = run_cli(test_env, "maintain", "--restore", "1999-01")
    assert missing.returncode == 2 and "no archived partition" in missing.stderr


def test_month_arithmetic() -> None:
    assert partitions.add_months(date(2025, 11, 1), 3) == date(2026, 2, 1)
    assert partitions.add_months(date(2025, 1, 1), -1) == date(2024, 12, 1)
    assert partitions.parse_month("2025-03") == date(2025, 3, 1)
    assert partitions.month_of("production_orders_p202503") == date(2025, 3, 1)
    assert partitions.month_of(partitions.DEFAULT_PARTITION) is None

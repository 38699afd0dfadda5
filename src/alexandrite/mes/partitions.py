"""Monthly partitions of ``production_orders``: create ahead, archive old ones, restore them.

The table is partitioned by ``created_at`` month (``production_orders_pYYYYMM``) with a
default partition for anything outside the months that exist. Archiving detaches a month
and attaches it under ``archive.production_orders`` (same columns): the rows leave the
dashboard's table but an order stays readable by id. Restoring moves it back.

Every function takes an open SQLAlchemy ``AsyncConnection`` inside a transaction; the
caller commits. DDL only names tables built from a month, never user text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

PARENT = "production_orders"
ARCHIVE_SCHEMA = "archive"
DEFAULT_PARTITION = f"{PARENT}_default"
COUNTS = "production_status_counts"
CLOCKS = "production_in_work"
_NAME = re.compile(rf"^{PARENT}_p(\d{{4}})(\d{{2}})$")


def month_start(value: date | datetime) -> date:
    return date(value.year, value.month, 1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + (month.month - 1) + count
    return date(index // 12, index % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"{PARENT}_p{month.year:04d}{month.month:02d}"


def month_of(name: str) -> date | None:
    found = _NAME.match(name)
    return date(int(found.group(1)), int(found.group(2)), 1) if found else None


def parse_month(value: str) -> date:
    """``2025-03`` → 2025-03-01; ValueError for anything else."""
    found = re.fullmatch(r"(\d{4})-(\d{2})", value.strip())
    if not found or not 1 <= int(found.group(2)) <= 12:
        raise ValueError(f"{value!r} is not a month like 2025-03")
    return date(int(found.group(1)), int(found.group(2)), 1)


def _bounds(month: date) -> str:
    return f"FROM ('{month.isoformat()} 00:00:00+00') TO ('{add_months(month, 1).isoformat()} 00:00:00+00')"


def create_partition_sql(month: date) -> str:
    return f"CREATE TABLE IF NOT EXISTS {partition_name(month)} PARTITION OF {PARENT} FOR VALUES {_bounds(month)}"


@dataclass(frozen=True)
class Partition:
    schema: str
    name: str
    month: date | None  # None: the default partition
    rows: int  # planner estimate (pg_class.reltuples), -1 when never analysed

    @property
    def archived(self) -> bool:
        return self.schema == ARCHIVE_SCHEMA


async def list_partitions(conn: AsyncConnection) -> list[Partition]:
    rows = (await conn.execute(text(
        "SELECT n.nspname AS schema, c.relname AS name, c.reltuples::bigint AS rows "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace "
        "WHERE p.relname = :parent AND pn.nspname IN ('public', :archive) ORDER BY c.relname"
    ), {"parent": PARENT, "archive": ARCHIVE_SCHEMA})).all()
    return [Partition(r.schema, r.name, month_of(r.name), int(r.rows)) for r in rows]


async def _exists(conn: AsyncConnection, schema: str, name: str) -> bool:
    return bool((await conn.execute(text(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :schema AND c.relname = :name"), {"schema": schema, "name": name})).first())


async def ensure_month(conn: AsyncConnection, month: date) -> bool:
    """Create the month's partition; rows already in the default partition for it move in. True if created."""
    name = partition_name(month)
    if await _exists(conn, "public", name) or await _exists(conn, ARCHIVE_SCHEMA, name):
        return False
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime.combine(add_months(month, 1), datetime.min.time(), UTC)
    stray = (await conn.execute(text(
        f"SELECT 1 FROM {DEFAULT_PARTITION} WHERE created_at >= :start AND created_at < :end LIMIT 1"
    ), {"start": start, "end": end})).first()
    if stray is None:
        await conn.execute(text(create_partition_sql(month)))
        return True
    # Creating the partition would clash with rows in the default one: move them while attaching.
    await conn.execute(text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
    await conn.execute(text(
        f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE created_at >= :start AND created_at < :end "
        f"RETURNING *) INSERT INTO {name} SELECT * FROM moved"), {"start": start, "end": end})
    await conn.execute(text(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES {_bounds(month)}"))
    await _count_in(conn, name, +1)  # the delete from the default partition counted them out
    return True


async def ensure_months(conn: AsyncConnection, first: date, last: date) -> list[str]:
    """Partitions for every month from ``first`` to ``last`` inclusive; returns those created."""
    created, month = [], month_start(first)
    while month <= month_start(last):
        if await ensure_month(conn, month):
            created.append(partition_name(month))
        month = add_months(month, 1)
    return created


async def archive_month(conn: AsyncConnection, month: date) -> None:
    """Detach the month from the live table and keep it under ``archive`` (readable by id)."""
    name = partition_name(month)
    if not await _exists(conn, "public", name):
        raise LookupError(f"no live partition {name}")
    await conn.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {name}"))
    await _count_in(conn, name, -1)
    await conn.execute(text(f"ALTER TABLE {name} SET SCHEMA {ARCHIVE_SCHEMA}"))
    await conn.execute(text(
        f"ALTER TABLE {ARCHIVE_SCHEMA}.{PARENT} ATTACH PARTITION {ARCHIVE_SCHEMA}.{name} FOR VALUES {_bounds(month)}"))


async def restore_month(conn: AsyncConnection, month: date) -> None:
    """Bring an archived month back into the live table."""
    name = partition_name(month)
    if not await _exists(conn, ARCHIVE_SCHEMA, name):
        raise LookupError(f"no archived partition {name}")
    await conn.execute(text(f"ALTER TABLE {ARCHIVE_SCHEMA}.{PARENT} DETACH PARTITION {ARCHIVE_SCHEMA}.{name}"))
    await conn.execute(text(f"ALTER TABLE {ARCHIVE_SCHEMA}.{name} SET SCHEMA public"))
    await conn.execute(text(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES {_bounds(month)}"))
    await _count_in(conn, name, +1)


async def _count_in(conn: AsyncConnection, table: str, sign: int) -> None:
    """Add (or take out) a whole month's in-work orders to the per-status counts, late counts and stage
    clocks: attaching and detaching partitions moves rows without firing the row trigger that keeps them."""
    await conn.execute(text(
        f"UPDATE {COUNTS} c SET n = c.n + :sign * m.n, late = c.late + :sign * m.late FROM (SELECT o.status, "
        f"count(*) AS n, count(*) FILTER (WHERE o.status_since < k.late_before) AS late FROM {table} o "
        f"JOIN {COUNTS} k ON k.status = o.status GROUP BY o.status) m WHERE m.status = c.status"), {"sign": sign})
    if sign > 0:
        await conn.execute(text(
            f"INSERT INTO {CLOCKS} (order_id, status, status_since) SELECT o.id, o.status, o.status_since "
            f"FROM {table} o JOIN {COUNTS} k ON k.status = o.status ON CONFLICT (order_id) DO NOTHING"))
    else:
        await conn.execute(text(f"DELETE FROM {CLOCKS} w USING {table} o WHERE w.order_id = o.id"))


@dataclass
class MaintenanceReport:
    created: list[str]
    archived: list[str]


async def maintain(conn: AsyncConnection, *, months_ahead: int, archive_after_months: int,
                   today: date | None = None) -> MaintenanceReport:
    """Create this month's and the next ``months_ahead`` partitions; archive months that ended more
    than ``archive_after_months`` ago (0: never archive)."""
    current = month_start(today or datetime.now(UTC).date())
    created = await ensure_months(conn, current, add_months(current, months_ahead))
    archived: list[str] = []
    if archive_after_months > 0:
        cutoff = add_months(current, -archive_after_months)
        for part in await list_partitions(conn):
            if not part.archived and part.month is not None and add_months(part.month, 1) <= cutoff:
                await archive_month(conn, part.month)
                archived.append(part.name)
    return MaintenanceReport(created, archived)

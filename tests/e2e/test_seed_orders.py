"""``alexandrite seed --orders N`` as a real process, into databases of its own."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import asyncpg
import pytest

from alexandrite.kit.migrations import create_databases, drop_databases, plain_dsn, upgrade
from alexandrite.kit.settings import SERVICES, Settings

pytestmark = pytest.mark.e2e

IN_WORK = ("MANUFACTURING_APPROVED", "MANUFACTURING_STARTED", "MANUFACTURING_COMPLETED", "PACKAGING")


@pytest.fixture(scope="module")
def seeded_env(settings: Settings, test_env: dict[str, str]) -> Iterator[tuple[Settings, dict[str, str]]]:
    scratch = settings.replace(**{"db_prefix": f"{settings.db.prefix}_seed"})
    asyncio.run(create_databases(scratch))
    try:
        for service in SERVICES:
            upgrade(service, scratch)
        yield scratch, {**test_env, "ALEX_DB_PREFIX": scratch.db.prefix}
    finally:
        asyncio.run(drop_databases(scratch))


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alexandrite", *args], env=env, capture_output=True, text=True,
                          timeout=300)


async def facts(settings: Settings) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for service, table in (("shop", "orders"), ("crm", "orders"), ("mes", "production_orders")):
        conn = await asyncpg.connect(plain_dsn(settings.database_url(service)))
        try:
            row = await conn.fetchrow(
                f"SELECT count(*) AS n, md5(string_agg(id::text || status, ',' ORDER BY id)) AS digest, "
                f"count(*) FILTER (WHERE status = ANY($1::text[])) AS in_work, "
                f"extract(day FROM now() - min(created_at)) AS days FROM {table}", list(IN_WORK))
            found[service] = dict(row)
            found[service]["history"] = await conn.fetchval("SELECT count(DISTINCT order_id) FROM order_history")
            if service == "mes":
                found[service]["default_rows"] = await conn.fetchval(
                    "SELECT count(*) FROM production_orders_default")
                found[service]["months"] = await conn.fetchval(
                    "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent "
                    "WHERE p.relname = 'production_orders' AND p.relnamespace = 'public'::regnamespace")
                found[service]["indexes"] = await conn.fetchval(
                    "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'production_orders'")
        finally:
            await conn.close()
    return found


def test_seed_orders_fills_every_service_consistently(seeded_env: tuple[Settings, dict[str, str]]) -> None:
    settings, env = seeded_env
    done = cli(env, "seed", "--orders", "6000", "--in-work", "120")
    assert done.returncode == 0, done.stderr
    assert "operator token:" in done.stdout  # the demo accounts are still made
    assert "seeded 6,000 orders (120 in work)" in done.stdout
    found = asyncio.run(facts(settings))
    shop, crm, mes = found["shop"], found["crm"], found["mes"]
    assert shop["n"] == crm["n"] == mes["n"] == 6000
    assert shop["digest"] == crm["digest"] == mes["digest"]  # the same orders in the same statuses
    assert 60 <= int(mes["in_work"]) <= 200  # about the number asked for
    assert mes["history"] == mes["in_work"] == crm["history"]
    assert 725 <= float(mes["days"]) <= 731  # two years of history
    assert mes["default_rows"] == 0 and int(mes["months"]) >= 25 and mes["indexes"] == 4


def test_seed_rejects_bad_numbers(seeded_env: tuple[Settings, dict[str, str]]) -> None:
    _, env = seeded_env
    for args in (["--orders", "-5"], ["--orders", "10", "--years", "0"], ["--orders", "ten"]):
        done = cli(env, "seed", *args)
        assert done.returncode == 2, args

"""pgBackRest base backup + WAL archive of a throw-away primary, and the restore drill that checks it."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import asyncpg
import pytest

from alexandrite.kit.settings import SERVICES
from alexandrite.ops import pgcluster
from alexandrite.ops.backup import DrillReport, TableCheck
from tests.ops.clusters import needs_postgresql_common, own_cluster

pytestmark = [
    pytest.mark.e2e,
    needs_postgresql_common,
    pytest.mark.skipif(shutil.which("pgbackrest") is None, reason="pgbackrest (Debian package) is not installed"),
]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alexandrite", *args], env=env, capture_output=True, text=True,
                          timeout=600)


async def execute(dsn: str, database: str, *statements: str) -> None:
    conn = await asyncpg.connect(f"{pgcluster.plain(dsn)}/{database}")
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_base_backup_and_wal_restore_drill_match_the_source(test_env: dict[str, str]) -> None:
    repo = Path(tempfile.mkdtemp(prefix="alextest-pgbackrest-"))
    owner = pwd.getpwnam("postgres")
    os.chown(repo, owner.pw_uid, owner.pw_gid)
    try:
        with own_cluster("backup") as primary:
            dsn = pgcluster.server_dsn(primary.port)
            prefix = f"alexbk_{uuid.uuid4().hex[:6]}"
            env = {**test_env, "ALEX_PG_DSN": dsn, "ALEX_DB_PREFIX": prefix, "ALEX_BACKUP_REPO": str(repo / "repo"),
                   "ALEX_BACKUP_STANZA": prefix}

            setup = cli(env, "backup", "setup", "--restart")
            assert setup.returncode == 0, setup.stderr
            assert "restarted cluster" in setup.stdout and "created and checked" in setup.stdout

            migrated = subprocess.run([sys.executable, "-c", (
                "import asyncio\n"
                "from alexandrite.kit.migrations import create_databases, upgrade\n"
                "from alexandrite.kit.settings import Settings\n"
                "s = Settings(_env_file=None)\n"
                "asyncio.run(create_databases(s))\n"
                "[upgrade(x, s) for x in ('shop', 'crm', 'mes')]\n")], env=env, capture_output=True, text=True,
                timeout=300)
            assert migrated.returncode == 0, migrated.stderr
            shop = f"{prefix}_shop"
            await execute(dsn, shop, "CREATE TABLE drill_before (id int PRIMARY KEY, note text)",
                          "INSERT INTO drill_before SELECT g, md5(g::text) FROM generate_series(1, 5000) g")

            base = cli(env, "backup", "base")
            assert base.returncode == 0, base.stderr
            assert "full backup" in base.stdout

            # Written after the base backup: only the WAL archive can bring these back.
            await execute(dsn, shop, "CREATE TABLE drill_after (id int PRIMARY KEY, note text)",
                          "INSERT INTO drill_after SELECT g, md5(g::text) FROM generate_series(1, 3000) g",
                          "UPDATE drill_before SET note = 'changed' WHERE id % 7 = 0",
                          "DELETE FROM drill_before WHERE id % 11 = 0")

            drill = cli(env, "backup", "restore-drill")
            assert drill.returncode == 0, drill.stdout + drill.stderr
            lines = drill.stdout.splitlines()
            assert lines[-2].startswith("restore drill passed: 3 database(s)"), drill.stdout
            print("\n" + "\n".join(lines[-2:]))
            assert f"ok       {shop}.public.drill_after: source 3000 rows, restored 3000 rows" in lines
            kept = 5000 - 5000 // 11
            assert f"ok       {shop}.public.drill_before: source {kept} rows, restored {kept} rows" in lines
            assert all(f"{prefix}_{service}.public.alembic_version" in drill.stdout for service in SERVICES)
            assert [c.name for c in pgcluster.clusters() if c.name.startswith("drill_")] == [], "drill cleaned up"
    finally:
        shutil.rmtree(repo, ignore_errors=True)


def test_drill_report_flags_a_mismatch() -> None:
    report = DrillReport("p", 5555, [TableCheck("db", "public.t", (3, "a"), (3, "a")),
                                     TableCheck("db", "public.u", (2, "b"), (1, "c")),
                                     TableCheck("db", "public.v", (1, "d"), None)])
    assert not report.ok
    lines = report.lines()
    assert lines[1].startswith("MISMATCH db.public.u") and "restored missing" in lines[2]
    assert "FAILED" in lines[-1] and "2 mismatch(es)" in lines[-1]
    assert not DrillReport("p", 5555).ok, "a drill that compared nothing did not pass"


def test_a_stopped_cluster_keeps_its_port_from_the_drill() -> None:
    """A registered cluster that is not running (left by an interrupted run) listens on nothing, yet
    ``pg_createcluster`` would refuse its port: the drill's port choice skips it."""
    name = f"alextest_parked_{uuid.uuid4().hex[:8]}"
    port = pgcluster.free_port(15500 + uuid.uuid4().int % 20000)
    pgcluster.create_cluster("15", name, port)
    try:
        assert pgcluster.find_cluster(port=port) is not None
        chosen = pgcluster.free_port(port)
        assert chosen != port and chosen > port
    finally:
        subprocess.run(["pg_dropcluster", "--stop", "15", name], capture_output=True, timeout=120)

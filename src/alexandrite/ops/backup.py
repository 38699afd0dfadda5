"""Base backups + WAL archiving with pgBackRest, and a restore drill that proves them.

One pgBackRest stanza covers the whole primary cluster, so every service database is in
every backup and in the WAL archive. The drill restores into a fresh cluster on a free port
and compares every table of every service database with the source: row count and a
checksum over all rows (order independent).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from alexandrite.kit.settings import SERVICES, Settings
from alexandrite.ops import pgcluster
from alexandrite.ops.pgcluster import Cluster

# Tables (partitions included, partitioned parents excluded: their rows are in the partitions).
TABLES = ("SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
          "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
          "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' "
          "ORDER BY 1")


@dataclass
class TableCheck:
    database: str
    table: str
    source: tuple[int, str]
    restored: tuple[int, str] | None

    @property
    def ok(self) -> bool:
        return self.source == self.restored


@dataclass
class DrillReport:
    restore_point: str
    port: int
    checks: list[TableCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def lines(self) -> list[str]:
        out = []
        for c in self.checks:
            mark = "ok" if c.ok else "MISMATCH"
            restored = f"{c.restored[0]} rows" if c.restored else "missing"
            out.append(f"{mark:8} {c.database}.{c.table}: source {c.source[0]} rows, restored {restored}")
        databases = len({c.database for c in self.checks})
        bad = sum(not c.ok for c in self.checks)
        out.append(f"restore drill {'passed' if self.ok else 'FAILED'}: {databases} database(s), "
                   f"{len(self.checks)} table(s), {bad} mismatch(es), restore point {self.restore_point}")
        return out


class PgBackRest:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.repo = Path(settings.ops.backup_repo).resolve()
        self.stanza = settings.ops.backup_stanza
        self.config = self.repo / f"{self.stanza}.conf"

    def command(self, *args: str, timeout: float = 1800) -> str:
        if not self.config.exists():
            raise LookupError(f"no pgBackRest config at {self.config}: run `alexandrite backup setup` first")
        return pgcluster.run(["pgbackrest", f"--config={self.config}", f"--stanza={self.stanza}", *args],
                             owner=True, timeout=timeout)

    def archive_command(self) -> str:
        return f"pgbackrest --config={self.config} --stanza={self.stanza} archive-push %p"

    def write_config(self, cluster: Cluster) -> None:
        self.repo.mkdir(parents=True, exist_ok=True)
        pgcluster.chown_to_owner(self.repo)
        os.chmod(self.repo, 0o750)
        self.config.write_text(
            "[global]\n"
            f"repo1-path={self.repo}\n"
            f"repo1-retention-full={self.settings.ops.backup_retention_full}\n"
            "start-fast=y\n"
            "compress-type=lz4\n"
            "log-level-console=warn\n"
            "log-level-file=off\n"
            f"lock-path={self.repo}/lock\n"
            "archive-async=n\n\n"
            f"[{self.stanza}]\n"
            f"pg1-path={cluster.data_dir}\n"
            f"pg1-port={cluster.port}\n"
            "pg1-socket-path=/var/run/postgresql\n")
        pgcluster.chown_to_owner(self.config)


def primary_cluster(settings: Settings) -> Cluster:
    _, port = pgcluster.host_port(settings.db.dsn)
    cluster = pgcluster.find_cluster(port=port)
    if cluster is None:
        raise LookupError(f"no local PostgreSQL cluster listens on port {port} (pg_lsclusters)")
    return cluster


async def setup(settings: Settings, *, restart: bool) -> list[str]:
    """Config, archive_command, stanza. Returns what it did; archive_mode needs one restart."""
    cluster = primary_cluster(settings)
    tool = PgBackRest(settings)
    tool.write_config(cluster)
    done = [f"wrote {tool.config}"]
    conn = await pgcluster.connect(settings.db.dsn)
    try:
        await conn.execute("ALTER SYSTEM SET archive_mode = 'on'")
        await conn.execute(f"ALTER SYSTEM SET archive_command = '{tool.archive_command()}'")
        await conn.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(0.5)
        pending = await conn.fetchval("SELECT pending_restart FROM pg_settings WHERE name = 'archive_mode'")
    finally:
        await conn.close()
    if pending:
        if not restart:
            done.append(f"archive_mode=on waits for a restart: pg_ctlcluster {cluster.version} {cluster.name} "
                        "restart (or run again with --restart)")
            return done
        pgcluster.ctl(cluster, "restart")
        await pgcluster.wait_until(settings.db.dsn, "SHOW archive_mode", "on")
        done.append(f"restarted cluster {cluster.version}/{cluster.name} for archive_mode=on")
    await asyncio.to_thread(tool.command, "stanza-create")
    await asyncio.to_thread(tool.command, "check")
    done.append(f"stanza {tool.stanza} created and checked (WAL reaches the archive)")
    return done


def base_backup(settings: Settings, kind: str = "full") -> str:
    tool = PgBackRest(settings)
    tool.command("backup", f"--type={kind}")
    return tool.command("info")


async def _checksums(conn: asyncpg.Connection) -> dict[str, tuple[int, str]]:
    result = {}
    for table in [r[0] for r in await conn.fetch(TABLES)]:
        row = await conn.fetchrow(
            f"SELECT count(*) AS n, coalesce(md5(string_agg(h, '' ORDER BY h)), '') AS sum "
            f"FROM (SELECT md5(t::text) AS h FROM {table} t) rows")
        result[table] = (int(row["n"]), str(row["sum"]))
    return result


async def snapshot_source(settings: Settings, databases: list[str],
                          restore_point: str) -> dict[str, dict[str, tuple[int, str]]]:
    """Checksums of every table, taken while writes are held (SHARE locks) around a restore point,
    so the restored cluster stopped at that point must hold exactly these rows."""
    conns = [await pgcluster.connect(settings.db.dsn, db) for db in databases]
    try:
        for conn in conns:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            await conn.execute("SET LOCAL lock_timeout = '15s'")
            tables = [r[0] for r in await conn.fetch(TABLES)]
            if tables:
                await conn.execute(f"LOCK TABLE {', '.join(tables)} IN SHARE MODE")
        await conns[0].execute("SELECT pg_create_restore_point($1)", restore_point)
        sums = {db: await _checksums(conn) for db, conn in zip(databases, conns, strict=True)}
        for conn in conns:
            await conn.execute("COMMIT")
        return sums
    finally:
        for conn in conns:
            await conn.close()


async def restore_drill(settings: Settings, *, port: int, keep: bool = False) -> DrillReport:
    source = primary_cluster(settings)
    tool = PgBackRest(settings)
    tool.command("info")  # fails early, before holding any lock, when backups are not set up
    databases = [settings.database_name(s) for s in SERVICES]
    point = f"drill-{uuid.uuid4().hex[:12]}"
    sums = await snapshot_source(settings, databases, point)
    await asyncio.to_thread(tool.command, "check")  # switches WAL and waits until the restore point is archived
    cluster = pgcluster.create_cluster(source.version, f"drill_{point[6:]}", port)
    report = DrillReport(point, port)
    try:
        pgcluster.empty_data_dir(cluster)
        await asyncio.to_thread(tool.command, "restore", f"--pg1-path={cluster.data_dir}", "--type=name",
                                f"--target={point}", "--target-action=promote")
        # The restored copy must not archive into the source's stanza nor wait for its standbys.
        pgcluster.append_auto_conf(cluster, {"archive_mode": "off", "synchronous_standby_names": "",
                                             "port": str(port)})
        pgcluster.ctl(cluster, "start")
        dsn = pgcluster.server_dsn(port)
        await pgcluster.wait_until(dsn, "SELECT pg_is_in_recovery()", False, timeout=300)
        for db in databases:
            conn = await pgcluster.connect(dsn, db)
            try:
                restored = await _checksums(conn)
            finally:
                await conn.close()
            for table, value in sums[db].items():
                report.checks.append(TableCheck(db, table, value, restored.get(table)))
    finally:
        if not keep:
            pgcluster.drop_cluster(cluster)
    return report

"""PostgreSQL streaming replication: hot standby, promotion, lag.

``create_standby`` gives the primary a replication role, an hba line and a physical slot,
clones it with ``pg_basebackup -R`` into a new local cluster and starts it streaming. With
``sync`` the primary waits for the standby on every commit (``synchronous_standby_names``
and ``synchronous_commit`` via ALTER SYSTEM + reload: no restart of the primary).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from alexandrite.ops import pgcluster
from alexandrite.ops.pgcluster import Cluster

SYNC_MODES = ("on", "remote_write", "remote_apply")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


@dataclass
class Standby:
    cluster: Cluster
    dsn: str
    sync: bool


async def _ensure_replication_access(conn: asyncpg.Connection, user: str) -> None:
    if not NAME.match(user):
        raise ValueError(f"replication user {user!r}: use lowercase letters, digits and _")
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", user):
        await conn.execute(f'CREATE ROLE "{user}" WITH REPLICATION LOGIN')
    hba_file = await conn.fetchval("SHOW hba_file")
    if await asyncio.to_thread(_allow_replication, Path(hba_file), user):
        await conn.execute("SELECT pg_reload_conf()")


def _allow_replication(hba_file: Path, user: str) -> bool:
    """Put a local replication rule for ``user`` first in pg_hba.conf (first match wins)."""
    line = f"host replication {user} 127.0.0.1/32 trust"
    rules = hba_file.read_text(encoding="utf-8")
    if any(existing.split() == line.split() for existing in rules.splitlines()):
        return False
    hba_file.write_text(f"# streaming replication to local standbys (alexandrite replica create)\n{line}\n{rules}",
                        encoding="utf-8")
    return True


async def _check_primary(conn: asyncpg.Connection) -> None:
    if await conn.fetchval("SELECT pg_is_in_recovery()"):
        raise ValueError("the server is a standby itself; point ALEX_PG_DSN at the primary")
    wal_level = await conn.fetchval("SHOW wal_level")
    senders = int(await conn.fetchval("SHOW max_wal_senders"))
    if wal_level not in ("replica", "logical") or senders < 2:
        raise ValueError(f"the primary needs wal_level=replica and max_wal_senders>=2 (has {wal_level}, {senders});"
                         " both need a restart of the primary")


async def create_standby(primary_dsn: str, *, version: str, name: str, port: int, user: str,
                         sync: bool = False, sync_mode: str = "on") -> Standby:
    if not NAME.match(name):
        raise ValueError(f"standby name {name!r}: use lowercase letters, digits and _")
    if sync_mode not in SYNC_MODES:
        raise ValueError(f"synchronous commit mode must be one of {', '.join(SYNC_MODES)}")
    host, primary_port = pgcluster.host_port(primary_dsn)
    conn = await pgcluster.connect(primary_dsn)
    try:
        await _check_primary(conn)
        await _ensure_replication_access(conn, user)
        if not await conn.fetchval("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", name):
            await conn.execute("SELECT pg_create_physical_replication_slot($1)", name)
    finally:
        await conn.close()
    cluster = pgcluster.create_cluster(version, name, port)
    try:
        pgcluster.empty_data_dir(cluster)
        pgcluster.run(["pg_basebackup", "-h", host, "-p", str(primary_port), "-U", user, "-D", str(cluster.data_dir),
                       "-X", "stream", "-S", name, "-R", "--checkpoint=fast", "--no-password"], owner=True)
        pgcluster.append_auto_conf(cluster, {
            "primary_conninfo": f"host={host} port={primary_port} user={user} application_name={name}",
            "primary_slot_name": name,
            "hot_standby": "on",
            "archive_mode": "off",  # the primary archives; a standby would only duplicate it
        })
        pgcluster.ctl(cluster, "start")
        await pgcluster.wait_until(
            primary_dsn, f"SELECT state FROM pg_stat_replication WHERE application_name = '{name}'", "streaming")
        if sync:
            await set_synchronous(primary_dsn, name, sync_mode)
    except BaseException:
        pgcluster.drop_cluster(cluster)
        with contextlib.suppress(RuntimeError):  # keep the original error
            await drop_slot(primary_dsn, name)
        raise
    return Standby(cluster, pgcluster.server_dsn(port), sync)


async def set_synchronous(primary_dsn: str, standby: str | None, mode: str = "on") -> None:
    """Make commits wait for ``standby`` (None: stop waiting for any standby)."""
    conn = await pgcluster.connect(primary_dsn)
    try:
        names = f'"{standby}"' if standby else ""
        await conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
        await conn.execute(f"ALTER SYSTEM SET synchronous_commit = '{mode if standby else 'on'}'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()
    if standby:
        await pgcluster.wait_until(
            primary_dsn, f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{standby}'", "sync")


async def drop_slot(primary_dsn: str, name: str) -> None:
    try:
        conn = await pgcluster.connect(primary_dsn, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return
    try:  # the walsender of a just-stopped standby may hold the slot for a moment
        for _ in range(50):
            await conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                               "WHERE slot_name = $1 AND NOT active", name)
            if not await conn.fetchval("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", name):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"replication slot {name} is still in use; drop it with pg_drop_replication_slot")
    finally:
        await conn.close()


async def promote(standby_dsn: str, timeout: int = 60) -> None:
    conn = await pgcluster.connect(standby_dsn)
    try:
        if not await conn.fetchval("SELECT pg_is_in_recovery()"):
            raise ValueError("that server is not a standby (it is a primary already)")
        if not await conn.fetchval("SELECT pg_promote(true, $1)", timeout):
            raise TimeoutError(f"the standby did not finish promotion within {timeout} s")
    finally:
        await conn.close()


async def primary_status(primary_dsn: str) -> list[dict[str, Any]]:
    conn = await pgcluster.connect(primary_dsn)
    try:
        rows = await conn.fetch(
            "SELECT application_name, state, sync_state, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes, "
            "COALESCE(EXTRACT(EPOCH FROM replay_lag), 0)::float8 AS lag_seconds "
            "FROM pg_stat_replication ORDER BY application_name")
    finally:
        await conn.close()
    return [dict(row) for row in rows]


async def standby_status(standby_dsn: str) -> dict[str, Any]:
    """Replay delay as the standby sees it: 0 when it has replayed all it received."""
    conn = await pgcluster.connect(standby_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT pg_is_in_recovery() AS in_recovery, "
            "CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 "
            "ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8 "
            "AS replay_delay_seconds")
    finally:
        await conn.close()
    return dict(row) if row else {}

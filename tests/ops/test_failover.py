"""Streaming replication on throw-away clusters: sync standby, lag metrics, failover drill, no order lost."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client import generate_latest
from sqlalchemy import text

from alexandrite.kit.migrations import create_databases, upgrade
from alexandrite.kit.settings import Settings
from alexandrite.ops import pgcluster
from alexandrite.ops.replication_metrics import ReplicationMetrics
from alexandrite.shop.app import create_app
from tests.ops.clusters import drop_clusters, free_pg_port, needs_postgresql_common, own_cluster

pytestmark = [pytest.mark.e2e, needs_postgresql_common]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alexandrite", *args], env=env, capture_output=True, text=True,
                          timeout=300)


async def signed_up(client: httpx.AsyncClient) -> dict[str, str]:
    body = {"email": "failover@example.test", "password": "password-123", "name": "Failover"}
    assert (await client.post("/api/v1/auth/signup", json=body)).status_code == 201
    token = (await client.post("/api/v1/auth/token", json={k: body[k] for k in ("email", "password")})).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


async def write_until_the_primary_dies(client: httpx.AsyncClient, auth: dict[str, str], acknowledged: list[str],
                                       stop: asyncio.Event) -> int:
    """Keep creating orders; every 201 is an order the customer was promised. Returns failed attempts."""
    failed = 0
    while not stop.is_set():
        try:
            response = await client.post("/api/v1/orders", json={"alloy": "gold_585"}, headers=auth)
        except Exception:  # the database vanished under the request
            failed += 1
            await asyncio.sleep(0.05)
            continue
        if response.status_code == 201:
            acknowledged.append(response.json()["id"])
        else:
            failed += 1
            await asyncio.sleep(0.05)
    return failed


async def test_sync_standby_takes_over_without_losing_a_committed_order(
        settings: Settings, test_env: dict[str, str], tmp_path: Path) -> None:
    with own_cluster("primary") as primary:
        standby_name = f"{primary.name}_s"
        standby_port = free_pg_port()
        env_file = tmp_path / ".env"
        primary_dsn = pgcluster.server_dsn(primary.port)
        env = {**test_env, "ALEX_PG_DSN": primary_dsn}
        on_primary = settings.replace(**{"pg_dsn": primary_dsn, "run_relay": False, "run_consumer": False})
        try:
            await create_databases(on_primary, ("shop",))
            await asyncio.to_thread(upgrade, "shop", on_primary)

            created = cli(env, "replica", "create", "--port", str(standby_port), "--name", standby_name,
                          "--sync", "--env-file", str(env_file))
            assert created.returncode == 0, created.stderr
            assert f"ALEX_PG_REPLICA_DSN={pgcluster.server_dsn(standby_port)}" in env_file.read_text()
            status = cli(env, "replica", "status", "--json")
            assert status.returncode == 0, status.stderr
            standbys = json.loads(status.stdout)["standbys"]
            assert [(s["application_name"], s["state"], s["sync_state"]) for s in standbys] == [
                (standby_name, "streaming", "sync")]

            # A second, asynchronous standby can be added and dropped again (cluster and slot) without
            # touching the synchronous one.
            extra = f"{primary.name}_t"
            added = cli(env, "replica", "create", "--port", str(free_pg_port()), "--name", extra)
            assert added.returncode == 0 and "asynchronous" in added.stdout, added.stderr
            dropped = cli(env, "replica", "drop", "--name", extra)
            assert dropped.returncode == 0, dropped.stderr
            assert extra not in {c.name for c in pgcluster.clusters()}
            conn = await pgcluster.connect(primary_dsn)
            try:
                assert await conn.fetchval("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", extra) == 0
                assert await conn.fetchval("SHOW synchronous_standby_names") == f'"{standby_name}"'
            finally:
                await conn.close()
            refused = cli(env, "replica", "drop", "--name", primary.name)
            assert refused.returncode == 1 and "is the primary" in refused.stderr

            # Lag is exported for Prometheus, from the primary and from the replica side.
            metrics = ReplicationMetrics()
            await metrics.collect(on_primary.replace(**{"pg_replica_dsn": pgcluster.server_dsn(standby_port)}))
            exported = generate_latest(metrics.registry).decode()
            assert "alexandrite_pg_primary_up 1.0" in exported and "alexandrite_pg_replica_up 1.0" in exported
            assert f'alexandrite_pg_replication_synchronous{{standby="{standby_name}"}} 1.0' in exported
            assert f'alexandrite_pg_replication_lag_bytes{{standby="{standby_name}"}}' in exported

            # Lag-tolerant reads: with ALEX_PG_REPLICA_DSN set, the service's read sessions land on the standby.
            with_replica = on_primary.replace(**{"pg_replica_dsn": pgcluster.server_dsn(standby_port)})
            app = create_app(with_replica)
            async with LifespanManager(app):
                db = app.state.db
                async with db.read_sessions() as session:
                    assert (await session.execute(text("SELECT pg_is_in_recovery()"))).scalar() is True
                async with db.sessions() as session:
                    assert (await session.execute(text("SELECT pg_is_in_recovery()"))).scalar() is False

            acknowledged: list[str] = []
            async with LifespanManager(create_app(on_primary)) as manager:
                transport = httpx.ASGITransport(manager.app, raise_app_exceptions=False)
                async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
                    auth = await signed_up(client)
                    stop = asyncio.Event()
                    writers = [asyncio.create_task(write_until_the_primary_dies(client, auth, acknowledged, stop))
                               for _ in range(4)]
                    while len(acknowledged) < 60:
                        await asyncio.sleep(0.05)
                    # The primary's machine dies mid-traffic: no shutdown checkpoint, no goodbye.
                    await asyncio.to_thread(pgcluster.ctl, primary, "stop", "-m", "immediate")
                    await asyncio.sleep(0.5)
                    stop.set()
                    failures = sum(await asyncio.gather(*writers))
            assert failures > 0, "some writes should have hit the dead primary"

            promoted = cli(env, "replica", "promote", "--port", str(standby_port), "--env-file", str(env_file))
            assert promoted.returncode == 0, promoted.stderr
            print(f"\n{len(acknowledged)} orders acknowledged, {failures} writes failed on the dead primary; "
                  + promoted.stdout.splitlines()[0])
            repointed = env_file.read_text()
            assert f"ALEX_PG_DSN={pgcluster.server_dsn(standby_port)}" in repointed
            assert "ALEX_PG_REPLICA_DSN" not in repointed

            # The services, repointed at the new primary, find every order they acknowledged and take new ones.
            new_primary = on_primary.replace(**{"pg_dsn": pgcluster.server_dsn(standby_port)})
            async with LifespanManager(create_app(new_primary)) as manager:
                transport = httpx.ASGITransport(manager.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
                    token = (await client.post("/api/v1/auth/token", json={
                        "email": "failover@example.test", "password": "password-123"})).json()["access_token"]
                    auth = {"Authorization": f"Bearer {token}"}
                    missing = [order for order in acknowledged
                               if (await client.get(f"/api/v1/orders/{order}", headers=auth)).status_code != 200]
                    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged orders lost"
                    after = await client.post("/api/v1/orders", json={"alloy": "silver_925"}, headers=auth)
                    assert after.status_code == 201
        finally:
            drop_clusters(standby_name, f"{primary.name}_t")


def test_operations_commands_refuse_bad_input(test_env: dict[str, str], tmp_path: Path) -> None:
    for args, expected in (
        (("replica", "create", "--port", "80"), "port must be between"),
        (("replica", "create", "--port", "5999", "--name", "Bad-Name"), "standby name"),
        (("replica", "promote"), "--port"),
        (("backup", "restore-drill", "--port", "x"), "invalid"),
        (("backup", "restore-drill"), "run `alexandrite backup setup` first"),
        (("backup", "base"), "run `alexandrite backup setup` first"),
        (("up", "--replicas", "-1", "--no-migrate"), "cannot be negative"),
    ):
        result = cli({**test_env, "ALEX_BACKUP_REPO": str(tmp_path / "none")}, *args)
        assert result.returncode != 0 and expected in result.stderr, (args, result.stderr)

"""Replication lag as Prometheus metrics (``alexandrite replica exporter``)."""

from __future__ import annotations

import asyncio

import asyncpg
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from alexandrite.kit.settings import Settings
from alexandrite.ops.replication import primary_status, standby_status


class ReplicationMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.primary_up = Gauge("alexandrite_pg_primary_up", "1 when the primary answered the last scrape",
                                registry=self.registry)
        self.standbys = Gauge("alexandrite_pg_streaming_standbys", "standbys streaming from the primary",
                              registry=self.registry)
        self.lag_bytes = Gauge("alexandrite_pg_replication_lag_bytes", "WAL bytes the standby has not replayed yet",
                               ["standby"], registry=self.registry)
        self.lag_seconds = Gauge("alexandrite_pg_replication_lag_seconds",
                                 "replay lag reported by the primary (pg_stat_replication.replay_lag)",
                                 ["standby"], registry=self.registry)
        self.synchronous = Gauge("alexandrite_pg_replication_synchronous", "1 when commits wait for this standby",
                                 ["standby"], registry=self.registry)
        self.replica_up = Gauge("alexandrite_pg_replica_up", "1 when the read replica answered and is in recovery",
                                registry=self.registry)
        self.replay_delay = Gauge("alexandrite_pg_replica_replay_delay_seconds",
                                  "age of the last replayed transaction on the read replica (0 when caught up)",
                                  registry=self.registry)

    async def collect(self, settings: Settings) -> None:
        try:
            rows = await primary_status(settings.db.dsn)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            self.primary_up.set(0)
        else:
            self.primary_up.set(1)
            self.standbys.set(sum(1 for r in rows if r["state"] == "streaming"))
            for metric in (self.lag_bytes, self.lag_seconds, self.synchronous):
                metric.clear()
            for row in rows:
                name = row["application_name"]
                self.lag_bytes.labels(name).set(row["lag_bytes"] or 0)
                self.lag_seconds.labels(name).set(row["lag_seconds"] or 0)
                self.synchronous.labels(name).set(1 if row["sync_state"] in ("sync", "quorum") else 0)
        if settings.db.replica_dsn:
            try:
                status = await standby_status(settings.db.replica_dsn)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                self.replica_up.set(0)
            else:
                self.replica_up.set(1 if status.get("in_recovery") else 0)
                self.replay_delay.set(status.get("replay_delay_seconds") or 0)


async def serve_exporter(settings: Settings, port: int, interval: float = 5.0) -> None:
    metrics = ReplicationMetrics()
    start_http_server(port, addr=settings.net.host, registry=metrics.registry)
    while True:
        await metrics.collect(settings)
        await asyncio.sleep(interval)

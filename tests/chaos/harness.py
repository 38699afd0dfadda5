"""Chaos harness: the platform behind the test's own proxies, progress probes, the exactly-once check."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from alexandrite.kit.settings import Settings
from tests.chaos.proxy import CuttableProxy
from tests.e2e.processes import Platform
from tests.e2e.test_order_pipeline import fetch

PRICED = ("PRICE_CALCULATED", "PRICE_CALCULATION_FAILED")
ARTIFACTS = Path("test-artifacts")


@dataclass
class ChaosPlatform:
    platform: Platform
    rabbit: CuttableProxy | None
    redis: CuttableProxy | None
    report: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, settings: Settings, base_env: dict[str, str], name: str, workers: int, proxied: bool = True,
              **env_overrides: str) -> "ChaosPlatform":
        """``proxied``: RabbitMQ and Redis behind proxies the test can cut; without, direct connections
        (the proxies run in the test's process and would share its CPU with a load generator)."""
        rabbit, redis = (CuttableProxy(5672).start(), CuttableProxy(6379).start()) if proxied else (None, None)
        vhost = settings.broker.url.rsplit("/", 1)[1]
        env = {**base_env, "ALEX_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{rabbit.port if rabbit else 5672}/{vhost}",
               "ALEX_REDIS_URL": f"redis://127.0.0.1:{redis.port if redis else 6379}/0", "ALEX_LOG_LEVEL": "WARNING",
               "ALEX_BREAKER_RESET_SECONDS": "2",
               "ALEX_DB_POOL_SIZE": "3", **env_overrides}  # the machine's PostgreSQL is shared: few connections
        platform = Platform.configure(settings, env, ARTIFACTS / f"{name}-{uuid.uuid4().hex[:6]}")
        platform.start_all(workers=workers)
        return cls(platform, rabbit, redis)

    @property
    def settings(self) -> Settings:
        return self.platform.settings

    def stop(self) -> None:
        try:
            self.platform.stop_all()
        finally:
            for proxy in (self.rabbit, self.redis):
                if proxy is not None:
                    proxy.close()

    async def priced(self) -> int:
        rows = await fetch(self.settings, "mes", "SELECT count(*) AS n FROM pricing_jobs WHERE state IN "
                           "('priced', 'failed')")
        return int(rows[0]["n"])

    async def all_ready(self) -> bool:
        async with httpx.AsyncClient(timeout=2) as client:
            for service in ("shop", "crm", "mes"):
                try:
                    response = await client.get(self.settings.service_url(service) + "/health/ready")  # type: ignore[arg-type]
                except httpx.HTTPError:
                    return False
                if response.status_code != 200:
                    return False
        return True

    async def recovery_seconds(self, since: float, priced_before: int, need: int = 5, limit: float = 120) -> float:
        """Seconds from ``since`` until every API is ready again and pricing made ``need`` more results."""
        while time.monotonic() - since < limit:
            if await self.all_ready() and await self.priced() >= priced_before + need:
                return round(time.monotonic() - since, 1)
            await asyncio.sleep(0.2)
        raise AssertionError(f"no recovery within {limit} s; logs in {self.platform.log_dir}")

    def write_report(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{name}.json").write_text(json.dumps(self.report, indent=2, default=str))
        print(f"\n{name}: {json.dumps(self.report, default=str)}")


async def wait_until_priced_everywhere(settings: Settings, ids: list[uuid.UUID], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    tables = {"shop": "orders", "crm": "orders", "mes": "production_orders"}
    while True:
        pending = {}
        for service, table in tables.items():
            rows = await fetch(settings, service, f"SELECT count(*) AS n FROM {table} WHERE id = ANY($1) "  # noqa: S608
                               "AND status = ANY($2)", ids, list(PRICED))
            pending[service] = len(ids) - int(rows[0]["n"])
        if not any(pending.values()):
            return
        assert time.monotonic() < deadline, f"orders not priced in every view: {pending}"
        await asyncio.sleep(0.5)


async def exactly_once_report(settings: Settings, ids: list[uuid.UUID]) -> dict[str, int]:
    """Lost: accepted orders missing a priced status in some view. Duplicated: a status applied twice,
    a history that differs between services, or an order priced twice."""
    histories: dict[str, dict[uuid.UUID, list[tuple[int, str]]]] = {}
    for service in ("shop", "crm", "mes"):
        rows = await fetch(settings, service, "SELECT order_id, seq, status FROM order_history "
                           "WHERE order_id = ANY($1) ORDER BY order_id, seq", ids)
        per_order: dict[uuid.UUID, list[tuple[int, str]]] = {}
        for row in rows:
            per_order.setdefault(row["order_id"], []).append((row["seq"], row["status"]))
        histories[service] = per_order
    lost = duplicated = diverged = 0
    for order_id in ids:
        views = [histories[s].get(order_id, []) for s in ("shop", "crm", "mes")]
        if any(not any(status in PRICED for _, status in view) for view in views):
            lost += 1
        for view in views:
            statuses = [status for _, status in view]
            seqs = [seq for seq, _ in view]
            if len(statuses) != len(set(statuses)) or seqs != list(range(1, len(seqs) + 1)):
                duplicated += 1
        if not views[0] == views[1] == views[2]:
            diverged += 1
    priced_twice = await fetch(settings, "mes", "SELECT order_id FROM pricing_jobs WHERE order_id = ANY($1) "
                               "AND state IN ('priced', 'failed') GROUP BY order_id HAVING count(*) > 1", ids)
    return {"accepted": len(ids), "lost": lost, "duplicated": duplicated + len(priced_twice), "diverged": diverged}

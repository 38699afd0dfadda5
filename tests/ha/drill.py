"""Failover drill helpers: the platform on the HA layout, faults, recovery times and per-fault figures."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from alexandrite.devtools.sandbox import sandbox_env, sandbox_settings
from alexandrite.kit.messaging.topology import setup_topology
from alexandrite.kit.migrations import create_databases, upgrade
from alexandrite.kit.settings import SERVICES, Settings
from alexandrite.ops.ha.stack import HaStack
from tests.chaos.harness import PRICED, ChaosPlatform
from tests.e2e.processes import fetch


def ha_settings(stack: HaStack, root: Path) -> tuple[Settings, str]:
    """Sandbox settings (own databases, vhost, Redis prefix) on the HA layout's endpoints."""
    token = uuid.uuid4().hex[:8]
    vhost = f"alextest-ha-{token}"
    settings = sandbox_settings(root, token, **stack.layout.settings_update(vhost))
    return settings, vhost


def provision_on(stack: HaStack, settings: Settings, vhost: str) -> None:
    stack.rabbit.add_vhost(vhost)
    asyncio.run(create_databases(settings))
    for service in SERVICES:
        upgrade(service, settings)
    asyncio.run(setup_topology(settings))  # all three brokers run: every quorum queue gets a member on each


def start_platform(stack: HaStack, settings: Settings, vhost: str, base_env: dict[str, str], name: str,
                   workers: int) -> ChaosPlatform:
    """The chaos harness's platform, its processes given every address of every cluster (``base_env``: the
    environment to start from; its ``ALEX_*`` variables are replaced)."""
    return ChaosPlatform.start(settings, sandbox_env(settings, base_env), name, workers, proxied=False,
                               **stack.layout.platform_env(vhost))


@dataclass
class Fault:
    name: str
    killed: str
    at: float  # wall clock of the kill
    in_flight: list[uuid.UUID]
    recovery_seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Drill:
    """Counts priced orders and readiness through outages (the database itself may be the one away)."""

    def __init__(self, chaos: ChaosPlatform) -> None:
        self.chaos = chaos
        self.faults: list[Fault] = []
        self.baseline_seconds: float | None = None  # 5 results priced without a fault

    async def priced(self) -> int | None:
        try:
            return await asyncio.wait_for(self.chaos.priced(), 5)
        except Exception:  # the database is failing over
            return None

    async def when_priced(self, count: int) -> int:
        while (done := await self.priced()) is None or done < count:
            await asyncio.sleep(0.2)
        return done

    async def in_flight(self) -> list[uuid.UUID]:
        """Orders the shop acknowledged that are not priced yet (created, uploaded, submitted or being priced)."""
        rows = await fetch(self.chaos.settings, "shop", "SELECT id FROM orders WHERE status <> ALL($1)", list(PRICED))
        return [row["id"] for row in rows]

    async def begin(self, name: str, killed: str) -> Fault:
        in_flight = await self.in_flight()
        fault = Fault(name, killed, time.time(), in_flight)
        self.faults.append(fault)
        return fault

    async def recovered(self, fault: Fault, priced_before: int, need: int = 5, limit: float = 180) -> float:
        """Seconds from the kill until every API is ready again and pricing made ``need`` more results."""
        while time.time() - fault.at < limit:
            priced = await self.priced()
            if priced is not None and priced >= priced_before + need and await self.chaos.all_ready():
                fault.recovery_seconds = round(time.time() - fault.at, 1)
                return fault.recovery_seconds
            await asyncio.sleep(0.2)
        raise AssertionError(f"{fault.name}: orders did not flow again within {limit} s; "
                             f"logs in {self.chaos.platform.log_dir}")


def acknowledged_at(history: list[dict[str, Any]]) -> float | None:
    """When the shop acknowledged the order (its INITIATED entry), as a wall-clock timestamp."""
    for entry in history:
        if entry["status"] == "INITIATED":
            return datetime.fromisoformat(entry["at"]).timestamp()
    return None


async def per_fault_figures(settings: Settings, faults: list[Fault],
                            acknowledged: dict[uuid.UUID, float]) -> list[dict[str, Any]]:
    """Per fault: orders in flight at the kill, orders acknowledged from the kill to the next fault, and how
    many of those (and of the in-flight ones) were lost or duplicated."""
    from tests.chaos.harness import exactly_once_report

    rows = []
    for index, fault in enumerate(faults):
        until = faults[index + 1].at if index + 1 < len(faults) else float("inf")
        window = [oid for oid, at in acknowledged.items() if fault.at <= at < until]
        report = await exactly_once_report(settings, sorted(set(window) | set(fault.in_flight)))
        rows.append({"fault": fault.name, "killed": fault.killed, "in_flight": len(fault.in_flight),
                     "acknowledged": len(window), "lost": report["lost"],
                     "duplicated": report["duplicated"] + report["diverged"],
                     "recovery_seconds": fault.recovery_seconds, **fault.details})
    return rows

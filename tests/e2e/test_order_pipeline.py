"""End to end: real processes, 50 orders from upload to CLOSED, a pricing worker SIGKILLed mid-job."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from alexandrite.devtools.simulate import simulate
from alexandrite.kit.settings import Settings
from tests.e2e.processes import Platform, fetch

pytestmark = pytest.mark.e2e
ORDERS = 50


@pytest.fixture
def platform(settings: Settings, test_env: dict[str, str], tmp_path: Path) -> Iterator[Platform]:
    running = Platform.configure(settings, test_env, Path("test-artifacts") / f"e2e-{uuid.uuid4().hex[:6]}")
    try:
        running.start_all(workers=3)
        yield running
    finally:
        running.stop_all()


RUNNING_ON_WORKER_1 = "SELECT id FROM pricing_jobs WHERE state = 'running' AND worker = 'worker-1' LIMIT 1"


async def kill_a_worker_mid_job(platform: Platform) -> str:
    """Wait until worker-1 is pricing a model, then SIGKILL it; returns the job it held.

    The worker is frozen (SIGSTOP) first and the job re-read, so the kill surely lands mid-job and not
    just after the job finished."""
    for _ in range(600):
        if await fetch(platform.settings, "mes", RUNNING_ON_WORKER_1):
            platform.signal("worker-1", signal.SIGSTOP)
            rows = await fetch(platform.settings, "mes", RUNNING_ON_WORKER_1)
            if rows:
                await asyncio.to_thread(platform.kill, "worker-1")
                return str(rows[0]["id"])
            platform.signal("worker-1", signal.SIGCONT)
        await asyncio.sleep(0.05)
    raise AssertionError("worker-1 never took a job")


async def test_fifty_orders_survive_a_killed_worker(platform: Platform) -> None:
    settings = platform.settings
    killer = asyncio.create_task(kill_a_worker_mid_job(platform))
    outcomes, _ = await simulate(settings, ORDERS, concurrency=12, close=True, timeout=120, seed=7)
    killed_job = await killer
    errors = [o.error for o in outcomes if o.error]
    assert not errors, errors[:3]
    ids = [uuid.UUID(o.order_id) for o in outcomes]
    assert len(set(ids)) == ORDERS

    # The job the dead worker held was priced by another worker, once.
    job = await fetch(settings, "mes", "SELECT state, attempts, worker FROM pricing_jobs WHERE id = $1",
                      uuid.UUID(killed_job))
    assert job[0]["state"] == "priced" and job[0]["attempts"] >= 2 and job[0]["worker"] != "worker-1"

    # Every order priced exactly once.
    jobs = await fetch(settings, "mes", "SELECT order_id, count(*) AS n FROM pricing_jobs "
                       "WHERE order_id = ANY($1) AND state = 'priced' GROUP BY order_id", ids)
    assert {r["order_id"] for r in jobs} == set(ids) and all(r["n"] == 1 for r in jobs)

    # All three services agree on every order's status and on its whole history.
    histories = {}
    for service in ("shop", "crm", "mes"):
        final = await fetch(settings, service, "SELECT id, status, seq FROM orders WHERE id = ANY($1)"
                            if service != "mes" else
                            "SELECT id, status, seq FROM production_orders WHERE id = ANY($1)", ids)
        assert len(final) == ORDERS, service
        assert {r["status"] for r in final} == {"CLOSED"}, service
        rows = await fetch(settings, service, "SELECT order_id, seq, status FROM order_history "
                           "WHERE order_id = ANY($1) ORDER BY order_id, seq", ids)
        histories[service] = [(r["order_id"], r["seq"], r["status"]) for r in rows]
        priced = [h for h in histories[service] if h[2] == "PRICE_CALCULATED"]
        assert len(priced) == ORDERS, service
    assert histories["shop"] == histories["crm"] == histories["mes"]
    expected = ["INITIATED", "FILE_UPLOADED", "SUBMITTED", "PRICE_CALCULATING", "PRICE_CALCULATED",
                "MANUFACTURING_APPROVED", "MANUFACTURING_STARTED", "MANUFACTURING_COMPLETED", "PACKAGING",
                "SHIPPED", "CLOSED"]
    per_order: dict[uuid.UUID, list[str]] = {}
    for order_id, _seq, status in histories["shop"]:
        per_order.setdefault(order_id, []).append(status)
    assert all(statuses == expected for statuses in per_order.values())

    # Nothing left behind: outboxes drained, no parked events.
    for service in ("shop", "crm", "mes"):
        for _ in range(100):
            left = await fetch(settings, service, "SELECT count(*) AS n FROM outbox")
            if left[0]["n"] == 0:
                break
            await asyncio.sleep(0.1)
        assert left[0]["n"] == 0, service
        parked = await fetch(settings, service, "SELECT count(*) AS n FROM inbox WHERE applied_at IS NULL "
                             "AND order_id = ANY($1)", ids)
        assert parked[0]["n"] == 0, service

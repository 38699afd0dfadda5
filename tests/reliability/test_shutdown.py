"""Graceful shutdown with real processes: readiness turns false first, in-flight work finishes."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from alexandrite.devtools.simulate import simulate
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import read_token
from tests.e2e.processes import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture
def platform(settings: Settings, test_env: dict[str, str]) -> Iterator[Platform]:
    env = {**test_env, "ALEX_SHUTDOWN_DRAIN_SECONDS": "2"}
    running = Platform.configure(settings, env, Path("test-artifacts") / f"shutdown-{uuid.uuid4().hex[:6]}")
    try:
        yield running
    finally:
        running.stop_all()


async def _customer(client: httpx.AsyncClient, shop: str) -> dict[str, str]:
    email = f"s-{uuid.uuid4().hex[:8]}@example.test"
    await client.post(f"{shop}/api/v1/auth/signup", json={"email": email, "password": "pass-word-1", "name": "S"})
    token = (await client.post(f"{shop}/api/v1/auth/token",
                               json={"email": email, "password": "pass-word-1"})).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def test_api_sigterm_turns_readiness_off_first_and_finishes_in_flight_requests(platform: Platform) -> None:
    platform.start("shop", "serve", "shop")
    shop = platform.settings.net.shop_url
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(300):
            try:
                if (await client.get(f"{shop}/health/ready")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        auth = await _customer(client, shop)
        outcomes: list[str] = []
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                try:
                    response = await client.post(f"{shop}/api/v1/orders", headers=auth, json={"alloy": "gold_585"})
                    outcomes.append(str(response.status_code))
                except httpx.ConnectError:
                    outcomes.append("refused")  # listener closed: a new connection, never a lost answer
                    await asyncio.sleep(0.05)
                except httpx.HTTPError as error:
                    outcomes.append(type(error).__name__)

        loaders = [asyncio.create_task(load()) for _ in range(8)]
        await asyncio.sleep(0.5)
        platform.signal("shop", signal.SIGTERM)
        signalled = time.monotonic()
        ready_codes, live_codes = [], []
        while time.monotonic() - signalled < 1.5:  # inside the 2 s drain
            ready_codes.append((await client.get(f"{shop}/health/ready")).status_code)
            live_codes.append((await client.get(f"{shop}/health/live")).status_code)
            await asyncio.sleep(0.1)
        served_while_draining = len([o for o in outcomes if o == "201"])
        process = platform.processes["shop"]
        code = await asyncio.to_thread(process.wait, 30)
        stop.set()
        await asyncio.gather(*loaders)
    assert ready_codes and set(ready_codes) == {503}, ready_codes  # not ready from the first probe on
    assert set(live_codes) == {200}  # still alive and serving while it drains
    assert served_while_draining > 0
    # A request sent on an idle keep-alive connection just as the listener closes is never read
    # (ReadError); what must not happen is an order created whose answer was lost.
    assert set(outcomes) <= {"201", "refused", "ReadError", "RemoteProtocolError"}, set(outcomes)
    customer_id = read_token(platform.settings, auth["Authorization"].split()[1]).subject
    conn = await asyncpg.connect(platform.settings.database_url("shop").replace("+asyncpg", ""))
    try:
        created = await conn.fetchval("SELECT count(*) FROM orders WHERE owner_id = $1", uuid.UUID(customer_id))
    finally:
        await conn.close()
    assert created == outcomes.count("201")  # every order the server made was answered
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown


# Only jobs of this test: the session's queue may still hold other tests' leftovers.
RUNNING = ("SELECT id FROM pricing_jobs WHERE state = 'running' AND worker = 'worker-1' AND enqueued_at > $1 "
           "LIMIT 1")


async def test_worker_sigterm_mid_job_finishes_the_job_then_exits(platform: Platform, settings: Settings) -> None:
    platform.start_all(workers=1)
    dsn = settings.database_url("mes").replace("+asyncpg", "")
    conn = await asyncpg.connect(dsn)
    since = await conn.fetchval("SELECT now()")
    await conn.close()

    async def stop_mid_job() -> str:
        conn = await asyncpg.connect(dsn)
        try:
            for _ in range(1200):
                if await conn.fetchval(RUNNING, since):
                    platform.signal("worker-1", signal.SIGSTOP)  # frozen mid-job
                    job = await conn.fetchval(RUNNING, since)
                    if job:
                        platform.signal("worker-1", signal.SIGTERM)
                        platform.signal("worker-1", signal.SIGCONT)
                        return str(job)
                    platform.signal("worker-1", signal.SIGCONT)
                await asyncio.sleep(0.02)
        finally:
            await conn.close()
        raise AssertionError("the worker never took a job")

    stopper = asyncio.create_task(stop_mid_job())
    run = asyncio.create_task(simulate(platform.settings, 12, concurrency=6, timeout=120, seed=3))
    job = await stopper
    code = await asyncio.to_thread(platform.processes["worker-1"].wait, 30)
    assert code == 0
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT state, worker, attempts FROM pricing_jobs WHERE id = $1", uuid.UUID(job))
    finally:
        await conn.close()
    assert row["state"] == "priced" and row["worker"] == "worker-1" and row["attempts"] == 1  # finished, not redone
    platform.start_worker("worker-2")  # the rest of the queue is still there for the next worker
    outcomes, _ = await run
    assert not [o.error for o in outcomes if o.error]
    assert {o.final_status for o in outcomes} <= {"PRICE_CALCULATED", "PRICE_CALCULATION_FAILED"}

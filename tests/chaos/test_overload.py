"""Overload: 10x the measured capacity for 60 s. Every request is answered (2xx, 429 or 503), memory
stays bounded, and every order accepted for pricing is priced exactly once in every view.

The load comes from two generator processes sending pre-built requests (tests/chaos/loadgen.py),
and the platform talks to RabbitMQ and Redis directly: no proxy in the test's process competes with
the generator for the CPU.

Run: ``./scripts/chaos.sh -k overload`` (or ``.venv/bin/python -m pytest -m chaos tests/chaos -s -k overload``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from alexandrite.models3d.rings import ring
from alexandrite.models3d.writers import to_binary_stl
from tests.chaos import loadgen
from tests.chaos.harness import PRICED, ChaosPlatform, exactly_once_report, wait_until_priced_everywhere

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]
DURATION = float(os.environ.get("CHAOS_OVERLOAD_SECONDS", "60"))
FACTOR = 10
CUSTOMERS = 10
MODEL = to_binary_stl(ring(segments=48, profile_segments=8))
ANSWERS = {200, 201, 202, 429, 503}
GENERATORS = 2


@pytest.fixture
def chaos(settings, test_env) -> Iterator[ChaosPlatform]:  # type: ignore[no-untyped-def]
    running = ChaosPlatform.start(
        settings, test_env, "chaos-overload", workers=2, proxied=False,
        ALEX_PRICING_STAGE_SLA_SECONDS="10", ALEX_BACKPRESSURE_MODE="reject", ALEX_BACKPRESSURE_CACHE_SECONDS="1",
        ALEX_RATE_LIMIT_PER_CUSTOMER="180", ALEX_RATE_LIMIT_PER_IP="1000000")
    try:
        yield running
    finally:
        running.stop()


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def customers(client: httpx.AsyncClient, shop: str, count: int) -> list[str]:
    """Bearer tokens of ``count`` new customers."""
    tokens = []
    for _ in range(count):
        email = f"load-{uuid.uuid4().hex[:8]}@example.test"
        await client.post(f"{shop}/api/v1/auth/signup", json={"email": email, "password": "load-pass-1", "name": "L"})
        tokens.append((await client.post(f"{shop}/api/v1/auth/token",
                                         json={"email": email, "password": "load-pass-1"})).json()["access_token"])
    return tokens


async def priced_order(client: httpx.AsyncClient, shop: str, auth: dict[str, str]) -> None:
    """create -> upload -> submit, then wait until it is priced; every step must succeed."""
    created = await client.post(f"{shop}/api/v1/orders", json={"alloy": "gold_585"},
                                headers={**auth, "Idempotency-Key": uuid.uuid4().hex})
    assert created.status_code == 201, created.text
    url = f"{shop}/api/v1/orders/{created.json()['id']}"
    uploaded = await client.put(f"{url}/model", files={"file": ("ring.stl", MODEL)}, headers=auth)
    assert uploaded.status_code == 200, uploaded.text
    submitted = await client.post(f"{url}/submit", headers=auth)
    assert submitted.status_code == 202, submitted.text
    deadline = time.monotonic() + 120
    while True:
        polled = await client.get(url, headers=auth)
        if polled.status_code in (429, 503):  # limited or shedding: wait as told, like any client
            await asyncio.sleep(float(polled.headers.get("Retry-After", "1")))
        else:
            assert polled.status_code == 200, polled.text
            if polled.json()["status"] in PRICED:
                return
            await asyncio.sleep(0.1)
        assert time.monotonic() < deadline, f"not priced within 120 s: {polled.text}"


async def capacity(client: httpx.AsyncClient, shop: str, tokens: list[str], clients: int = 8,
                   seconds: float = 15) -> float:
    """Orders per second the platform prices end to end, closed loop: ``clients`` clients, each taking
    its customers in turn (an order with its polls is several requests; spread over several customers,
    each stays inside its per-customer limit, so the figure is the platform's, not the limit's)."""
    done = 0
    deadline = time.monotonic() + seconds

    async def loop(index: int) -> None:
        nonlocal done
        own = tokens[index::clients]
        while time.monotonic() < deadline:
            await priced_order(client, shop, {"Authorization": f"Bearer {own[done % len(own)]}"})
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(loop(i) for i in range(clients)))
    return done / (time.monotonic() - started)


async def offer(shop: str, tokens: list[str], rate: float, pids: dict[str, int]
                ) -> tuple[dict[str, Any], dict[str, list[tuple[float, float]]]]:
    """Run the generator processes on one open-loop schedule; sample every process's RSS meanwhile."""
    address = urlsplit(shop)
    start = time.time() + 2  # the generator processes start meanwhile
    plans = [loadgen.Plan(host=address.hostname or "127.0.0.1", port=address.port or 80, tokens=tuple(tokens),
                          model=MODEL, rate=rate, start=start, duration=DURATION, share=share, shares=GENERATORS)
             for share in range(GENERATORS)]
    rss: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
    with multiprocessing.get_context("spawn").Pool(GENERATORS) as pool:
        pending = pool.map_async(loadgen.run, plans)
        while not pending.ready():
            if (now := time.time()) >= start:
                for name, pid in pids.items():
                    rss[name].append((now - start, rss_mb(pid)))
            await asyncio.sleep(1)
        return loadgen.combine(pending.get()), rss


async def test_ten_times_capacity_for_a_minute(chaos: ChaosPlatform) -> None:
    shop = chaos.settings.net.shop_url
    pids = {name: p.pid for name, p in chaos.platform.processes.items()}
    async with httpx.AsyncClient(timeout=30) as client:
        measured = await capacity(client, shop, await customers(client, shop, 32), clients=8)
        tokens = await customers(client, shop, CUSTOMERS)  # fresh limits for the load
    rate = FACTOR * measured
    load, rss = await offer(shop, tokens, rate, pids)
    answers: dict[str, int] = load["answers"]
    accepted = [uuid.UUID(order_id) for order_id in load.pop("accepted")]

    drain_started = time.monotonic()
    await wait_until_priced_everywhere(chaos.settings, accepted, timeout=300)
    drain = time.monotonic() - drain_started
    report = await exactly_once_report(chaos.settings, accepted)
    memory = {name: {"first_20s_max_mb": round(max((m for t, m in samples if t < 20), default=0), 1),
                     "last_20s_max_mb": round(max((m for t, m in samples if DURATION - 20 <= t < DURATION), default=0), 1)}
              for name, samples in rss.items()}
    sent_per_s = load["sent"] / max(load["offered_seconds"], DURATION)
    chaos.report.update(capacity_orders_per_s=round(measured, 2), scheduled_attempts_per_s=round(rate, 2),
                        sent_attempts_per_s=round(sent_per_s, 2), sent_times_capacity=round(sent_per_s / measured, 2),
                        **load, drain_seconds=round(drain, 1), memory=memory, **report)
    chaos.write_report("chaos-overload")
    assert set(answers) <= {str(code) for code in ANSWERS}, answers  # no timeouts, resets, 5xx but 503
    assert answers.get("429", 0) + answers.get("503", 0) > 0  # it really was overload, refused politely
    assert load["without_retry_after"] == 0, load["refusals"]  # every refusal says when to come back
    assert load["not_sent"] == 0 and load["sent"] == load["scheduled"], load  # the whole 10x was offered
    assert report["lost"] == report["duplicated"] == report["diverged"] == 0, report
    for name, figures in memory.items():
        assert figures["last_20s_max_mb"] <= 1.5 * figures["first_20s_max_mb"] + 50, (name, figures)

"""500 orders flow while pricing workers are SIGKILLed, RabbitMQ drops out and is restarted, Redis drops
out, and API processes are killed and restarted; afterwards every accepted order reached its status exactly
once in every view.

Run: ``./scripts/chaos.sh`` (or ``.venv/bin/python -m pytest -m chaos tests/chaos -s``).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from alexandrite.devtools.simulate import simulate
from alexandrite.kit.settings import Settings
from tests.chaos.harness import ChaosPlatform, exactly_once_report, wait_until_priced_everywhere

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]
ORDERS = 500


@pytest.fixture
def chaos(settings: Settings, test_env: dict[str, str]) -> Iterator[ChaosPlatform]:
    running = ChaosPlatform.start(settings, test_env, "chaos-faults", workers=3)
    try:
        yield running
    finally:
        running.stop()


async def _when_priced(chaos: ChaosPlatform, count: int) -> int:
    while (done := await chaos.priced()) < count:
        await asyncio.sleep(0.2)
    return done


def restart_broker() -> None:
    """Stop and start the RabbitMQ application on this machine (the whole broker, every vhost)."""
    for command in (["rabbitmqctl", "stop_app"], ["rabbitmqctl", "start_app"], ["rabbitmqctl", "await_startup"]):
        subprocess.run(command, check=True, capture_output=True, timeout=180)


async def inject_faults(chaos: ChaosPlatform) -> dict[str, float]:
    platform = chaos.platform
    recovery: dict[str, float] = {}
    assert chaos.rabbit is not None and chaos.redis is not None, "faults need the proxies"

    # 1. SIGKILL two of the three pricing workers mid-flow; replacements start 2 s later.
    before = await _when_priced(chaos, 40)
    platform.kill("worker-1")
    platform.kill("worker-2")
    started = time.monotonic()
    await asyncio.sleep(2)
    platform.start_worker("worker-4")
    platform.start_worker("worker-5")
    recovery["pricing workers SIGKILLed (2 of 3), replaced after 2 s"] = await chaos.recovery_seconds(
        started, await chaos.priced())
    _ = before

    # 2. RabbitMQ unreachable for 5 s: every connection of every process dropped, new ones refused.
    await _when_priced(chaos, 140)
    chaos.rabbit.cut()
    await asyncio.sleep(5)
    chaos.rabbit.restore()
    restored = time.monotonic()
    recovery["RabbitMQ connections dropped, broker unreachable 5 s"] = await chaos.recovery_seconds(
        restored, await chaos.priced())

    # 3. RabbitMQ itself restarted (stop_app, start_app): its durable quorum queues keep every message.
    await _when_priced(chaos, 190)
    restarted = time.monotonic()
    await asyncio.to_thread(restart_broker)
    recovery["RabbitMQ restarted (stop_app, start_app)"] = await chaos.recovery_seconds(
        restarted, await chaos.priced())

    # 4. The mes and shop API processes SIGKILLed and restarted.
    await _when_priced(chaos, 240)
    platform.kill("mes")
    platform.kill("shop")
    killed = time.monotonic()
    await asyncio.sleep(1)
    platform.start("mes", "serve", "mes")
    platform.start("shop", "serve", "shop")
    recovery["shop and mes API processes SIGKILLed, restarted after 1 s"] = await chaos.recovery_seconds(
        killed, await chaos.priced())

    # 5. Redis unreachable for 5 s (rate limits fail open, counted).
    await _when_priced(chaos, 340)
    chaos.redis.cut()
    cut = time.monotonic()
    priced_at_cut = await chaos.priced()
    await asyncio.sleep(5)
    chaos.redis.restore()
    recovery["Redis unreachable 5 s (work went on meanwhile)"] = round(
        0.0 if await chaos.priced() > priced_at_cut else time.monotonic() - cut, 1)
    return recovery


async def test_orders_survive_killed_workers_broker_and_redis_outages_and_killed_apis(
        chaos: ChaosPlatform) -> None:
    started = time.monotonic()
    faults = asyncio.create_task(inject_faults(chaos))
    outcomes, elapsed = await simulate(chaos.settings, ORDERS, concurrency=24, timeout=240, seed=2026)
    recovery = await faults
    errors = [f"{o.order_id}: {o.error}" for o in outcomes if o.error]
    accepted = [uuid.UUID(o.order_id) for o in outcomes if o.order_id and not o.error]
    chaos.report.update(orders=ORDERS, simulate_seconds=round(elapsed, 1), client_errors=errors[:5],
                        recovery_seconds=recovery)
    try:
        await wait_until_priced_everywhere(chaos.settings, accepted)
    finally:
        chaos.report.update(await exactly_once_report(chaos.settings, accepted),
                            elapsed_seconds=round(time.monotonic() - started, 1))
        chaos.write_report("chaos-faults")
    assert not errors, errors[:3]
    assert chaos.report["accepted"] == ORDERS
    assert chaos.report["lost"] == chaos.report["duplicated"] == chaos.report["diverged"] == 0, chaos.report

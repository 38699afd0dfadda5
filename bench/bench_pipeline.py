"""Pipeline throughput: orders per second from submit to PRICE_CALCULATED with 1, 2 and 4 pricing
workers, against a bare publish/consume loop on the same RabbitMQ.

Run: .venv/bin/python bench/bench_pipeline.py [--orders 200] [--workers 1,2,4]

Each configuration gets its own sandbox (databases, vhost) and real processes: the three APIs
(with their relays and consumers) and N workers. Orders carry a small ring model (~1.5k
triangles) so the figures measure the platform, not the geometry. The bare loop publishes
the same number of persistent messages with confirms to a quorum queue and consumes them
with manual acks: the floor any broker-based pipeline pays per message.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alexandrite.kit.messaging.connection import connect  # noqa: E402
from alexandrite.kit.sandbox import deprovision, provision, sandbox_env, sandbox_settings  # noqa: E402
from alexandrite.mes.pricing.rings import ring, to_binary_stl  # noqa: E402
from tests.e2e.processes import Platform  # noqa: E402

PRICED = {"PRICE_CALCULATED", "PRICE_CALCULATION_FAILED"}


async def bare_loop(amqp_url: str, count: int, body_size: int = 500) -> float:
    """Seconds for `count` messages published with confirms and consumed with acks (one process)."""
    connection = await connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=50)
        queue = await channel.declare_queue(f"bench.{uuid.uuid4().hex[:6]}", durable=True,
                                            arguments={"x-queue-type": "quorum"})
        done = asyncio.Event()
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received == count:
                done.set()

        await queue.consume(on_message)
        body = b"x" * body_size
        started = time.perf_counter()
        window = 100
        for offset in range(0, count, window):
            await asyncio.gather(*(channel.default_exchange.publish(
                aio_pika.Message(body=body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue.name)
                for _ in range(min(window, count - offset))))
        await done.wait()
        elapsed = time.perf_counter() - started
        await queue.delete(if_unused=False, if_empty=False)
        return elapsed


async def drive(settings, orders: int, concurrency: int, model: bytes) -> tuple[float, list[float]]:
    async with httpx.AsyncClient(timeout=60) as client:
        shop = settings.shop_url
        email = f"bench-{uuid.uuid4().hex[:8]}@example.test"
        await client.post(f"{shop}/api/v1/auth/signup", json={"email": email, "password": "bench-pass", "name": "B"})
        token = (await client.post(f"{shop}/api/v1/auth/token",
                                   json={"email": email, "password": "bench-pass"})).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        ids = []
        for _ in range(orders):  # prepared before the clock starts: upload is not what we measure here
            oid = (await client.post(f"{shop}/api/v1/orders", json={"alloy": "gold_585"}, headers=auth)).json()["id"]
            await client.put(f"{shop}/api/v1/orders/{oid}/model", headers=auth,
                             files={"file": ("r.stl", model, "model/stl")})
            ids.append(oid)
        semaphore = asyncio.Semaphore(concurrency)
        latencies: list[float] = []

        async def one(oid: str) -> None:
            async with semaphore:
                start = time.perf_counter()
                response = await client.post(f"{shop}/api/v1/orders/{oid}/submit", headers=auth)
                response.raise_for_status()
            while True:
                body = (await client.get(f"{shop}/api/v1/orders/{oid}", headers=auth)).json()
                if body["status"] in PRICED:
                    latencies.append(time.perf_counter() - start)
                    return
                await asyncio.sleep(0.05)

        started = time.perf_counter()
        await asyncio.gather(*(one(oid) for oid in ids))
        return time.perf_counter() - started, latencies


def run_config(workers: int, orders: int, model: bytes) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="alex-bench-"))
    settings = sandbox_settings(root, log_level="WARNING")
    provision(settings)
    platform = Platform.configure(settings, sandbox_env(settings, dict(os.environ)), root / "logs")
    try:
        platform.start_all(workers=workers)
        elapsed, latencies = asyncio.run(drive(platform.settings, orders, 32, model))
        bare = asyncio.run(bare_loop(settings.amqp_url, orders))
    finally:
        platform.stop_all()
        deprovision(settings)
    latencies.sort()
    return {
        "workers": workers,
        "orders_per_s": orders / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
        "per_order_ms": elapsed / orders * 1000,
        "bare_per_msg_ms": bare / orders * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    model = to_binary_stl(ring(segments=96, profile_segments=8))
    print(f"model: {(len(model) - 84) // 50} triangles; {args.orders} orders per configuration; "
          f"{os.cpu_count()} CPUs")
    print(f"{'workers':>7} {'orders/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'ms/order':>9} "
          f"{'bare ms/msg':>11} {'overhead x':>10}")
    for workers in (int(w) for w in args.workers.split(",")):
        r = run_config(workers, args.orders, model)
        print(f"{r['workers']:>7} {r['orders_per_s']:>9.1f} {r['p50_ms']:>8.0f} {r['p95_ms']:>8.0f} "
              f"{r['per_order_ms']:>9.2f} {r['bare_per_msg_ms']:>11.3f} "
              f"{r['per_order_ms'] / r['bare_per_msg_ms']:>10.1f}", flush=True)


if __name__ == "__main__":
    main()

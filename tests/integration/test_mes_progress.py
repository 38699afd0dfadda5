"""The pricing queue probe against the real broker: consumers counted, cached, and a broker that is away."""

from __future__ import annotations

import asyncio
import socket
import time

import aio_pika

from alexandrite.kit.messaging.topology import PRICING_QUEUE
from alexandrite.kit.settings import Settings
from alexandrite.mes.progress import QueueProbe


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


async def test_probe_counts_the_workers_on_the_pricing_queue_and_caches(settings: Settings) -> None:
    probe = QueueProbe(settings.broker.url, ttl=0.3)
    connection = await aio_pika.connect(settings.broker.url)
    try:
        before = await probe.stats()
        assert before.known and before.workers is not None and before.consumers >= 1
        async def give_back(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.nack(requeue=True)

        channels = [await connection.channel() for _ in range(2)]
        for channel in channels:
            queue = await channel.get_queue(PRICING_QUEUE)
            await queue.consume(give_back)
        assert (await probe.stats()).workers == before.workers  # cached for ttl seconds
        await asyncio.sleep(0.35)
        after = await probe.stats()
        assert after.workers == before.workers + 2 and after.consumers == after.workers
    finally:
        await connection.close()
        await probe.close()


async def test_probe_assumes_one_worker_when_the_broker_is_away() -> None:
    probe = QueueProbe(f"amqp://guest:guest@127.0.0.1:{closed_port()}/", ttl=5.0, timeout=0.5)
    started = time.monotonic()
    stats = await probe.stats()
    assert stats.workers is None and stats.messages is None and not stats.known
    assert stats.consumers == 1 and await probe.consumers() == 1
    assert time.monotonic() - started < 2.0  # the failure is cached: the second call did not wait
    await probe.close()

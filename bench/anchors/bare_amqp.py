"""The broker anchor: persistent messages published with confirms to a quorum queue and consumed with
manual acks (aio-pika, one process), in a vhost of its own that is deleted afterwards.

This is the floor any broker-based pipeline pays per message on this machine; the order pipeline is
measured against it in the same run. Run alone: ``python bench/anchors/bare_amqp.py [--messages 5000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import aio_pika


@dataclass(frozen=True)
class BareResult:
    messages: int
    seconds: float

    @property
    def per_message_ms(self) -> float:
        return self.seconds / self.messages * 1000

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def _rabbitmqctl(*args: str, check: bool = True) -> None:
    subprocess.run(["rabbitmqctl", *args], check=check, capture_output=True, timeout=60)


@contextlib.contextmanager
def own_vhost(base_url: str = "amqp://guest:guest@127.0.0.1:5672") -> Iterator[str]:
    """A fresh vhost (deleted on the way out); yields its AMQP URL."""
    vhost = f"alexbench-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"{base_url.rstrip('/')}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost, check=False)


async def publish_and_ack(amqp_url: str, messages: int, *, body_size: int = 500, in_flight: int = 100,
                          prefetch: int = 50) -> BareResult:
    """``messages`` persistent messages, at most ``in_flight`` unconfirmed, consumed with manual acks."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        publisher = await connection.channel(publisher_confirms=True)
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=prefetch)
        queue = await consumer.declare_queue(f"bench.bare.{uuid.uuid4().hex[:6]}", durable=True,
                                             arguments={"x-queue-type": "quorum"})
        done = asyncio.Event()
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received == messages:
                done.set()

        tag = await queue.consume(on_message)
        body = b"x" * body_size
        started = time.perf_counter()
        for offset in range(0, messages, in_flight):
            await asyncio.gather(*(publisher.default_exchange.publish(
                aio_pika.Message(body=body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue.name)
                for _ in range(min(in_flight, messages - offset))))
        await asyncio.wait_for(done.wait(), timeout=300)
        elapsed = time.perf_counter() - started
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
    return BareResult(messages, elapsed)


def measure(messages: int, **options: int) -> BareResult:
    with own_vhost() as url:
        return asyncio.run(publish_and_ack(url, messages, **options))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--smoke", action="store_true", help="a few hundred messages")
    args = parser.parse_args(argv)
    result = measure(200 if args.smoke else args.messages)
    print(f"{'messages':>9} {'seconds':>8} {'msg/s':>8} {'ms/msg':>7}")
    print(f"{result.messages:>9} {result.seconds:>8.2f} {result.rate:>8.0f} {result.per_message_ms:>7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""RabbitMQ topology: one durable topic exchange, quorum queues only.

Per consumer queue ``Q``: ``Q.retry.N`` delay queues (fixed TTL, dead-lettered back to
``Q``) give retries with backoff, and ``Q.dlq`` keeps what could not be processed.
"""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

from alexandrite.contracts.events import EVENTS_EXCHANGE
from alexandrite.kit.messaging.connection import connect
from alexandrite.kit.settings import Settings

PRICING_QUEUE = "mes.pricing.jobs"
DELIVERY_LIMIT = 10

# Each service consumes the order events of the two others.
EVENT_BINDINGS: dict[str, tuple[str, ...]] = {
    "shop": ("mes.order.*", "crm.order.*"),
    "crm": ("shop.order.*", "mes.order.*"),
    "mes": ("shop.order.*", "crm.order.*"),
}


def events_queue(service: str) -> str:
    return f"{service}.events"


def retry_queue(queue: str, tier: int) -> str:
    return f"{queue}.retry.{tier}"


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dlq"


def consumer_queues() -> list[str]:
    return [events_queue(s) for s in EVENT_BINDINGS] + [PRICING_QUEUE]


def _quorum(**extra: Any) -> dict[str, Any]:
    return {"x-queue-type": "quorum", **extra}


def _work_queue_args(queue: str, **extra: Any) -> dict[str, Any]:
    # A message redelivered too often (e.g. it crashes its consumer) ends in the DLQ.
    return _quorum(
        **{
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead_letter_queue(queue),
        },
        **extra,
    )


async def declare_consumer_queue(
    channel: AbstractChannel, queue: str, retry_delays_ms: tuple[int, ...], **extra: Any
) -> aio_pika.abc.AbstractQueue:
    await channel.declare_queue(dead_letter_queue(queue), durable=True, arguments=_quorum())
    for tier, delay in enumerate(retry_delays_ms):
        await channel.declare_queue(
            retry_queue(queue, tier),
            durable=True,
            arguments=_quorum(
                **{
                    "x-message-ttl": int(delay),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": queue,
                    "x-overflow": "reject-publish",
                    "x-dead-letter-strategy": "at-least-once",
                }
            ),
        )
    return await channel.declare_queue(queue, durable=True, arguments=_work_queue_args(queue, **extra))


async def declare_topology(channel: AbstractChannel, settings: Settings) -> None:
    """Idempotent: declares everything every process needs, whichever starts first."""
    exchange = await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )
    for service, patterns in EVENT_BINDINGS.items():
        queue = await declare_consumer_queue(
            channel, events_queue(service), settings.broker.retry_delays_ms
        )
        for pattern in patterns:
            await queue.bind(exchange, routing_key=pattern)
    await declare_consumer_queue(
        channel,
        PRICING_QUEUE,
        settings.broker.retry_delays_ms,
        **{"x-max-length": settings.broker.pricing_queue_max_length, "x-overflow": "reject-publish"},
    )


async def setup_topology(settings: Settings) -> None:
    connection = await connect(settings.broker.url, timeout=10)
    async with connection:
        channel = await connection.channel()
        await declare_topology(channel, settings)

"""Queue consumer: ack after the handler committed, retry with backoff, then dead-letter.

A handler raising :class:`PermanentError` (or a malformed message) goes straight to the
dead-letter queue; any other exception is retried through the delay queues. A message is
acknowledged only once its retry or dead-letter copy was confirmed by the broker, so a
crash at any point means redelivery, never loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractIncomingMessage

from alexandrite.kit import metrics
from alexandrite.kit.errors import infrastructure_unavailable
from alexandrite.kit.messaging.connection import connect
from alexandrite.kit.messaging.topology import dead_letter_queue, retry_queue
from alexandrite.kit.tracing import SpanKind, message_span

log = structlog.get_logger(__name__)

ATTEMPT_HEADER = "x-attempt"


class PermanentError(Exception):
    """Retrying will not help: send the message to the dead-letter queue."""


@dataclass
class Delivery:
    body: bytes
    headers: dict[str, Any]
    routing_key: str
    message_id: str | None
    attempt: int
    redelivered: bool
    timestamp: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Delivery], Awaitable[str | None]]


class Consumer:
    def __init__(
        self,
        amqp_url: str,
        queue: str,
        handler: Handler,
        *,
        prefetch: int = 20,
        retry_delays_ms: tuple[int, ...] = (500, 2_000, 10_000),
        ack_hold_seconds: float = 0.0,
        concurrency: int | None = None,
    ) -> None:
        """``ack_hold_seconds``: how long the connection's writes (the acks) may wait to leave together
        (kit/messaging/coalesced_writes.py); 0 for a consumer whose next delivery waits for the ack.

        ``concurrency``: how many handlers run at once (None: as many as the prefetch lets in). A delivery
        whose ack is held, or that waits for its turn, keeps a prefetch slot but not a handler's place (nor
        the database connection a handler uses), so with held acks the prefetch should exceed it."""
        self.amqp_url = amqp_url
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self.retry_delays_ms = retry_delays_ms
        self.ack_hold_seconds = ack_hold_seconds
        self._handlers = asyncio.Semaphore(concurrency) if concurrency else None
        self.in_flight = 0
        self.running = 0  # handlers running now (at most ``concurrency``)
        self.ready = asyncio.Event()

    async def _forward(self, channel: aio_pika.abc.AbstractChannel, message: AbstractIncomingMessage,
                       target: str, headers: dict[str, Any]) -> None:
        await channel.default_exchange.publish(
            aio_pika.Message(
                body=message.body,
                headers=headers,
                message_id=message.message_id,
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                type=message.type,
                timestamp=message.timestamp,
            ),
            routing_key=target,
            mandatory=True,
            timeout=10,
        )

    async def _on_message(self, channel: aio_pika.abc.AbstractChannel, message: AbstractIncomingMessage) -> None:
        self.in_flight += 1
        headers = dict(message.headers or {})
        kind = str(headers.get("event_type") or message.type or "unknown")
        order_id = str(headers.get("order_id") or "")
        if order_id:
            structlog.contextvars.bind_contextvars(order_id=order_id)
        try:
            with message_span(f"{self.queue} process", SpanKind.CONSUMER, headers,
                              **{"messaging.system": "rabbitmq", "messaging.destination.name": self.queue,
                                 "messaging.message.id": message.message_id or "", "alexandrite.message_type": kind,
                                 "alexandrite.order_id": order_id}):
                await self._process(channel, message, headers, kind)
        finally:
            structlog.contextvars.unbind_contextvars("order_id")
            self.in_flight -= 1

    async def _process(self, channel: aio_pika.abc.AbstractChannel, message: AbstractIncomingMessage,
                       headers: dict[str, Any], kind: str) -> None:
        attempt = int(headers.get(ATTEMPT_HEADER, 0) or 0)
        started = time.perf_counter()
        delivery = Delivery(
            body=message.body,
            headers=headers,
            routing_key=message.routing_key or "",
            message_id=message.message_id,
            attempt=attempt,
            redelivered=bool(message.redelivered),
            timestamp=message.timestamp.timestamp() if message.timestamp else None,
        )
        try:
            outcome = await self._handle(delivery)
        except PermanentError as error:
            metrics.MESSAGE_FAILURES.labels(self.queue, kind).inc()
            await self._dead_letter(channel, message, headers, kind, error)
        except Exception as error:
            metrics.MESSAGE_FAILURES.labels(self.queue, kind).inc()
            # An outage (database away, too many connections) does not use up the message's attempts:
            # it waits in the retry tiers as long as the outage lasts instead of being dead-lettered.
            outage = infrastructure_unavailable(error) and bool(self.retry_delays_ms)
            if attempt < len(self.retry_delays_ms) or outage:
                tier = min(attempt, len(self.retry_delays_ms) - 1)
                try:
                    await self._forward(
                        channel, message, retry_queue(self.queue, tier),
                        {**headers, ATTEMPT_HEADER: attempt if outage else attempt + 1,
                         "x-last-error": repr(error)[:500]},
                    )
                except Exception:
                    log.exception("retry_publish_failed", queue=self.queue)
                    await message.nack(requeue=True)
                else:
                    await message.ack()
                    metrics.MESSAGES_PROCESSED.labels(self.queue, kind, "retried").inc()
                    log.warning("message_retry", queue=self.queue, type=kind, attempt=attempt + 1,
                                outage=outage, error=repr(error)[:300])
            else:
                await self._dead_letter(channel, message, headers, kind, error)
        else:
            await message.ack()
            metrics.MESSAGES_PROCESSED.labels(self.queue, kind, outcome).inc()
        finally:
            metrics.MESSAGE_DURATION.labels(self.queue, kind).observe(time.perf_counter() - started)

    async def _handle(self, delivery: Delivery) -> str:
        if self._handlers is None:
            return await self.handler(delivery) or "ok"
        async with self._handlers:
            self.running += 1
            try:
                return await self.handler(delivery) or "ok"
            finally:
                self.running -= 1

    async def _dead_letter(self, channel: aio_pika.abc.AbstractChannel, message: AbstractIncomingMessage,
                           headers: dict[str, Any], kind: str, error: BaseException) -> None:
        try:
            await self._forward(
                channel, message, dead_letter_queue(self.queue),
                {**headers, "x-original-queue": self.queue, "x-error": repr(error)[:1000],
                 "x-dead-lettered-at": time.time()},
            )
        except Exception:
            log.exception("dead_letter_publish_failed", queue=self.queue)
            await message.nack(requeue=True)
            return
        await message.ack()
        metrics.MESSAGES_PROCESSED.labels(self.queue, kind, "dead_lettered").inc()
        log.error("message_dead_lettered", queue=self.queue, type=kind, error=repr(error)[:300])

    async def run(self, stop: asyncio.Event, *, drain_seconds: float = 20.0) -> None:
        """Consume until ``stop`` is set, then stop taking messages and let in-flight ones finish."""
        backoff = 0.5
        while not stop.is_set():
            try:
                connection = await connect(self.amqp_url, robust=True, timeout=10,
                                           write_hold_seconds=self.ack_hold_seconds)
                # Not ready while the connection moves to another node; ready again once it consumes there.
                connection.close_callbacks.add(lambda *_: self.ready.clear())
                connection.reconnect_callbacks.add(lambda *_: self.ready.set())
                async with connection:
                    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                    await channel.set_qos(prefetch_count=self.prefetch)
                    queue = await channel.get_queue(self.queue, ensure=True)
                    async def _deliver(message: AbstractIncomingMessage) -> None:
                        await self._on_message(channel, message)

                    tag = await queue.consume(_deliver)
                    self.ready.set()
                    backoff = 0.5
                    await stop.wait()
                    self.ready.clear()  # shutting down: not ready from here on
                    with contextlib.suppress(Exception):
                        await queue.cancel(tag)
                    deadline = time.monotonic() + drain_seconds
                    while self.in_flight and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
            except Exception as error:
                self.ready.clear()
                log.warning("consumer_connection_error", queue=self.queue, error=repr(error)[:300])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, 10.0)

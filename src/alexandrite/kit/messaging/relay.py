"""Outbox relay: publishes committed messages with publisher confirms, then deletes them.

Any number of relays may run against one database: rows are claimed with
``FOR UPDATE SKIP LOCKED``. A message leaves the outbox only after the broker confirmed
it (and, being mandatory, routed it to at least one queue); otherwise it stays and is
retried, so a broker outage or a full queue turns into outbox backlog, never into loss.

The relay sleeps until PostgreSQL notifies it of committed outbox rows (``LISTEN``, see
:mod:`alexandrite.kit.messaging.wakeup`), with a slow safety poll (``idle_seconds``, seconds) for
notifications that were lost (a failover or a restart of the listening connection). Its backlog
gauges are refreshed every ``gauge_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from sqlalchemy import func, select

from alexandrite.kit import metrics
from alexandrite.kit.breaker import CircuitBreaker
from alexandrite.kit.db import Database
from alexandrite.kit.loops import poll_until_stopped
from alexandrite.kit.messaging.connection import connect
from alexandrite.kit.messaging.tables import OUTBOX, OUTBOX_CHANNEL
from alexandrite.kit.messaging.wakeup import ChannelWakeups
from alexandrite.kit.tracing import SpanKind, message_span, trace_headers

log = structlog.get_logger(__name__)

# A batch, oldest first, locked for the length of its publishing; relays running beside this one skip it.
CLAIM_SQL = """
SELECT id, message_id, exchange, routing_key, body, headers FROM outbox
 ORDER BY id LIMIT $1::int FOR UPDATE SKIP LOCKED
"""
# The confirmed messages leave the outbox; the failed ones stay, each with its own error.
DELETE_SQL = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"
FAILED_SQL = """
UPDATE outbox o SET attempts = o.attempts + 1, last_error = f.error
  FROM unnest($1::bigint[], $2::text[]) AS f(id, error) WHERE o.id = f.id
"""


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        amqp_url: str,
        *,
        service: str,
        batch_size: int = 200,
        idle_seconds: float = 3.0,
        publish_timeout: float = 10.0,
        breaker: CircuitBreaker | None = None,
        listen: bool = True,
        gauge_seconds: float = 15.0,
    ) -> None:
        self.breaker = breaker or CircuitBreaker(f"rabbitmq-publish:{service}")
        self.db = db
        self.amqp_url = amqp_url
        self.service = service
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.publish_timeout = publish_timeout
        self.gauge_seconds = gauge_seconds
        self.wakeups = ChannelWakeups(db.url, channel=OUTBOX_CHANNEL, socket_dir=db.socket_dir) if listen else None
        # Without a listening connection (not yet, or lost): poll at this pace until it is back.
        self.unheard_seconds = min(idle_seconds, 0.5)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._idle_now = idle_seconds

    async def _ensure_channel(self) -> AbstractChannel:
        if self._connection is None or self._connection.is_closed:
            self._connection = await connect(self.amqp_url, robust=True, timeout=10)
            self._channel = None
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchanges = {}
        return self._channel

    async def _exchange(self, name: str) -> AbstractExchange:
        channel = await self._ensure_channel()
        if name not in self._exchanges:
            self._exchanges[name] = (
                channel.default_exchange if name == "" else await channel.get_exchange(name, ensure=True)
            )
        return self._exchanges[name]

    async def _publish(self, row: Any) -> None:
        exchange = await self._exchange(row["exchange"])
        headers = dict(row["headers"] or {})
        # A child of the context that emitted the message, however long it waited in the outbox.
        routing_key, destination = row["routing_key"], row["exchange"] or "(default)"
        with message_span(f"{routing_key} publish", SpanKind.PRODUCER, headers,
                          **{"messaging.system": "rabbitmq", "messaging.destination.name": destination,
                             "messaging.rabbitmq.destination.routing_key": routing_key,
                             "messaging.message.id": str(row["message_id"]), "alexandrite.service": self.service}):
            headers.update(trace_headers())
            await self._send(exchange, row, headers)

    async def _send(self, exchange: AbstractExchange, row: Any, headers: dict[str, Any]) -> None:
        message = aio_pika.Message(
            body=row["body"],
            headers=headers,
            message_id=str(row["message_id"]),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            type=row["routing_key"],
        )
        await exchange.publish(
            message, routing_key=row["routing_key"], mandatory=True, timeout=self.publish_timeout
        )

    async def publish_once(self) -> int:
        """Publish one batch; returns how many messages left the outbox.

        Plain SQL on the database's raw pool (:data:`CLAIM_SQL`, then :data:`DELETE_SQL` and/or
        :data:`FAILED_SQL`), in one transaction that holds the claimed rows' locks while they are published."""
        pool = await self.db.raw()
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(CLAIM_SQL, self.batch_size)
            if not rows:
                return 0
            self.breaker.before_call()  # open: the rows stay, the batch is retried after the pause
            try:
                await asyncio.wait_for(self._ensure_channel(), self.publish_timeout)
            except BaseException:
                self.breaker.record_failure()
                raise
            results = await asyncio.gather(*(self._publish(r) for r in rows), return_exceptions=True)
            done = [r["id"] for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)]
            failed = [(r, res) for r, res in zip(rows, results, strict=True) if isinstance(res, BaseException)]
            if done:
                await conn.execute(DELETE_SQL, done)
            if failed:  # every failed row marked in one statement, each with its own error
                await conn.execute(FAILED_SQL, [row["id"] for row, _ in failed],
                                   [repr(error)[:500] for _, error in failed])
        metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(done))
        self.breaker.record_success() if done else self.breaker.record_failure()
        if failed:
            metrics.OUTBOX_PUBLISH_FAILURES.labels(self.service).inc(len(failed))
            log.warning(
                "outbox_publish_failed",
                failed=len(failed),
                published=len(done),
                error=repr(failed[0][1])[:300],
            )
            if not done:
                raise RuntimeError(f"no message of the batch could be published: {failed[0][1]!r}")
        return len(done)

    async def backlog(self) -> tuple[int, float]:
        """(unpublished messages, age in seconds of the oldest)."""
        async with self.db.sessions() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(), func.extract("epoch", func.now() - func.min(OUTBOX.c.created_at)))
                    .select_from(OUTBOX)
                )
            ).one()
        return int(count), float(oldest or 0.0)

    async def _export_backlog(self) -> None:
        try:
            count, age = await self.backlog()
        except Exception as error:  # database away: the relay's own loop reports it
            log.debug("outbox_backlog_unavailable", error=repr(error)[:200])
            return
        metrics.OUTBOX_BACKLOG.labels(self.service).set(count)
        metrics.OUTBOX_OLDEST_AGE.labels(self.service).set(age)

    async def _publish_when_woken(self) -> int:
        # (Re)establishes the LISTEN connection first; the poll waits less while it is missing.
        if self.wakeups is not None and not await self.wakeups.ensure():
            self._idle_now = self.unheard_seconds
        else:
            self._idle_now = self.idle_seconds
        return await self.publish_once()

    async def run(self, stop: asyncio.Event) -> None:
        # Broker or database away: the rows stay in the outbox, the connection is rebuilt; the backlog
        # gauges are refreshed also while publishing fails, which is when a growing backlog must show.
        if self.wakeups is None:
            await poll_until_stopped(stop, self.publish_once, idle_seconds=self.idle_seconds,
                                     error_event="outbox_relay_error", gauges=self._export_backlog,
                                     gauge_every=self.gauge_seconds, on_error=self._reset)
        else:
            await poll_until_stopped(stop, self._publish_when_woken, idle_seconds=self.idle_seconds,
                                     idle_for=lambda: self._idle_now, wake=self.wakeups.event,
                                     error_event="outbox_relay_error", gauges=self._export_backlog,
                                     gauge_every=self.gauge_seconds, on_error=self._reset)
            await self.wakeups.close()
        await self.close()

    async def _reset(self) -> None:
        with contextlib.suppress(Exception):
            await self.close()
        if self.wakeups is not None and not self.wakeups.alive():
            await self.wakeups.close()

    async def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()
        self._connection = None
        self._channel = None
        self._exchanges = {}

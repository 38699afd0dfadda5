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
from typing import Any, cast

import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from pamqp.commands import Basic
from sqlalchemy import func, select

from alexandrite.kit import metrics
from alexandrite.kit.breaker import CircuitBreaker
from alexandrite.kit.db import Database
from alexandrite.kit.loops import poll_until_stopped
from alexandrite.kit.messaging.connection import connect
from alexandrite.kit.messaging.tables import OUTBOX, OUTBOX_CHANNEL
from alexandrite.kit.messaging.wakeup import ChannelWakeups
from alexandrite.kit.tracing import SpanKind, message_span, spans_possible, trace_headers

log = structlog.get_logger(__name__)

PERSISTENT = 2  # AMQP delivery mode: the broker writes the message to disk
PUBLISH_WAVE = 8  # publishes started together (aiormq's writer queue holds ten frame sets)

# A batch, oldest first, locked for the length of its publishing; relays running beside this one skip it.
CLAIM_SQL = """
SELECT id, message_id, exchange, routing_key, body, headers FROM outbox
 ORDER BY id LIMIT $1::int FOR UPDATE SKIP LOCKED
"""
# The failed messages stay, each with its own error (the confirmed ones leave: finish_sql).
FAILED_SQL = """
UPDATE outbox o SET attempts = o.attempts + 1, last_error = f.error
  FROM unnest($1::bigint[], $2::text[]) AS f(id, error) WHERE o.id = f.id
"""


def finish_sql(confirmed: list[int]) -> str:
    """The confirmed messages leave the outbox and the batch's transaction commits, in one round trip:
    two statements in one simple query (which takes no parameters: the ids are the table's own
    bigints, written as integer literals)."""
    if not confirmed:
        return "COMMIT"
    ids = ",".join(str(int(row_id)) for row_id in confirmed)
    return f"DELETE FROM outbox WHERE id = ANY('{{{ids}}}'::bigint[]); COMMIT"


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
        gather_seconds: float = 0.0,
    ) -> None:
        self.breaker = breaker or CircuitBreaker(f"rabbitmq-publish:{service}")
        self.db = db
        self.amqp_url = amqp_url
        self.service = service
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.publish_timeout = publish_timeout
        self.gauge_seconds = gauge_seconds
        self.gather_seconds = gather_seconds
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
        if not spans_possible():  # the span would hand back the stored traceparent unchanged: skip it
            await self._send(exchange, row, headers)
            return
        # A child of the context that emitted the message, however long it waited in the outbox.
        routing_key, destination = row["routing_key"], row["exchange"] or "(default)"
        with message_span(f"{routing_key} publish", SpanKind.PRODUCER, headers,
                          **{"messaging.system": "rabbitmq", "messaging.destination.name": destination,
                             "messaging.rabbitmq.destination.routing_key": routing_key,
                             "messaging.message.id": str(row["message_id"]), "alexandrite.service": self.service}):
            headers.update(trace_headers())
            await self._send(exchange, row, headers)

    async def _send(self, exchange: AbstractExchange, row: Any, headers: dict[str, Any]) -> None:
        """One confirmed, mandatory, persistent publish on the channel's aiormq channel.

        ``wait=False``: the publish does not hold the channel's lock until its frames reached the
        socket, so the batch's publishes are queued in one loop turn and leave together (one write,
        kit/messaging/coalesced_writes.py); each still waits for its own confirm, and a nack or a
        return (unroutable) raises as through aio-pika's ``Exchange.publish``."""
        # aiormq's channel class (the only one there is) takes ``wait``; its abstract base does not say so.
        channel = cast(aiormq.Channel, await (await self._ensure_channel()).get_underlay_channel())
        routing_key = row["routing_key"]
        properties = Basic.Properties(
            headers=headers, message_id=str(row["message_id"]), content_type="application/json",
            delivery_mode=PERSISTENT, message_type=routing_key,
        )
        await channel.basic_publish(row["body"], exchange=exchange.name, routing_key=routing_key,
                                    properties=properties, mandatory=True, timeout=self.publish_timeout,
                                    wait=False)

    async def _publish_all(self, rows: list[Any]) -> list[Any]:
        """Every row's publish, each result or error in the row's place.

        The publishes start in waves of :data:`PUBLISH_WAVE` with one loop turn between them: aiormq's
        connection queues at most ten frame sets for its writer, and a publish that finds the queue
        full holds the channel's lock while it waits, which hands the rest out one loop turn (one socket
        write) each. A wave fits the queue, so its frames leave in one write."""
        started: list[asyncio.Future[Any]] = []
        try:
            for first in range(0, len(rows), PUBLISH_WAVE):
                if first:
                    await asyncio.sleep(0)  # the writer takes the previous wave
                started += [asyncio.ensure_future(self._publish(row)) for row in rows[first:first + PUBLISH_WAVE]]
        except BaseException:
            for future in started:
                future.cancel()
            raise
        return await asyncio.gather(*started, return_exceptions=True)

    async def publish_once(self) -> int:
        """Publish one batch; returns how many messages left the outbox.

        Plain SQL on the database's raw pool, in one transaction that holds the claimed rows' locks while
        they are published: ``BEGIN``, :data:`CLAIM_SQL`, then (:data:`FAILED_SQL` and) :func:`finish_sql`,
        which deletes the confirmed rows and commits in one round trip: three in all for a batch."""
        pool = await self.db.raw()
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            try:
                rows = await conn.fetch(CLAIM_SQL, self.batch_size)
                if not rows:
                    await conn.execute("COMMIT")
                    return 0
                self.breaker.before_call()  # open: the rows stay, the batch is retried after the pause
                try:
                    await asyncio.wait_for(self._ensure_channel(), self.publish_timeout)
                except BaseException:
                    self.breaker.record_failure()
                    raise
                results = await self._publish_all(rows)
                done = [r["id"] for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)]
                failed = [(r, res) for r, res in zip(rows, results, strict=True) if isinstance(res, BaseException)]
                if failed:  # every failed row marked in one statement, each with its own error
                    await conn.execute(FAILED_SQL, [row["id"] for row, _ in failed],
                                       [repr(error)[:500] for _, error in failed])
                await conn.execute(finish_sql(done))
            except BaseException:
                if not conn.is_closed() and conn.is_in_transaction():
                    with contextlib.suppress(Exception):
                        await conn.execute("ROLLBACK")
                raise
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
                                     gauge_every=self.gauge_seconds, on_error=self._reset,
                                     gather_seconds=self.gather_seconds)
        else:
            await poll_until_stopped(stop, self._publish_when_woken, idle_seconds=self.idle_seconds,
                                     idle_for=lambda: self._idle_now, wake=self.wakeups.event,
                                     error_event="outbox_relay_error", gauges=self._export_backlog,
                                     gauge_every=self.gauge_seconds, on_error=self._reset,
                                     gather_seconds=self.gather_seconds)
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

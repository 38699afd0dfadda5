"""Pricing queue estimates: queue position and ETA of a job, workers on the pricing queue.

The number of workers is read from RabbitMQ (a passive declare of the pricing queue reports
its consumers) and cached for a few seconds; when the broker cannot tell, one worker is assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection
from sqlalchemy.ext.asyncio import AsyncSession

from alexandrite.contracts.events import utcnow
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.messaging.connection import connect
from alexandrite.kit.messaging.topology import PRICING_QUEUE
from alexandrite.mes import domain, repository
from alexandrite.mes.domain import JobState

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class QueueStats:
    workers: int | None  # consumers of the pricing queue; None when the broker could not be asked
    messages: int | None  # messages ready in the broker; None when unknown

    @property
    def known(self) -> bool:
        return self.workers is not None

    @property
    def consumers(self) -> int:
        """Workers to divide the queue among for an ETA: at least one (none running, or unknown)."""
        return max(1, self.workers or 0)


class QueueProbe:
    """Consumers on the pricing queue, from a passive queue declare, cached ``ttl`` seconds.

    One lazily opened connection per process, closed by :meth:`close`. A slow or absent broker
    never blocks callers for more than ``timeout`` seconds, and only one refresh runs at a time:
    concurrent callers get the previous figure meanwhile.
    """

    def __init__(self, amqp_url: str, queue: str = PRICING_QUEUE, *, ttl: float = 5.0, timeout: float = 1.0) -> None:
        self.amqp_url = amqp_url
        self.queue = queue
        self.ttl = ttl
        self.timeout = timeout
        self._stats = QueueStats(workers=None, messages=None)
        self._checked_at = -math.inf
        self._lock: asyncio.Lock | None = None
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    async def stats(self) -> QueueStats:
        if time.monotonic() - self._checked_at < self.ttl:
            return self._stats
        if self._lock is None:
            self._lock = asyncio.Lock()
        if self._lock.locked():
            return self._stats  # another caller is refreshing: do not queue up behind it
        async with self._lock:
            try:
                consumers, messages = await asyncio.wait_for(self._declare(), timeout=self.timeout)
                self._stats = QueueStats(workers=consumers, messages=messages)
            except Exception as error:  # broker away or slow: assume one worker, ask again later
                log.warning("pricing_queue_probe_failed", error=repr(error)[:300])
                self._stats = QueueStats(workers=None, messages=None)
                await self._drop()
            self._checked_at = time.monotonic()
        return self._stats

    async def consumers(self) -> int:
        return (await self.stats()).consumers

    async def _declare(self) -> tuple[int, int]:
        if self._connection is None or self._connection.is_closed:
            self._connection = await connect(self.amqp_url, timeout=self.timeout)
            self._channel = None
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        declared = await self._channel.declare_queue(self.queue, passive=True)
        result = declared.declaration_result
        return int(result.consumer_count or 0), int(result.message_count or 0)

    async def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await connection.close()

    async def close(self) -> None:
        await self._drop()


@dataclass(frozen=True)
class QueueEstimate:
    """What an ETA needs besides the database: workers now, and the duration assumed with no history."""

    consumers: int = 1
    default_seconds: float = 2.0


async def average_seconds(session: AsyncSession, default_seconds: float) -> float:
    return domain.average_seconds(await repository.recent_durations(session), default_seconds)


async def job_progress(session: AsyncSession, job: Any, estimate: QueueEstimate,
                       *, now: datetime | None = None) -> dict[str, Any]:
    """``{queue_position, eta_seconds}`` of a queued or running job, as of now."""
    average = await average_seconds(session, estimate.default_seconds)
    if job.state == JobState.RUNNING.value and job.started_at is not None:
        elapsed = ((now or utcnow()) - job.started_at).total_seconds()
        return domain.progress(1, average, estimate.consumers, running_for=elapsed)
    position = await repository.jobs_ahead(session, job.enqueued_at, job.id) + 1
    return domain.progress(position, average, estimate.consumers)


async def new_job_progress(session: AsyncSession, job_id: uuid.UUID, enqueued_at: datetime,
                           estimate: QueueEstimate) -> dict[str, Any]:
    average = await average_seconds(session, estimate.default_seconds)
    position = await repository.jobs_ahead(session, enqueued_at, job_id) + 1
    return domain.progress(position, average, estimate.consumers)


async def order_progress(session: AsyncSession, order_id: uuid.UUID,
                         estimate: QueueEstimate) -> tuple[str, dict[str, Any] | None] | None:
    """(status, live progress or None) of an order; None when the order is unknown."""
    status = await repository.order_status(session, order_id)
    if status is None:
        return None
    if status != OrderStatus.PRICE_CALCULATING.value:
        return status, None
    job = await repository.active_job(session, order_id)
    if job is None:
        return status, None
    return status, await job_progress(session, job, estimate)


async def queue_overview(session: AsyncSession, stats: QueueStats, default_seconds: float) -> dict[str, Any]:
    counts = await repository.queue_counts(session)
    average = await average_seconds(session, default_seconds)
    oldest = counts["oldest_queued_at"]
    waiting = counts["queued"] + counts["running"]
    return {
        "queued": counts["queued"],
        "running": counts["running"],
        "workers": stats.workers,
        "broker_ready_messages": stats.messages,
        "average_seconds": round(average, 3),
        "oldest_queued_seconds": round(max((utcnow() - oldest).total_seconds(), 0.0), 1) if oldest else None,
        # A job submitted now would be priced in about this long.
        "eta_seconds_for_new_job": domain.eta_seconds(waiting + 1, average, stats.consumers),
    }

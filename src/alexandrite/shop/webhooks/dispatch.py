"""Sends queued partner webhook deliveries: signed, timed out, retried with backoff, dead-lettered.

Isolation between partners: a claim takes at most ``per_endpoint`` due rows per partner and
none of a partner already at that many requests in flight here; each request has its own
timeout; a partner whose endpoint keeps failing trips its breaker (state in Redis, shared by
every shop replica) and its rows wait, untouched, until the breaker lets a trial through. So a
hanging partner holds at most ``per_endpoint`` of the ``concurrency`` slots, for one timeout.
Claims are leases (``next_attempt_at`` pushed ahead), so several replicas can run dispatchers
and a crashed one's rows come back by themselves.

Every request goes through :class:`~alexandrite.kit.egress.PinnedTransport`: the partner's host is
resolved when the connection is made and only public addresses are reached (never the platform's own
services); redirects are not followed. What the partner can read back about an attempt is the status
code its endpoint answered, or one word for anything else ("unreachable"), never the network error:
the deliveries listing must not tell which internal ports are open.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import structlog
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import ARRAY, Integer, Uuid, bindparam, func, select, text, update

from alexandrite.kit.breaker import SharedBreakers
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.egress import EgressPolicy, PinnedTransport, Resolver, blocked
from alexandrite.kit.loops import poll_until_stopped
from alexandrite.kit.messaging.wakeup import ChannelWakeups
from alexandrite.kit.metrics import LATENCY_BUCKETS
from alexandrite.kit.settings import Settings
from alexandrite.shop.tables import partners, webhook_deliveries
from alexandrite.shop.webhooks.deliveries import NO_ENDPOINT, UNREACHABLE, WEBHOOK_CHANNEL
from alexandrite.shop.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

log = structlog.get_logger(__name__)

DELIVERIES = Counter("alexandrite_webhook_deliveries_total", "Webhook delivery attempts by outcome",
                     ["outcome"])  # delivered | failed | dead | deferred
DELIVERY_SECONDS = Histogram("alexandrite_webhook_delivery_seconds", "Webhook request duration",
                             buckets=LATENCY_BUCKETS)
PENDING = Gauge("alexandrite_webhook_pending", "Webhook deliveries waiting to be sent")
ENDPOINT_BREAKER = Gauge("alexandrite_webhook_endpoint_breaker_state",
                         "Partner endpoint breaker: 0 closed, 2 open", ["partner"])

# Oldest due deliveries, per partner at most the slots it has left here (``per_partner`` minus
# what this dispatcher already has in flight to it), so one endpoint never holds more.
_CANDIDATES = text("""
SELECT ranked.id FROM (
  SELECT id, partner_id,
         row_number() OVER (PARTITION BY partner_id ORDER BY next_attempt_at, id) AS rn
  FROM webhook_deliveries
  WHERE state = 'pending' AND next_attempt_at <= now()
) ranked
LEFT JOIN unnest(:flight_partners, :flight_counts) AS flight(partner_id, n) ON flight.partner_id = ranked.partner_id
WHERE ranked.rn <= :per_partner - coalesce(flight.n, 0)
ORDER BY ranked.id
LIMIT :batch
""").bindparams(bindparam("flight_partners", type_=ARRAY(Uuid)), bindparam("flight_counts", type_=ARRAY(Integer)))


@dataclass(frozen=True)
class Claimed:
    id: int
    delivery_id: uuid.UUID
    partner_id: uuid.UUID
    order_id: uuid.UUID
    partner: str
    url: str | None
    secret: str | None
    event_type: str
    payload: dict[str, Any]
    attempts: int


class WebhookDispatcher:
    def __init__(self, db: Database, settings: Settings, redis: Any, *, resolver: Resolver | None = None) -> None:
        self.db = db
        self.settings = settings
        self.breakers = SharedBreakers(redis, f"{settings.redis.prefix}:webhook",
                                       threshold=settings.webhooks.breaker_failures,
                                       reset_seconds=settings.webhooks.breaker_reset_seconds, metric=ENDPOINT_BREAKER)
        limits = httpx.Limits(max_connections=settings.webhooks.concurrency * 2, max_keepalive_connections=20)
        self.client = httpx.AsyncClient(
            transport=PinnedTransport(EgressPolicy.for_webhooks(settings, resolver), limits=limits),
            timeout=httpx.Timeout(settings.webhooks.timeout_seconds), follow_redirects=False, trust_env=False,
            headers={"User-Agent": "Alexandrite-Webhooks/1", "Content-Type": "application/json"})
        self.slots = asyncio.Semaphore(settings.webhooks.concurrency)
        self.in_flight: dict[uuid.UUID, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.lease = timedelta(seconds=settings.webhooks.timeout_seconds * 2 + 5)
        self.wakeups = ChannelWakeups(db.url, channel=WEBHOOK_CHANNEL, socket_dir=db.socket_dir)
        self._idle_now = settings.webhooks.idle_seconds

    async def claim(self) -> list[Claimed]:
        free = self.settings.webhooks.concurrency - len(self.tasks)
        if free <= 0:
            return []
        async with UnitOfWork(self.db) as uow:
            ids = (await uow.session.execute(_CANDIDATES, {
                "flight_partners": list(self.in_flight), "flight_counts": list(self.in_flight.values()),
                "per_partner": self.settings.webhooks.per_endpoint_concurrency,
                "batch": min(free, self.settings.webhooks.batch_size)})).scalars().all()
            if not ids:
                return []
            # Re-checked under the row lock: a row another dispatcher leased meanwhile is skipped.
            claimed = (await uow.session.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id.in_(ids), webhook_deliveries.c.state == "pending",
                       webhook_deliveries.c.next_attempt_at <= func.now())
                .values(next_attempt_at=func.now() + self.lease)
                .returning(webhook_deliveries.c.id))).scalars().all()
            rows = (await uow.session.execute(
                select(webhook_deliveries, partners.c.name, partners.c.webhook_url, partners.c.webhook_secret)
                .join(partners, partners.c.id == webhook_deliveries.c.partner_id)
                .where(webhook_deliveries.c.id.in_(claimed)))).all() if claimed else []
            await uow.commit()
        return [Claimed(r.id, r.delivery_id, r.partner_id, r.order_id, r.name, r.webhook_url, r.webhook_secret,
                        r.event_type, r.payload, r.attempts) for r in rows]

    async def _finish(self, row: Claimed, *, ok: bool, status: int | None = None, error: str | None = None,
                      defer_seconds: float | None = None) -> str:
        values: dict[str, Any]
        if ok:
            outcome, values = "delivered", {"state": "delivered", "delivered_at": func.now()}
        elif defer_seconds is not None:  # breaker open: not an attempt, just later
            outcome, values = "deferred", {"next_attempt_at": func.now() + timedelta(seconds=defer_seconds)}
        elif row.attempts + 1 >= self.settings.webhooks.max_attempts:
            outcome, values = "dead", {"state": "dead"}
        else:
            delays = self.settings.webhooks.backoff_seconds or (1.0,)
            delay = delays[min(row.attempts, len(delays) - 1)] * random.uniform(0.8, 1.2)
            outcome, values = "failed", {"next_attempt_at": func.now() + timedelta(seconds=delay)}
        if defer_seconds is None:
            values.update(attempts=webhook_deliveries.c.attempts + 1, last_status=status,
                          last_error=(error or "")[:500] or None)
        async with UnitOfWork(self.db) as uow:
            await uow.session.execute(
                update(webhook_deliveries).where(webhook_deliveries.c.id == row.id).values(**values))
            await uow.commit()
        DELIVERIES.labels(outcome).inc()
        if outcome == "dead":
            log.error("webhook_dead_lettered", partner=row.partner, delivery_id=str(row.delivery_id),
                      order_id=str(row.order_id), error=error)
        return outcome

    async def deliver(self, row: Claimed) -> str:
        if not row.url or not row.secret:  # endpoint removed after the row was queued
            return await self._finish(row, ok=False, error=NO_ENDPOINT)
        wait = await self.breakers.open_for(str(row.partner_id), row.partner)
        if wait > 0:
            return await self._finish(row, ok=False, defer_seconds=wait + random.uniform(0, 1))
        body = json.dumps({"delivery_id": str(row.delivery_id), **row.payload}, separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {SIGNATURE_HEADER: sign(row.secret, timestamp, body), TIMESTAMP_HEADER: str(timestamp),
                   DELIVERY_HEADER: str(row.delivery_id), EVENT_HEADER: row.event_type}
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            response = await asyncio.wait_for(self.client.post(row.url, content=body, headers=headers),
                                              self.settings.webhooks.timeout_seconds)
            status = response.status_code
            ok = 200 <= status < 300  # a redirect is an answer like any other: shown, not followed
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            ok, error = False, UNREACHABLE
            log.warning("webhook_unreachable", partner=row.partner, delivery_id=str(row.delivery_id),
                        refused_address=blocked(exc), error=f"{type(exc).__name__}: {exc}"[:300])
        DELIVERY_SECONDS.observe(time.perf_counter() - started)
        await self.breakers.record(str(row.partner_id), row.partner, ok)
        return await self._finish(row, ok=ok, status=status, error=error)

    async def _run_one(self, row: Claimed) -> None:
        try:
            async with self.slots:
                await self.deliver(row)
        except Exception:  # the lease expires and the row comes back
            log.exception("webhook_delivery_error", delivery_id=str(row.delivery_id))
        finally:
            self.in_flight[row.partner_id] -= 1
            if not self.in_flight[row.partner_id]:
                del self.in_flight[row.partner_id]

    def _spawn(self, row: Claimed) -> None:
        self.in_flight[row.partner_id] = self.in_flight.get(row.partner_id, 0) + 1
        task = asyncio.create_task(self._run_one(row))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run_once(self) -> int:
        rows = await self.claim()
        for row in rows:
            self._spawn(row)
        return len(rows)

    async def pending(self) -> int:
        async with self.db.sessions() as session:
            return int((await session.execute(select(func.count()).select_from(webhook_deliveries)
                                               .where(webhook_deliveries.c.state == "pending"))).scalar() or 0)

    async def _gauges(self) -> None:
        PENDING.set(await self.pending())

    async def _run_when_woken(self) -> int:
        # Listening (again) first; while that fails, the poll waits no longer than a second.
        listening = await self.wakeups.ensure()
        self._idle_now = self.settings.webhooks.idle_seconds if listening else min(
            self.settings.webhooks.idle_seconds, 1.0)
        return await self.run_once()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliveries queued by a commit wake the dispatcher (LISTEN); the poll every ``idle_seconds``
        finds retries as they fall due and covers notifications lost while not listening."""
        try:
            await poll_until_stopped(stop, self._run_when_woken, idle_seconds=self.settings.webhooks.idle_seconds,
                                     idle_for=lambda: self._idle_now, wake=self.wakeups.event, busy_seconds=0.01,
                                     error_event="webhook_dispatcher_error", gauges=self._gauges,
                                     gauge_every=self.settings.webhooks.gauge_seconds)
        finally:
            await self.wakeups.close()
        if self.tasks:  # in-flight requests end within their timeout; unfinished leases expire
            await asyncio.wait(set(self.tasks), timeout=self.settings.webhooks.timeout_seconds + 1)
        await self.client.aclose()

"""One reader of the service's stream per process, fanning entries out to in-process subscribers."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from prometheus_client import Counter as MetricCounter
from prometheus_client import Gauge
from redis.asyncio import Redis

from alexandrite.kit.errors import ApiError
from alexandrite.kit.live.announce import PAYLOAD, topics_of
from alexandrite.kit.shutdown import draining

log = structlog.get_logger(__name__)

STREAMS_OPEN = Gauge("alexandrite_live_streams", "Server-sent event streams open in this process", ["service"])
STREAMS_REFUSED = MetricCounter("alexandrite_live_streams_refused_total", "Event streams refused, by reason",
                                ["service", "reason"])
SUBSCRIBERS_DROPPED = MetricCounter("alexandrite_live_subscribers_dropped_total",
                                    "Event streams closed because they fell behind", ["service"])


@dataclass(frozen=True)
class Entry:
    id: str  # the Redis stream id, "<ms>-<n>": the SSE event id
    data: dict[str, Any]


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream id as a comparable pair; raises ValueError when it is not one."""
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n or 0)


def parse(raw_id: bytes | str, fields: dict[Any, Any]) -> Entry | None:
    entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
    body = fields.get(PAYLOAD) or fields.get(PAYLOAD.decode())
    if body is None:
        return None
    try:
        return Entry(entry_id, orjson.loads(body))
    except orjson.JSONDecodeError:
        return None


@dataclass(eq=False)
class Subscriber:
    topics: tuple[str, ...]
    client: str
    queue: asyncio.Queue[Entry | None]
    closed: bool = False
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def close(self, reason: str) -> None:
        """Ends the stream: the waiting reader gets None (room is made for it if the queue is full)."""
        if self.closed:
            return
        self.closed, self.reason = True, reason
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(None)


class LiveHub:
    """Reads ``key`` with ``XREAD BLOCK`` from the entry last seen and gives each entry to the subscribers
    of its topics. A subscriber whose queue is full is closed (its page reconnects with ``Last-Event-ID``
    and catches up from the stream). While the process drains (SIGTERM) every stream is closed and
    new ones are refused, so a rolling restart moves watchers to other replicas instead of cutting them.

    Reads are paced: after a read that brought entries the hub waits ``batch_ms``, so entries committed
    meanwhile come in the next read together instead of one read each (a busy service's stream costs at
    most 1000 / batch_ms reads a second; a watcher hears of a change at most that much later)."""

    def __init__(self, redis: Redis, key: str, *, service: str, max_streams: int, max_per_client: int,
                 queue_size: int, block_ms: int, batch_ms: int = 20) -> None:
        self.redis = redis
        self.key = key
        self.service = service
        self.max_streams = max_streams
        self.max_per_client = max_per_client
        self.queue_size = queue_size
        self.block_ms = block_ms
        self.batch_seconds = batch_ms / 1000
        self.reads = 0  # XREADs made (for tests and profiles)
        self._by_topic: dict[str, set[Subscriber]] = defaultdict(set)
        self._per_client: Counter[str] = Counter()
        self.count = 0
        self.last_id: str | None = None
        self.closing = False
        self.delivered = 0

    # --- subscribers ------------------------------------------------------------------------------

    def subscribe(self, topics: Iterable[str], client: str) -> Subscriber:
        """A new subscriber; raises 503 (process full or shutting down) or 429 (this client has enough)."""
        if self.closing or draining():
            STREAMS_REFUSED.labels(self.service, "shutting_down").inc()
            raise ApiError(503, "shutting_down", "This server is restarting; reconnect in a moment.",
                           headers={"Retry-After": "1"})
        if self.count >= self.max_streams:
            STREAMS_REFUSED.labels(self.service, "process_full").inc()
            raise ApiError(503, "too_many_streams", "This server watches as many orders as it can; retry shortly.",
                           details={"limit": self.max_streams}, headers={"Retry-After": "5"})
        if self._per_client[client] >= self.max_per_client:
            STREAMS_REFUSED.labels(self.service, "client_limit").inc()
            raise ApiError(429, "too_many_streams", "Too many open event streams; close one first.",
                           details={"limit": self.max_per_client}, headers={"Retry-After": "5"})
        subscriber = Subscriber(tuple(dict.fromkeys(topics)), client, asyncio.Queue(self.queue_size))
        for topic in subscriber.topics:
            self._by_topic[topic].add(subscriber)
        self._per_client[client] += 1
        self.count += 1
        STREAMS_OPEN.labels(self.service).inc()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        removed = False
        for topic in subscriber.topics:
            members = self._by_topic.get(topic)
            if members is not None and subscriber in members:
                members.discard(subscriber)
                removed = True
                if not members:
                    del self._by_topic[topic]
        if removed:
            self._per_client[subscriber.client] -= 1
            if self._per_client[subscriber.client] <= 0:
                del self._per_client[subscriber.client]
            self.count -= 1
            STREAMS_OPEN.labels(self.service).dec()
        subscriber.close(subscriber.reason or "done")

    def close_all(self, reason: str) -> None:
        for subscriber in {s for members in self._by_topic.values() for s in members}:
            subscriber.close(reason)

    def publish(self, entry: Entry) -> None:
        """Hands ``entry`` to every subscriber of its topics (at most once each)."""
        seen: set[Subscriber] = set()
        behind: list[Subscriber] = []
        for topic in topics_of(entry.data):
            for subscriber in self._by_topic.get(topic, ()):
                if subscriber in seen or subscriber.closed:
                    continue
                seen.add(subscriber)
                try:
                    subscriber.queue.put_nowait(entry)
                    self.delivered += 1
                except asyncio.QueueFull:
                    behind.append(subscriber)
        for subscriber in behind:  # its place is free at once; its stream ends with "bye"
            SUBSCRIBERS_DROPPED.labels(self.service).inc()
            subscriber.reason = "behind"
            self.unsubscribe(subscriber)

    # --- the stream -------------------------------------------------------------------------------

    async def newest_id(self) -> str:
        last = await self.redis.xrevrange(self.key, count=1)
        if not last:
            return "0-0"
        raw = last[0][0]
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def since(self, after: str, topics: Iterable[str], limit: int = 1000) -> list[Entry] | None:
        """Entries of ``topics`` after the id ``after``, oldest first; None when entries after it were
        already trimmed away (or ``after`` is no stream id): the watcher must start over."""
        try:
            after_key = id_key(after)
        except ValueError:
            return None
        if await self.redis.exists(self.key):
            info = await self.redis.xinfo_stream(self.key)
            first = info.get("first-entry")
            if first and int(info.get("entries-added", 0)) > int(info.get("length", 0)):
                # Trimming takes the oldest entries: one older than the oldest kept may have been missed.
                raw_first = first[0].decode() if isinstance(first[0], bytes) else str(first[0])
                if after_key < id_key(raw_first):
                    return None
        wanted = set(topics)
        entries: list[Entry] = []
        start = f"({after}"
        while True:
            batch: Any = await self.redis.xrange(self.key, min=start, max="+", count=limit)
            for raw_id, fields in batch:
                entry = parse(raw_id, fields)
                if entry is not None and wanted.intersection(topics_of(entry.data)):
                    entries.append(entry)
            if len(batch) < limit:
                return entries
            last = batch[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else str(last))

    async def run(self, stop: asyncio.Event) -> None:
        """Reads until ``stop``; a Redis failure is retried after a pause (subscribers stay open and
        catch up from the last id read once the stream is back)."""
        pause = 0.5
        while not stop.is_set():
            try:
                if self.last_id is None:
                    self.last_id = await self.newest_id()
                if draining() and not self.closing:
                    self.closing = True
                    self.close_all("shutting_down")
                answer: Any = await self.redis.xread({self.key: self.last_id}, block=self.block_ms, count=500)
                self.reads += 1
                pause = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("live_read_failed", error=repr(error)[:200])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                pause = min(pause * 2, 10.0)
                continue
            for _key, items in answer or ():
                for raw_id, fields in items:
                    entry = parse(raw_id, fields)
                    self.last_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                    if entry is not None:
                        self.publish(entry)
            if answer and self.batch_seconds > 0:
                await asyncio.sleep(self.batch_seconds)
        self.closing = True
        self.close_all("shutting_down")

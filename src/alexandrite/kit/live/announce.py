"""Writes committed order changes to the service's Redis stream (after the commit, never before)."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from redis.asyncio import Redis

from alexandrite.kit.coalesce import HeldBatches
from alexandrite.kit.db import OrderChange

log = structlog.get_logger(__name__)

PAYLOAD = b"d"  # each entry has one field: the change as JSON
# Statuses whose entries also go to the "queue" topic: a price worked out moves everyone behind it.
QUEUE_TOPIC = "queue"
QUEUE_STATUS = "PRICE_CALCULATING"


def stream_key(prefix: str, service: str) -> str:
    return f"{prefix}:live:{service}"


def change_entry(change: OrderChange) -> dict[str, Any]:
    entry: dict[str, Any] = {"order_id": str(change.order_id), "kind": change.kind, "status": change.status}
    if change.previous is not None:
        entry["previous"] = change.previous
    if change.seq is not None:
        entry["seq"] = change.seq
    return entry


def topics_of(entry: dict[str, Any]) -> tuple[str, ...]:
    """Who hears of an entry: watchers of its order, of the pricing queue (when it moved), of everything."""
    topics: tuple[str, ...] = (entry["order_id"], "*")
    if entry.get("kind") == "status" and QUEUE_STATUS in (entry.get("status"), entry.get("previous")):
        topics += (QUEUE_TOPIC,)
    return topics


class Announcer:
    """An order listener (:attr:`Database.order_listeners`) that appends each change to the stream.

    The committing request or consumer does not wait for Redis: changes are held ``hold_seconds`` from the
    first of a batch and then appended together in one pipeline (kit/coalesce.py, :class:`HeldBatches`), in
    the order they were announced. A failed write is logged and dropped: the change is committed, watchers
    see it on their next event or reload, and the pages still poll when their stream is away."""

    def __init__(self, redis: Redis, key: str, maxlen: int, hold_seconds: float = 0.0) -> None:
        self.redis = redis
        self.key = key
        self.maxlen = maxlen
        self._appends: HeldBatches[OrderChange] = HeldBatches(self._append, hold_seconds)

    def __call__(self, change: OrderChange) -> None:
        self._appends.submit(change)

    async def drain(self) -> None:
        """Wait until every change announced so far was appended (or its append failed)."""
        await self._appends.drain()

    async def _append(self, changes: list[OrderChange]) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            for change in changes:
                pipe.xadd(self.key, {PAYLOAD: orjson.dumps(change_entry(change))}, maxlen=self.maxlen,
                          approximate=True)
            await pipe.execute()
        except Exception as error:
            log.warning("live_announce_failed", error=repr(error)[:200], changes=len(changes),
                        order_id=str(changes[0].order_id))

"""Sets up a process's live stream: the announcer on its database, the hub reading the stream."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from alexandrite.kit.db import Database
from alexandrite.kit.live.announce import Announcer, stream_key
from alexandrite.kit.live.hub import LiveHub
from alexandrite.kit.redis_clients import connect_redis
from alexandrite.kit.settings import Settings


class Live:
    """The announcer and the hub of one process (``app.state.live``)."""

    def __init__(self, settings: Settings, service: str, db: Database, redis: Any) -> None:
        live = settings.live
        self.key = stream_key(settings.redis.prefix, service)
        self.announcer = Announcer(redis, self.key, live.stream_maxlen, live.announce_hold_ms / 1000)
        db.order_listeners.append(self.announcer)
        # Its own connection: an XREAD BLOCK outlasts the short timeout of the shared client.
        self.reader = connect_redis(settings.redis.url, timeout=live.block_ms / 1000 + 5.0,
                                    sentinels=settings.redis.sentinels, master=settings.redis.sentinel_master)
        self.hub = LiveHub(self.reader, self.key, service=service, max_streams=live.max_streams,
                           max_per_client=live.max_streams_per_client, queue_size=live.queue_size,
                           block_ms=live.block_ms, batch_ms=live.batch_ms)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.hub.run(stop)
        finally:
            with contextlib.suppress(Exception):
                await self.announcer.drain()
            with contextlib.suppress(Exception):
                await self.reader.aclose()

"""Cache-aside pages in Redis: tagged entries, invalidation after commit, one loader per miss.

- An entry is a ready response body (bytes) under ``<prefix>:cache:<name>:v:<key>``, with a TTL
  that grows by a random jitter so entries filled together do not expire together.
- Each entry carries tags (for the dashboard: the order statuses it shows). :meth:`PageCache.invalidate`
  bumps the tags' generations and deletes their entries; a loader that read the database before
  the change finds the generation moved and does not store what it read (no stale refill).
- A miss takes a short lock; identical misses wait for the first loader's entry instead of all
  querying the database (stampede protection).
- After an invalidation, refills read the primary for ``fresh_seconds`` (a replica may lag).
- When Redis fails, the page comes from the database, ``alexandrite_cache_requests_total
  {outcome="unavailable"}`` counts it, and Redis is left alone for ``retry_seconds``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from alexandrite.kit import metrics
from alexandrite.kit.coalesce import Coalescer
from alexandrite.kit.redis_clients import connect_redis, redis_client
from alexandrite.kit.settings import Settings

log = structlog.get_logger(__name__)

Loader = Callable[[bool], Awaitable[bytes]]  # argument: read the primary (True) or any replica (False)

# KEYS: value, lock, n generation keys, n tag-set keys. ARGV: value, ttl ms, lock token, n,
# n generations seen before loading, tag-set ttl ms.
_FILL = """
local n = tonumber(ARGV[4])
local current = 1
for i = 1, n do
  if (redis.call('GET', KEYS[2 + i]) or '0') ~= ARGV[4 + i] then current = 0 end
end
if current == 1 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  for i = 1, n do
    redis.call('SADD', KEYS[2 + n + i], KEYS[1])
    redis.call('PEXPIRE', KEYS[2 + n + i], ARGV[5 + n])
  end
end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return current
"""

# KEYS: value, lock. ARGV: lock token, lock ms. The entry if one is there by now, else 1 when this
# caller took the lock, else 0 (someone else is loading). Atomic, so a reader that missed just before
# another loader's fill finds the entry instead of taking the freed lock and loading again.
_CLAIM = """
local value = redis.call('GET', KEYS[1])
if value then return value end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

# KEYS: fresh flag, n generation keys, n tag-set keys. ARGV: n, fresh ms.
_INVALIDATE = """
local n = tonumber(ARGV[1])
for i = 1, n do
  redis.call('INCR', KEYS[1 + i])
  for _, key in ipairs(redis.call('SMEMBERS', KEYS[1 + n + i])) do redis.call('DEL', key) end
  redis.call('DEL', KEYS[1 + n + i])
end
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], '1', 'PX', ARGV[2]) end
return n
"""


class PageCache:
    def __init__(self, redis: Redis | str, *, prefix: str, name: str, ttl_seconds: float, jitter: float = 0.2,
                 lock_seconds: float = 2.0, timeout_seconds: float = 0.25, retry_seconds: float = 1.0,
                 fresh_seconds: float = 2.0) -> None:
        """``redis``: a client (no retries: a failure falls back to the database at once) or a URL."""
        self.name = name
        self._redis = connect_redis(redis, timeout=timeout_seconds, retries=0) if isinstance(redis, str) else redis
        self._base = f"{prefix}:cache:{name}:"
        self._ttl_ms = max(int(ttl_seconds * 1000), 1)
        self._jitter = jitter
        self._lock_ms = max(int(lock_seconds * 1000), 1)
        self._retry_seconds = retry_seconds
        self._fresh_ms = int(fresh_seconds * 1000)
        self._down_until = 0.0
        self._claim = self._redis.register_script(_CLAIM)
        self._fill = self._redis.register_script(_FILL)
        self._invalidate = self._redis.register_script(_INVALIDATE)
        self._invalidations: Coalescer[list[str], bool] = Coalescer(self._invalidate_together)
        metrics.CACHE_UP.labels(name).set(1)

    @classmethod
    def from_settings(cls, settings: Settings, name: str) -> PageCache | None:
        """The configured cache, or None when ``cache_ttl_seconds`` is 0 (disabled)."""
        if settings.cache.ttl_seconds <= 0:
            return None
        client = redis_client(settings, timeout=settings.cache.redis_timeout_seconds, retries=0)
        return cls(client, prefix=settings.redis.prefix, name=name,
                   ttl_seconds=settings.cache.ttl_seconds, jitter=settings.cache.ttl_jitter,
                   lock_seconds=settings.cache.lock_seconds, timeout_seconds=settings.cache.redis_timeout_seconds,
                   retry_seconds=settings.cache.retry_seconds, fresh_seconds=settings.cache.replica_fresh_seconds)

    async def close(self) -> None:
        await self._redis.aclose()

    # --- keys ---------------------------------------------------------------------------------

    def _value(self, key: str) -> str:
        return f"{self._base}v:{key}"

    def _lock(self, key: str) -> str:
        return f"{self._base}l:{key}"

    def _gen(self, tag: str) -> str:
        return f"{self._base}g:{tag}"

    def _tagset(self, tag: str) -> str:
        return f"{self._base}t:{tag}"

    def ttl_ms(self) -> int:
        """This entry's TTL: the base plus up to ``jitter`` of it, at random."""
        return int(self._ttl_ms * (1 + random.uniform(0, self._jitter)))

    # --- health -------------------------------------------------------------------------------

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, operation: str, error: BaseException) -> None:
        if self._available():
            log.warning("cache_unavailable", cache=self.name, operation=operation, error=repr(error)[:200])
        self._down_until = time.monotonic() + self._retry_seconds
        metrics.CACHE_UP.labels(self.name).set(0)

    def _recovered(self) -> None:
        metrics.CACHE_UP.labels(self.name).set(1)

    # --- read ---------------------------------------------------------------------------------

    async def get_or_load(self, key: str, tags: Iterable[str], load: Loader) -> bytes:
        """The cached body for ``key``, or ``load``'s, stored for the next reader.

        Errors of ``load`` (the database) propagate; Redis errors only send the read to ``load``.
        """
        tags = sorted(set(tags))
        if not self._available():
            return await self._bypass(load)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(self._value(key))
                pipe.mget([self._gen(t) for t in tags] or [self._base + "none"])
                pipe.get(self._base + "fresh")
                value, generations, fresh = await pipe.execute()
        except (RedisError, OSError) as error:
            self._failed("read", error)
            return await self._bypass(load)
        self._recovered()
        if value is not None:
            metrics.CACHE_REQUESTS.labels(self.name, "hit").inc()
            return bytes(value)
        seen = [(g or b"0").decode() for g in generations[: len(tags)]]
        return await self._load_once(key, tags, seen, fresh is not None, load)

    async def _bypass(self, load: Loader) -> bytes:
        metrics.CACHE_REQUESTS.labels(self.name, "unavailable").inc()
        return await load(False)

    async def _load_once(self, key: str, tags: list[str], seen: list[str], fresh: bool, load: Loader) -> bytes:
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self._lock_ms / 1000
        pause = 0.002
        while True:
            try:
                claim = await self._claim(keys=[self._value(key), self._lock(key)], args=[token, self._lock_ms])
            except (RedisError, OSError) as error:
                self._failed("lock", error)
                return await self._bypass(load)
            if isinstance(claim, bytes):  # another loader filled it meanwhile
                metrics.CACHE_REQUESTS.labels(self.name, "coalesced").inc()
                return claim
            if claim == 1:
                metrics.CACHE_REQUESTS.labels(self.name, "miss").inc()
                try:
                    value = await load(fresh)
                except BaseException:
                    await self._release(key, token)
                    raise
                await self._store(key, tags, seen, token, value)
                return value
            if time.monotonic() >= deadline:  # the first loader is stuck: read for ourselves
                metrics.CACHE_REQUESTS.labels(self.name, "miss").inc()
                return await load(fresh)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    async def _store(self, key: str, tags: list[str], seen: list[str], token: str, value: bytes) -> None:
        ttl = self.ttl_ms()
        keys = [self._value(key), self._lock(key), *(self._gen(t) for t in tags), *(self._tagset(t) for t in tags)]
        args: list[Any] = [value, ttl, token, len(tags), *seen, math.ceil(self._ttl_ms * (1 + self._jitter)) + 1000]
        try:
            await self._fill(keys=keys, args=args)
        except (RedisError, OSError) as error:
            self._failed("fill", error)

    async def _release(self, key: str, token: str) -> None:
        try:
            if await self._redis.get(self._lock(key)) == token.encode():
                await self._redis.delete(self._lock(key))
        except (RedisError, OSError) as error:
            self._failed("release", error)

    # --- invalidation -------------------------------------------------------------------------

    async def invalidate(self, tags: Iterable[str]) -> bool:
        """Drop every entry carrying one of ``tags``; call after the commit that changed them.

        Invalidations arriving while one is on the wire are sent together by the next (kit/coalesce.py):
        one script call with the union of their tags. True once this call's tags were dropped."""
        tags = sorted(set(tags))
        if not tags:
            return True
        return await self._invalidations.submit(tags)

    async def _invalidate_together(self, batches: list[list[str]]) -> bool:
        tags = sorted({tag for batch in batches for tag in batch})
        keys = [self._base + "fresh", *(self._gen(t) for t in tags), *(self._tagset(t) for t in tags)]
        try:
            await self._invalidate(keys=keys, args=[len(tags), self._fresh_ms])
        except (RedisError, OSError) as error:
            self._failed("invalidate", error)
            metrics.CACHE_INVALIDATIONS.labels(self.name, "failed").inc(len(batches))
            return False
        metrics.CACHE_INVALIDATIONS.labels(self.name, "ok").inc(len(batches))
        return True

"""Redis clients: every one the platform uses is made here, so Sentinel discovery applies everywhere.

Without ``redis_sentinels`` a client talks to ``redis_url``. With it, the client asks the
sentinels (``host:port,host:port,...``) for the current master of ``redis_sentinel_master`` on
every new connection; after a failover a connection to the old master fails once (the caller's
breaker and fallbacks handle it: limits fail open, the page cache reads the database) and the
next one goes to the new master. Database number and password still come from ``redis_url``.
Clients connect lazily, on first use: nothing connects at import or construction time.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from alexandrite.kit.settings import Settings


def sentinel_addresses(value: str) -> list[tuple[str, int]]:
    """``"h1:26379, h2:26380"`` -> ``[("h1", 26379), ("h2", 26380)]``."""
    addresses = []
    for part in value.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"sentinel address {part.strip()!r}: use host:port")
        addresses.append((host, int(port)))
    if not addresses:
        raise ValueError("no sentinel addresses")
    return addresses


def connect_redis(url: str, *, timeout: float, retries: int | None = None, sentinels: str | None = None,
                  master: str = "alexandrite") -> Redis:
    """A client for ``url``, or for the master ``master`` the ``sentinels`` name. ``retries``: how often
    a failed command is tried again at once (None: the client library's default)."""
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                               "health_check_interval": 0}
    if retries is not None:
        options["retry"] = Retry(NoBackoff(), retries)
    if not sentinels:
        return Redis.from_url(url, **options)
    parts = urlsplit(url)
    database = int(parts.path.lstrip("/") or 0)
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    sentinel = Sentinel(sentinel_addresses(sentinels),
                        sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout})
    return sentinel.master_for(master, db=database, password=password, username=username, **options)


def redis_client(settings: Settings, *, timeout: float | None = None, retries: int | None = None) -> Redis:
    """The platform's Redis (throttling, breakers, webhook slots, page cache) as configured."""
    return connect_redis(settings.redis.url, timeout=timeout or settings.redis.timeout_seconds, retries=retries,
                         sentinels=settings.redis.sentinels, master=settings.redis.sentinel_master)

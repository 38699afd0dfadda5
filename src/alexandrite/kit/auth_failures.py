"""A tight limit on FAILED sign-ins, per client address and per account, shared by replicas in Redis.

Successes never count. Over the limit the answer is the same ``429`` whether the account exists or not.
"""

from __future__ import annotations

import hashlib
from typing import Any

from prometheus_client import Counter

from alexandrite.kit.errors import ApiError

AUTH_FAILURES = Counter("alexandrite_auth_failures_total", "Failed authentication attempts", ["service", "kind"])
AUTH_LOCKED = Counter("alexandrite_auth_locked_total", "Attempts refused 429 after too many failures",
                      ["service", "kind"])

MAX_FAILURES = 10
WINDOW_SECONDS = 300


def _keys(prefix: str, client: str, account: str) -> list[str]:
    digest = hashlib.sha256(account.encode()).hexdigest()[:32]
    return [f"{prefix}:authfail:ip:{client}", f"{prefix}:authfail:acct:{digest}"]


async def refuse_if_locked(redis: Any, prefix: str, service: str, kind: str, client: str, account: str) -> None:
    keys = _keys(prefix, client, account)
    counts = await redis.mget(keys)
    if any(int(count or 0) >= MAX_FAILURES for count in counts):
        ttl = max([await redis.ttl(key) for key in keys] + [1])
        AUTH_LOCKED.labels(service, kind).inc()
        raise ApiError(429, "too_many_failures", f"Too many failed attempts; retry in {ttl} s.",
                       headers={"Retry-After": str(ttl)})


async def record_failure(redis: Any, prefix: str, service: str, kind: str, client: str, account: str) -> None:
    AUTH_FAILURES.labels(service, kind).inc()
    async with redis.pipeline(transaction=True) as pipe:
        for key in _keys(prefix, client, account):
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS, nx=True)
        await pipe.execute()

"""A tight limit on FAILED authentication, per client address and per account, shared by replicas in Redis.

Sign-ins (API and pages: passwords, pasted staff tokens) check the limit before the credential, so
past it even the right password answers ``429``. Bearer tokens, the service token and ``X-API-Key``
values count only when they fail, in the same round trip as the count (:func:`count_failure`): a
failing one answers ``429`` past the limit, while a valid token or key (which no one guesses) still
works from a crowded address. Successes never count. Over the limit the answer is the same ``429``
whether the account exists or not.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

from prometheus_client import Counter

from alexandrite.kit.errors import ApiError

AUTH_FAILURES = Counter("alexandrite_auth_failures_total", "Failed authentication attempts", ["service", "kind"])
AUTH_LOCKED = Counter("alexandrite_auth_locked_total", "Attempts refused 429 after too many failures",
                      ["service", "kind"])

# Defaults of ALEX_FAILED_AUTH_LIMIT / ALEX_FAILED_AUTH_WINDOW_SECONDS.
MAX_FAILURES = 10
WINDOW_SECONDS = 300


class Limits(NamedTuple):
    limit: int = MAX_FAILURES
    window: int = WINDOW_SECONDS


def limits_of(settings: Any) -> Limits:
    return Limits(settings.throttle.failed_auth_limit, settings.throttle.failed_auth_window_seconds)


def _keys(prefix: str, client: str, account: str) -> list[str]:
    digest = hashlib.sha256(account.encode()).hexdigest()[:32]
    return [f"{prefix}:authfail:ip:{client}", f"{prefix}:authfail:acct:{digest}"]


def _too_many(ttl: int) -> ApiError:
    return ApiError(429, "too_many_failures", f"Too many failed attempts; retry in {ttl} s.",
                    headers={"Retry-After": str(ttl)})


async def count_failure(redis: Any, prefix: str, service: str, kind: str, client: str, account: str,
                        limits: Limits = Limits()) -> ApiError | None:
    """Count one failure (one round trip); the ``429`` to answer when over the limit, else None.

    If Redis cannot answer, nothing is counted and the caller answers its own error."""
    AUTH_FAILURES.labels(service, kind).inc()
    keys = _keys(prefix, client, account)
    try:
        async with redis.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.incr(key)
                pipe.expire(key, limits.window, nx=True)
                pipe.ttl(key)
            results = await pipe.execute()
    except Exception:  # noqa: BLE001 - the general limiter and its breaker cover Redis outages
        return None
    counts, ttls = results[0::3], results[2::3]
    if any(int(count) > limits.limit for count in counts):
        AUTH_LOCKED.labels(service, kind).inc()
        return _too_many(max([int(t) for t in ttls] + [1]))
    return None


async def refuse_if_locked(redis: Any, prefix: str, service: str, kind: str, client: str, account: str,
                           limits: Limits = Limits()) -> None:
    keys = _keys(prefix, client, account)
    counts = await redis.mget(keys)
    if any(int(count or 0) >= limits.limit for count in counts):
        ttl = max([await redis.ttl(key) for key in keys] + [1])
        AUTH_LOCKED.labels(service, kind).inc()
        raise _too_many(ttl)


async def record_failure(redis: Any, prefix: str, service: str, kind: str, client: str, account: str,
                         limits: Limits = Limits()) -> None:
    AUTH_FAILURES.labels(service, kind).inc()
    async with redis.pipeline(transaction=True) as pipe:
        for key in _keys(prefix, client, account):
            pipe.incr(key)
            pipe.expire(key, limits.window, nx=True)
        await pipe.execute()


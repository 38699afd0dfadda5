"""Rate limits shared by every replica: sliding-window counters in Redis (one Lua call per request).

Every request counts against its client IP; a request with credentials also counts against its
principal: a partner API key (limit by the partner's plan), a customer, or a staff member.
Over a limit: ``429`` with ``Retry-After`` and ``RateLimit-Limit/-Remaining/-Reset``. Redis away
(error, timeout, or its breaker open): requests pass (fail open) or get ``503``, by setting,
and ``alexandrite_rate_limit_redis_failures_total`` counts them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Counter

from alexandrite.kit.breaker import BreakerOpen, CircuitBreaker
from alexandrite.kit.errors import error_body
from alexandrite.kit.live import STREAM_SUFFIXES
from alexandrite.kit.revocation import READ_WITH_LIMITS, revocation_keys
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import InvalidToken, principal_of, read_claims

log = structlog.get_logger(__name__)

RATE_LIMITED = Counter("alexandrite_rate_limited_total", "Requests refused with 429", ["service", "bucket"])
REDIS_FAILURES = Counter(
    "alexandrite_rate_limit_redis_failures_total",
    "Rate-limit checks that could not reach Redis, by what was decided",
    ["service", "decision"],  # allowed (fail open) | rejected (fail closed)
)

EXEMPT_PREFIXES = ("/health/", "/metrics")

# KEYS: the request's n buckets, in order, then keys only read (the token's deny-list entries, kit/revocation.py);
# ARGV[1] window ms, ARGV[2] n, ARGV[2 + i] the limit of KEYS[i]. The buckets are counted in order until one
# refuses (the ones before it keep their count, as one call per bucket did). Returns the values of the read
# keys (false: none), then {allowed, remaining, reset ms} per bucket checked: the last is the refusal, if any.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local current = math.floor(now / window)
local elapsed = now - current * window
local reset = window - elapsed
local out = {}
for i = n + 1, #KEYS do
  out[#out + 1] = redis.call('GET', KEYS[i])
end
for i = 1, n do
  local bucket = KEYS[i]
  local limit = tonumber(ARGV[i + 2])
  local ck = bucket .. ':' .. current
  local prev = tonumber(redis.call('GET', bucket .. ':' .. (current - 1)) or '0')
  local cur = tonumber(redis.call('GET', ck) or '0')
  local used = prev * (window - elapsed) / window + cur
  if used + 1 > limit then
    local wait = reset
    if prev > 0 and cur + 1 <= limit then
      wait = math.ceil(reset - (limit - 1 - cur) * window / prev)
    end
    if wait < 1 then wait = 1 end
    out[#out + 1] = 0
    out[#out + 1] = 0
    out[#out + 1] = wait
    return out
  end
  redis.call('INCR', ck)
  redis.call('PEXPIRE', ck, window * 2)
  out[#out + 1] = 1
  out[#out + 1] = math.floor(limit - used - 1)
  out[#out + 1] = reset
end
return out
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float
    bucket: str

    def headers(self) -> list[tuple[bytes, bytes]]:
        reset = str(max(math.ceil(self.reset_seconds), 1)).encode()
        return [(b"ratelimit-limit", str(self.limit).encode()),
                (b"ratelimit-remaining", str(max(self.remaining, 0)).encode()),
                (b"ratelimit-reset", reset)]


class RedisUnavailable(Exception):
    pass


class RateLimiter:
    def __init__(self, redis: Any, prefix: str, window_seconds: int, breaker: CircuitBreaker) -> None:
        self.redis = redis
        self.prefix = prefix
        self.window_ms = window_seconds * 1000
        self.breaker = breaker
        self._script: Any = None

    async def hit(self, bucket: str, limit: int) -> Verdict:
        return (await self.hit_all([(bucket, limit)]))[0][0]

    async def hit_all(self, buckets: list[tuple[str, int]], read: list[str] | None = None
                      ) -> tuple[list[Verdict], list[Any]]:
        """Counts the request against ``buckets`` in order and reads the keys ``read``, in one Redis call.
        The verdicts of the buckets checked (all allowed, or the last one refused; the buckets after it are
        not counted) and the values read (None where a key does not exist)."""
        read = read or []
        if not buckets and not read:
            return [], []
        if self._script is None:
            self._script = self.redis.register_script(_SLIDING_WINDOW)
        keys = [*(f"{self.prefix}:rl:{bucket}" for bucket, _ in buckets), *read]
        args = [self.window_ms, len(buckets), *(limit for _, limit in buckets)]
        try:
            flat = await self.breaker.call(lambda: self._script(keys=keys, args=args))
        except BreakerOpen as error:
            raise RedisUnavailable(str(error)) from error
        except Exception as error:
            raise RedisUnavailable(repr(error)[:200]) from error
        values, counted = flat[:len(read)], flat[len(read):]
        return [Verdict(bool(counted[i]), limit, int(counted[i + 1]), int(counted[i + 2]) / 1000,
                        bucket.split(":", 1)[0])
                for i, (bucket, limit) in zip(range(0, len(counted), 3), buckets, strict=False)], values


PlanLookup = Callable[[str], Awaitable[str | None]]


class PlanCache:
    """Partner plan by API-key hash, cached in-process for ``ttl`` seconds (unknown keys too)."""

    def __init__(self, lookup: PlanLookup, ttl: float = 60.0, max_entries: int = 10_000) -> None:
        self.lookup = lookup
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, str | None]] = {}

    async def plan(self, key_hash: str) -> str | None:
        hit = self._cache.get(key_hash)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            plan = await self.lookup(key_hash)
        except Exception:  # the database answers auth anyway; count against the IP only meanwhile
            return None
        if len(self._cache) >= self.max_entries:
            self._cache.clear()  # bounded: a flood of random keys cannot grow it
        self._cache[key_hash] = (now + self.ttl, plan)
        return plan


def buckets_for(scope: dict[str, Any], settings: Settings, plan: str | None, key_hash: str | None
                ) -> list[tuple[str, int]]:
    """(bucket, limit) pairs this request counts against. Only a service call whose token verifies
    counts against none: a wrong or empty ``Service`` credential is limited like any other request."""
    return limits_of(scope, settings, plan, key_hash)[0]


def limits_of(scope: dict[str, Any], settings: Settings, plan: str | None, key_hash: str | None
              ) -> tuple[list[tuple[str, int]], tuple[str, dict[str, Any]] | None]:
    """:func:`buckets_for`, and the bearer token with its verified claims when the request carries one."""
    auth = authorization_values(scope)
    scheme, _, credentials = (auth[0] if auth else "").partition(" ")
    if scheme.lower() == "service" and service_token_valid(settings, credentials):
        return [], None
    client = scope.get("client") or ("unknown", 0)
    result = [(f"ip:{client[0]}", settings.throttle.per_ip)]
    if key_hash is not None and plan is not None:
        limit = settings.throttle.plans.get(plan, settings.throttle.plans.get("standard", 600))
        result.append((f"key:{key_hash[:32]}", limit))
    elif scheme.lower() == "bearer" and credentials:
        token = credentials.strip()
        try:
            claims = read_claims(settings, token, None)
        except InvalidToken:
            return result, None
        principal = principal_of(claims)
        limit = settings.throttle.per_customer if principal.role in ("customer", "partner") \
            else settings.throttle.per_staff
        result.append((f"{principal.role}:{principal.subject}", limit))
        return result, (token, claims)
    return result, None


def authorization_values(scope: dict[str, Any]) -> list[str]:
    """Every ``Authorization`` header of the request, in order."""
    return [value.decode("latin-1") for name, value in scope.get("headers") or () if name == b"authorization"]


def service_token_valid(settings: Settings, credentials: str) -> bool:
    token = credentials.strip()
    return bool(token) and hmac.compare_digest(token.encode(), settings.auth.service_token.encode())


async def _send_json(send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": data})


SHED = Counter("alexandrite_load_shed_total", "Requests answered 503 at once because too many were in flight",
               ["service"])


class LoadShedMiddleware:
    """Answers 503 + ``Retry-After`` at once when ``max_in_flight`` requests are already being served,
    so overload turns into fast refusals instead of a growing queue of slow requests (and an exhausted
    database pool). Probes and metrics are never shed."""

    def __init__(self, app: Any, service: str, max_in_flight: int) -> None:
        self.app = app
        self.service = service
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] != "http" or path.startswith(EXEMPT_PREFIXES) or path.endswith(STREAM_SUFFIXES):
            # event streams last for minutes: kit/live limits them per process and per client instead
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            SHED.labels(self.service).inc()
            await _send_json(send, 503, error_body("overloaded", "The service is busy; retry shortly."),
                             [(b"retry-after", b"1")])
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class ThrottleMiddleware:
    """ASGI middleware; reads the limiter and settings from ``app.state`` (set in the lifespan)."""

    def __init__(self, app: Any, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and len(authorization_values(scope)) > 1:
            # the limiter and authentication must read the same credential: refuse ambiguity outright
            await _send_json(send, 400, error_body(
                "duplicate_authorization", "Send exactly one Authorization header."), [])
            return
        state = getattr(scope.get("app"), "state", None)
        limiter: RateLimiter | None = getattr(state, "rate_limiter", None)
        path = scope.get("path", "")
        if scope["type"] != "http" or limiter is None or path.startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        settings: Settings = state.settings  # type: ignore[union-attr]
        key_hash = plan = None
        for name, value in scope.get("headers") or ():
            if name == b"x-api-key" and value:
                key_hash = hashlib.sha256(value).hexdigest()
                plans: PlanCache | None = getattr(state, "partner_plans", None)
                plan = await plans.plan(key_hash) if plans is not None else None
                break
        tightest: Verdict | None = None
        try:
            buckets, bearer = limits_of(scope, settings, plan, key_hash)
            # the token's deny-list entries ride along: authentication needs no round trip of its own
            read = revocation_keys(settings.redis.prefix, bearer[1]) if bearer is not None else None
            verdicts, values = await limiter.hit_all(buckets, read)
            if bearer is not None:
                scope[READ_WITH_LIMITS] = (bearer[0], values)
            for verdict in verdicts:
                if not verdict.allowed:
                    RATE_LIMITED.labels(self.service, verdict.bucket).inc()
                    retry = str(max(math.ceil(verdict.reset_seconds), 1))
                    await _send_json(send, 429, error_body(
                        "rate_limited", f"Too many requests; retry in {retry} s.",
                        {"limit": verdict.limit, "scope": verdict.bucket}),
                        [(b"retry-after", retry.encode()), *verdict.headers()])
                    return
                if tightest is None or verdict.remaining < tightest.remaining:
                    tightest = verdict
        except RedisUnavailable as error:
            decision = "allowed" if settings.throttle.fail_open else "rejected"
            REDIS_FAILURES.labels(self.service, decision).inc()
            if not settings.throttle.fail_open:
                await _send_json(send, 503, error_body(
                    "rate_limiter_unavailable", "Request limits cannot be checked right now; try again shortly."),
                    [(b"retry-after", b"5")])
                return
            log.debug("rate_limit_fail_open", error=str(error))

        if tightest is None:
            await self.app(scope, receive, send)
            return
        extra = tightest.headers()

        async def _send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, _send)

"""Circuit breakers with timeouts for outbound dependencies, their state exported as metrics.

``CircuitBreaker`` is process-local (object storage, Redis, RabbitMQ publishing, peer HTTP):
after ``failure_threshold`` consecutive failures it opens and fails fast for ``reset_seconds``,
then lets one trial call through (half-open); a success closes it, a failure re-opens it.
Partner webhook endpoints use :class:`SharedBreakers`, whose state lives in Redis so every
replica sees the same open endpoint.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from prometheus_client import Counter, Gauge

from alexandrite.kit.settings import Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")

STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}
BREAKER_STATE = Gauge(
    "alexandrite_circuit_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open", ["breaker"]
)
BREAKER_TRANSITIONS = Counter(
    "alexandrite_circuit_breaker_transitions_total", "Circuit breaker state changes", ["breaker", "state"]
)
BREAKER_REJECTED = Counter(
    "alexandrite_circuit_breaker_rejected_total", "Calls refused at once because the breaker was open", ["breaker"]
)


class BreakerOpen(Exception):
    """The dependency is known to be failing; ``retry_after`` seconds until the next trial."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit breaker {name!r} is open; retry in {retry_after:.1f}s")
        self.name = name
        self.retry_after = retry_after


class CircuitBreaker:
    def __init__(self, name: str, *, failure_threshold: int = 5, reset_seconds: float = 10.0,
                 timeout: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self.timeout = timeout
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_started: float | None = None
        self._clock = clock
        self._state = "closed"
        BREAKER_STATE.labels(name).set(0)

    @property
    def state(self) -> str:
        if self._state == "open" and self.retry_after() <= 0:
            return "half_open"
        return self._state

    def retry_after(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(self.opened_at + self.reset_seconds - self._clock(), 0.0)

    def _set(self, state: str) -> None:
        if state != self._state:
            self._state = state
            BREAKER_STATE.labels(self.name).set(STATE_VALUES[state])
            BREAKER_TRANSITIONS.labels(self.name, state).inc()
            log.warning("circuit_breaker_state", breaker=self.name, state=state, failures=self.failures)

    def before_call(self) -> None:
        """Raise :class:`BreakerOpen` unless a call may go out now."""
        if self._state == "closed":
            return
        trial_busy = self._trial_started is not None and self._clock() - self._trial_started < self.reset_seconds
        if self.retry_after() > 0 or trial_busy:  # a lost trial (no outcome recorded) expires
            BREAKER_REJECTED.labels(self.name).inc()
            raise BreakerOpen(self.name, max(self.retry_after(), 0.5))
        self._trial_started = self._clock()
        self._set("half_open")

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_started = None
        self._set("closed")

    def record_failure(self) -> None:
        self.failures += 1
        self._trial_started = None
        if self._state == "half_open" or self.failures >= self.failure_threshold:
            self.opened_at = self._clock()
            self._set("open")

    async def call(self, make: Callable[[], Awaitable[T]], *, timeout: float | None = None,
                   is_failure: Callable[[BaseException], bool] = lambda _: True) -> T:
        """Run ``make()`` under the breaker and its timeout (``TimeoutError`` counts as a failure)."""
        self.before_call()
        limit = timeout if timeout is not None else self.timeout
        try:
            if limit:  # asyncio.timeout, not wait_for: on 3.11 wait_for wraps every call in a task of its own
                async with asyncio.timeout(limit):
                    result = await make()
            else:
                result = await make()
        except asyncio.CancelledError:
            self._trial_started = None
            raise
        except BaseException as error:
            if is_failure(error):
                self.record_failure()
            else:
                self.record_success()
            raise
        self.record_success()
        return result


def breaker_from_settings(name: str, settings: Settings, *, timeout: float | None = None) -> CircuitBreaker:
    return CircuitBreaker(name, failure_threshold=settings.breakers.failure_threshold,
                          reset_seconds=settings.breakers.reset_seconds, timeout=timeout)


# --- shared through Redis (partner endpoints) -----------------------------------------------------

_FAILURE_SCRIPT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local threshold = tonumber(ARGV[1])
if failures >= threshold then
  redis.call('HSET', KEYS[1], 'open_until', now_ms + tonumber(ARGV[2]), 'failures', threshold - 1)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 20)
  return 1
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 20)
return 0
"""

_STATE_SCRIPT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until > now_ms then return open_until - now_ms end
return 0
"""


class SharedBreakers:
    """Per-endpoint breakers whose state is in Redis (one hash per endpoint), shared by replicas.

    After ``threshold`` consecutive failures an endpoint is open for ``reset_seconds``; the next
    failure after that (the trial) re-opens it at once, a success closes it. When Redis itself
    fails, a process-local breaker per endpoint takes over (same rules, not shared).
    """

    def __init__(self, redis: object, prefix: str, *, threshold: int, reset_seconds: float,
                 metric: Gauge | None = None) -> None:
        self.redis = redis
        self.prefix = prefix
        self.threshold = threshold
        self.reset_ms = int(reset_seconds * 1000)
        self.metric = metric
        self._local: dict[str, CircuitBreaker] = {}

    def _key(self, endpoint: str) -> str:
        return f"{self.prefix}:breaker:{endpoint}"

    def _fallback(self, endpoint: str) -> CircuitBreaker:
        if endpoint not in self._local:
            self._local[endpoint] = CircuitBreaker(f"webhook-local:{endpoint[:8]}", failure_threshold=self.threshold,
                                                   reset_seconds=self.reset_ms / 1000)
        return self._local[endpoint]

    def _export(self, label: str, is_open: bool) -> None:
        if self.metric is not None:
            self.metric.labels(label).set(2 if is_open else 0)

    async def open_for(self, endpoint: str, label: str) -> float:
        """Seconds the endpoint stays open (0.0 when calls may go out)."""
        try:
            remaining_ms = int(await self.redis.eval(_STATE_SCRIPT, 1, self._key(endpoint)))  # type: ignore[attr-defined]
        except Exception:
            remaining = self._fallback(endpoint).retry_after() if self._fallback(endpoint).state == "open" else 0.0
            self._export(label, remaining > 0)
            return remaining
        self._export(label, remaining_ms > 0)
        return remaining_ms / 1000

    async def record(self, endpoint: str, label: str, ok: bool) -> None:
        try:
            if ok:
                await self.redis.delete(self._key(endpoint))  # type: ignore[attr-defined]
                opened = False
            else:
                opened = bool(await self.redis.eval(  # type: ignore[attr-defined]
                    _FAILURE_SCRIPT, 1, self._key(endpoint), self.threshold, self.reset_ms))
        except Exception:
            local = self._fallback(endpoint)
            local.record_success() if ok else local.record_failure()
            opened = local.state == "open"
        if opened:
            BREAKER_TRANSITIONS.labels("webhook", "open").inc()
            log.warning("webhook_endpoint_breaker_open", partner=label)
        self._export(label, opened)

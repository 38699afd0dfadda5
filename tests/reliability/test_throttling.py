"""Rate limits in real Redis, shared by replicas; Redis unreachable fails open or closed by setting."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager
from prometheus_client import REGISTRY

from alexandrite.kit.breaker import breaker_from_settings
from alexandrite.kit.db import Database
from alexandrite.kit.redis_clients import redis_client
from alexandrite.kit.revocation import revoke_token
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.throttle import RateLimiter
from alexandrite.kit.tokens import issue_token, read_claims
from alexandrite.shop.app import create_app
from alexandrite.shop.handlers import create_partner


def _settings(settings: Settings, **overrides: object) -> Settings:
    base = {"run_relay": False, "run_consumer": False, "run_webhooks": False,
            "redis_prefix": f"{settings.redis.prefix}:rl-{uuid.uuid4().hex[:6]}"}
    return settings.replace(**{**base, **overrides})


@asynccontextmanager
async def shop(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://shop") as client:
            yield client


def _bearer(settings: Settings, role: str, subject: str) -> dict[str, str]:
    token = issue_token(settings, Principal(role=role, subject=subject, name=subject), 600)
    return {"Authorization": f"Bearer {token}"}


def _redis_failures(decision: str) -> float:
    return REGISTRY.get_sample_value("alexandrite_rate_limit_redis_failures_total",
                                     {"service": "shop", "decision": decision}) or 0.0


async def test_partner_plan_limit_gives_429_with_retry_after_and_ratelimit_headers(settings: Settings) -> None:
    local = _settings(settings, rate_limit_plans={"standard": 4, "premium": 8})
    db = Database(local.database_url("shop"), pool_size=1)
    standard = await create_partner(db, f"std-{uuid.uuid4().hex[:6]}")
    premium = await create_partner(db, f"pre-{uuid.uuid4().hex[:6]}", plan="premium")
    await db.dispose()
    async with shop(local) as client:
        remaining = []
        for _ in range(4):
            response = await client.get("/api/v1/orders", headers={"X-API-Key": standard})
            assert response.status_code == 200
            assert response.headers["RateLimit-Limit"] == "4"
            remaining.append(int(response.headers["RateLimit-Remaining"]))
        assert remaining == [3, 2, 1, 0]
        refused = await client.get("/api/v1/orders", headers={"X-API-Key": standard})
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["RateLimit-Remaining"] == "0" and int(refused.headers["RateLimit-Reset"]) >= 1
        assert refused.json()["error"]["code"] == "rate_limited"
        assert refused.headers["x-content-type-options"] == "nosniff"  # still wrapped by the edge middleware
        # Another plan has its own, larger allowance; health and metrics are never limited.
        statuses = [(await client.get("/api/v1/orders", headers={"X-API-Key": premium})).status_code
                    for _ in range(8)]
        assert statuses == [200] * 8
        assert (await client.get("/api/v1/orders", headers={"X-API-Key": premium})).status_code == 429
        assert (await client.get("/health/live")).status_code == 200


async def test_customer_limit_is_shared_by_two_replicas(settings: Settings) -> None:
    local = _settings(settings, rate_limit_per_customer=5)
    alice, bob = _bearer(local, "customer", str(uuid.uuid4())), _bearer(local, "customer", str(uuid.uuid4()))
    async with shop(local) as one, shop(local) as two:
        codes = [(await (one if i % 2 else two).get("/api/v1/orders", headers=alice)).status_code
                 for i in range(7)]
        assert codes == [200] * 5 + [429] * 2
        assert (await one.get("/api/v1/orders", headers=bob)).status_code == 200  # per customer, not global


async def test_ip_limit_applies_to_anonymous_calls(settings: Settings) -> None:
    local = _settings(settings, rate_limit_per_ip=3)
    async with shop(local) as client:
        codes = [(await client.post("/api/v1/auth/token", json={"email": "x@y.z", "password": "p"})).status_code
                 for _ in range(4)]
    assert codes == [401, 401, 401, 429]


async def test_redis_unreachable_fails_open_and_is_counted(settings: Settings) -> None:
    local = _settings(settings, redis_url="redis://127.0.0.1:1/0", rate_limit_per_customer=1)
    before = _redis_failures("allowed")
    async with shop(local) as client:
        headers = _bearer(local, "customer", str(uuid.uuid4()))
        codes = [(await client.get("/api/v1/orders", headers=headers)).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    assert _redis_failures("allowed") - before >= 3  # each request: in the metric


async def test_redis_unreachable_fails_closed_when_configured(settings: Settings) -> None:
    local = _settings(settings, redis_url="redis://127.0.0.1:1/0", rate_limit_fail_open=False)
    before = _redis_failures("rejected")
    async with shop(local) as client:
        response = await client.get("/api/v1/orders", headers=_bearer(local, "customer", str(uuid.uuid4())))
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert response.json()["error"]["code"] == "rate_limiter_unavailable"
        assert (await client.get("/health/live")).status_code == 200
    assert _redis_failures("rejected") - before == 1


async def test_buckets_are_counted_in_order_in_one_call_and_the_refusal_names_its_bucket(settings: Settings) -> None:
    """IP then customer, as before the buckets shared one Redis call: the IP bucket counts the request the
    customer's bucket refuses; the answered headers are those of the tightest bucket."""
    local = _settings(settings, rate_limit_per_ip=10, rate_limit_per_customer=2)
    async with shop(local) as client:
        alice = _bearer(local, "customer", str(uuid.uuid4()))
        first, second, third = [await client.get("/api/v1/orders", headers=alice) for _ in range(3)]
        assert [first.status_code, second.status_code, third.status_code] == [200, 200, 429]
        assert (first.headers["RateLimit-Limit"], first.headers["RateLimit-Remaining"]) == ("2", "1")
        assert (second.headers["RateLimit-Limit"], second.headers["RateLimit-Remaining"]) == ("2", "0")
        assert third.json()["error"]["details"] == {"limit": 2, "scope": "customer"}
        assert int(third.headers["Retry-After"]) >= 1
        anonymous = await client.get("/api/v1/orders")  # the same IP: 3 counted, this is the 4th
        assert anonymous.headers["RateLimit-Limit"] == "10" and anonymous.headers["RateLimit-Remaining"] == "6"


async def test_a_bucket_refused_first_leaves_the_later_ones_uncounted(settings: Settings) -> None:
    redis = redis_client(settings)
    limiter = RateLimiter(redis, f"{settings.redis.prefix}:rl-{uuid.uuid4().hex[:6]}", 60,
                          breaker_from_settings("redis-test", settings))
    try:
        allowed, _ = await limiter.hit_all([("ip:a", 1), ("customer:x", 5)])
        assert [(v.allowed, v.remaining, v.bucket) for v in allowed] == [(True, 0, "ip"), (True, 4, "customer")]
        refused, _ = await limiter.hit_all([("ip:a", 1), ("customer:x", 5)])
        assert [(v.allowed, v.bucket) for v in refused] == [(False, "ip")]  # the customer's bucket not reached
        again, _ = await limiter.hit_all([("customer:x", 5)])
        assert again[0].remaining == 3  # counted twice, not three times
        assert (await limiter.hit_all([])) == ([], [])
    finally:
        await redis.aclose()


async def test_limiter_reads_the_deny_list_entries_with_the_buckets(settings: Settings) -> None:
    redis = redis_client(settings)
    prefix = f"{settings.redis.prefix}:rl-{uuid.uuid4().hex[:6]}"
    limiter = RateLimiter(redis, prefix, 60, breaker_from_settings("redis-test", settings))
    try:
        await redis.set(f"{prefix}:present", "1.5", ex=60)
        verdicts, values = await limiter.hit_all([("ip:b", 3)], [f"{prefix}:present", f"{prefix}:absent"])
        assert values == [b"1.5", None] and verdicts[0].allowed and verdicts[0].remaining == 2
        refused, values = await limiter.hit_all([("ip:b", 0)], [f"{prefix}:present"])
        assert values == [b"1.5"] and not refused[0].allowed  # read even when the request is refused
    finally:
        await redis.aclose()


async def test_a_revoked_token_is_refused_with_and_without_throttling(settings: Settings) -> None:
    """The limiter reads the token's deny-list entries for authentication; with throttling off (or Redis
    answering the limiter no more) authentication reads them itself: a revoked token is refused either way."""
    for enabled in (True, False):
        local = _settings(settings, rate_limit_enabled=enabled)
        subject = str(uuid.uuid4())
        token = issue_token(local, Principal(role="customer", subject=subject, name="r"), 600)
        other = _bearer(local, "customer", str(uuid.uuid4()))
        claims = read_claims(local, token, "shop")
        async with shop(local) as client:
            headers = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/api/v1/orders", headers=headers)).status_code == 200
            redis = redis_client(local)
            try:
                await revoke_token(redis, local.redis.prefix, str(claims["jti"]), float(claims["exp"]))
            finally:
                await redis.aclose()
            refused = await client.get("/api/v1/orders", headers=headers)
            assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"], enabled
            assert (await client.get("/api/v1/orders", headers=other)).status_code == 200

"""The dashboard's Redis cache: invalidation after commit (API and events), TTL with jitter,
one loader per miss, no stale refill, Redis down; the HTML page; the 50-operator take race."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from mes_orders import QUOTE, approved_order, feed, priced_order
from prometheus_client import REGISTRY
from test_mes_partitions import assert_counts_exact

from alexandrite.contracts.events import StatusChanged, status_envelope
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.cache import PageCache
from alexandrite.kit.db import Database
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token
from alexandrite.mes.app import create_app
from alexandrite.mes.dashboard import CACHE_NAME
from alexandrite.mes.schemas import OrderPage
from alexandrite.orders.words import STATUS_WORDS

S = OrderStatus
BASE = "/api/v1/production"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bearer(settings: Settings, name: str = "vera", role: str = "operator") -> dict[str, str]:
    token = issue_token(settings, Principal(role=role, subject=name, name=name), 600)
    return {"Authorization": f"Bearer {token}"}


def cache_count(outcome: str) -> float:
    return REGISTRY.get_sample_value("alexandrite_cache_requests_total",
                                     {"cache": CACHE_NAME, "outcome": outcome}) or 0.0


async def first_page(client: httpx.AsyncClient, settings: Settings, **params: Any) -> dict[str, Any]:
    response = await client.get(f"{BASE}/orders", headers=bearer(settings), params={"limit": 20, **params})
    assert response.status_code == 200, response.text
    return dict(response.json())


def without_clock(page: dict[str, Any]) -> dict[str, Any]:
    """The page without what moves with the clock (added when it is served)."""
    moving = ("time_in_stage_seconds", "late_by_seconds", "late")
    return {**{k: v for k, v in page.items() if k != "as_of"},
            "items": [{k: v for k, v in i.items() if k not in moving} for i in page["items"]]}


def status_in(page: dict[str, Any], order_id: uuid.UUID) -> str | None:
    return next((i["status"] for i in page["items"] if i["id"] == str(order_id)), None)


async def test_a_status_change_is_visible_on_the_very_next_read(client: httpx.AsyncClient, app: Any,
                                                               settings: Settings) -> None:
    db: Database = app.state.db
    order_id = await approved_order(db, created_at=datetime.now(UTC) + timedelta(days=400))
    page = await first_page(client, settings)
    assert status_in(page, order_id) == "MANUFACTURING_APPROVED"
    OrderPage.model_validate(page)  # the documented shape
    hits = cache_count("hit")
    again = await first_page(client, settings)
    # Served from the cache in one read (the page carries its counts and late counts); only the stage
    # clocks moved on.
    assert cache_count("hit") == hits + 1 and without_clock(again) == without_clock(page)

    # An operator's action through the API.
    taken = await client.post(f"{BASE}/orders/{order_id}/take", headers=bearer(settings))
    assert taken.status_code == 200
    page = await first_page(client, settings)
    assert status_in(page, order_id) == "MANUFACTURING_STARTED"
    assert page["counts"]["MANUFACTURING_STARTED"] == again["counts"]["MANUFACTURING_STARTED"] + 1
    assert page["counts"]["MANUFACTURING_APPROVED"] == again["counts"]["MANUFACTURING_APPROVED"] - 1

    # A change arriving as another service's event: CRM approves a priced order.
    priced = await priced_order(db, created_at=datetime.now(UTC) + timedelta(days=401))
    await first_page(client, settings)  # cached without it
    await first_page(client, settings, status="PRICE_CALCULATED")
    approve = status_envelope(producer="crm", order_id=priced, seq=6, change=StatusChanged(
        status=S.MANUFACTURING_APPROVED, previous_status=S.PRICE_CALCULATED, actor="seller:bob", quote=QUOTE))
    assert await feed(db, approve) == "ok"
    assert status_in(await first_page(client, settings), priced) == "MANUFACTURING_APPROVED"
    assert status_in(await first_page(client, settings, status="PRICE_CALCULATED"), priced) is None


async def test_entries_expire_with_jitter_and_misses_load_once(settings: Settings) -> None:
    cache = PageCache(settings.redis.url, prefix=settings.redis.prefix, name=f"t-{uuid.uuid4().hex[:6]}",
                      ttl_seconds=10, jitter=0.5, lock_seconds=5, timeout_seconds=5)
    loads = 0

    async def slow_load(fresh: bool) -> bytes:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.2)
        return b'{"n": 1}'

    try:
        bodies = await asyncio.gather(*(cache.get_or_load("page", ["A"], slow_load) for _ in range(30)))
        assert loads == 1 and set(bodies) == {b'{"n": 1}'}  # 29 identical misses waited for the first
        client = aioredis.Redis.from_url(settings.redis.url)
        ttls = []
        for n in range(12):
            await cache.get_or_load(f"k{n}", ["A"], slow_load)
            ttls.append(await client.pttl(f"{settings.redis.prefix}:cache:{cache.name}:v:k{n}"))
        await client.aclose()
        assert all(9_000 < t <= 15_000 for t in ttls) and len(set(t // 100 for t in ttls)) > 1
    finally:
        await cache.close()


async def test_a_reader_that_missed_just_before_a_fill_takes_the_entry(settings: Settings) -> None:
    """The window between a reader's miss and its lock attempt: another loader filled the entry and
    freed the lock meanwhile. The reader must take that entry, not the free lock and a second load."""
    cache = PageCache(settings.redis.url, prefix=settings.redis.prefix, name=f"t-{uuid.uuid4().hex[:6]}",
                      ttl_seconds=10, timeout_seconds=5)
    loads = 0

    async def load(fresh: bool) -> bytes:
        nonlocal loads
        loads += 1
        return f'{{"load": {loads}}}'.encode()

    try:
        assert await cache.get_or_load("page", ["A"], load) == b'{"load": 1}'  # filled; lock freed
        # the late reader resumes where get_or_load found no entry (generation "0" seen, no fresh flag)
        assert await cache._load_once("page", ["A"], ["0"], False, load) == b'{"load": 1}'
        assert loads == 1
    finally:
        await cache.close()


async def test_a_load_overtaken_by_a_change_is_not_stored(settings: Settings) -> None:
    cache = PageCache(settings.redis.url, prefix=settings.redis.prefix, name=f"t-{uuid.uuid4().hex[:6]}",
                      ttl_seconds=10, timeout_seconds=5)
    version = 1

    async def load_while_changing(fresh: bool) -> bytes:
        nonlocal version
        read = version
        version += 1
        await cache.invalidate(["A"])  # a commit lands while the page is being read
        return str(read).encode()

    async def load(fresh: bool) -> bytes:
        return str(version).encode()

    try:
        assert await cache.get_or_load("page", ["A", "B"], load_while_changing) == b"1"
        assert await cache.get_or_load("page", ["A", "B"], load) == b"2"  # the stale "1" was not kept
        assert await cache.get_or_load("page", ["A", "B"], load_while_changing) == b"2"  # now cached
        version = 3
        await cache.invalidate(["B"])  # any of the entry's tags drops it
        assert await cache.get_or_load("page", ["A", "B"], load) == b"3"
        assert await cache.get_or_load("other", ["C"], load) == b"3"
        version = 4
        await cache.invalidate(["A"])
        assert await cache.get_or_load("other", ["C"], load) == b"3"  # untouched by other tags
    finally:
        await cache.close()


async def test_invalidations_made_together_are_sent_as_one_and_each_waits_for_its_own(settings: Settings) -> None:
    cache = PageCache(settings.redis.url, prefix=settings.redis.prefix, name=f"t-{uuid.uuid4().hex[:6]}",
                      ttl_seconds=10, timeout_seconds=5)
    tags = [f"S{n}" for n in range(30)]
    version = 1

    async def load(fresh: bool) -> bytes:
        return str(version).encode()

    try:
        for tag in tags:
            assert await cache.get_or_load(f"page-{tag}", [tag], load) == b"1"
        version = 2
        # 30 commits at once, each dropping its own status's pages: when each call returns, its pages are gone
        done = await asyncio.gather(*(cache.invalidate([tag]) for tag in tags))
        assert done == [True] * 30 and cache._invalidations.flushes == 1
        assert [await cache.get_or_load(f"page-{tag}", [tag], load) for tag in tags] == [b"2"] * 30
    finally:
        await cache.close()


async def test_a_failing_load_is_not_taken_for_redis_down(settings: Settings) -> None:
    cache = PageCache(settings.redis.url, prefix=settings.redis.prefix, name=f"t-{uuid.uuid4().hex[:6]}",
                      ttl_seconds=10, timeout_seconds=5)

    async def database_down(fresh: bool) -> bytes:
        raise ConnectionRefusedError("the database is down")

    async def load(fresh: bool) -> bytes:
        return b"ok"

    unavailable = REGISTRY.get_sample_value("alexandrite_cache_requests_total",
                                            {"cache": cache.name, "outcome": "unavailable"}) or 0.0
    try:
        with pytest.raises(ConnectionRefusedError):
            await cache.get_or_load("page", ["A"], database_down)
        assert await cache.get_or_load("page", ["A"], load) == b"ok"  # the lock was released at once
    finally:
        await cache.close()
    assert (REGISTRY.get_sample_value("alexandrite_cache_requests_total",
                                      {"cache": cache.name, "outcome": "unavailable"}) or 0.0) == unavailable
    assert REGISTRY.get_sample_value("alexandrite_cache_up", {"cache": cache.name}) == 1


async def test_redis_unreachable_serves_from_the_database_and_says_so(settings: Settings) -> None:
    down = create_app(settings.replace(**{
        "run_relay": False, "run_consumer": False, "redis_url": f"redis://127.0.0.1:{closed_port()}/0"}))
    before = cache_count("unavailable")
    async with LifespanManager(down), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=down), base_url="http://mes.test") as http:
        order_id = await approved_order(down.state.db, created_at=datetime.now(UTC) + timedelta(days=402))
        response = await http.get(f"{BASE}/orders", headers=bearer(settings), params={"limit": 20})
        assert response.status_code == 200, response.text
        assert status_in(response.json(), order_id) == "MANUFACTURING_APPROVED"
        taken = await http.post(f"{BASE}/orders/{order_id}/take", headers=bearer(settings))
        assert taken.status_code == 200  # the failed invalidation does not undo the commit
        response = await http.get(f"{BASE}/orders", headers=bearer(settings), params={"limit": 20})
        assert status_in(response.json(), order_id) == "MANUFACTURING_STARTED"
        metrics = (await http.get("/metrics", headers={
            "Authorization": f"Bearer {settings.obs.metrics_token}"})).text
    assert cache_count("unavailable") >= before + 2
    assert f'alexandrite_cache_up{{cache="{CACHE_NAME}"}} 0.0' in metrics


def browser(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mes.test",
                             headers={"origin": "http://mes.test"})


async def test_html_dashboard_renders_the_same_view(client: httpx.AsyncClient, app: Any,
                                                    settings: Settings) -> None:
    await approved_order(app.state.db, created_at=datetime.now(UTC) + timedelta(days=403))
    order_id = await approved_order(app.state.db, created_at=datetime.now(UTC) + timedelta(days=404))
    json_page = await first_page(client, settings, limit=50)
    token = bearer(settings)["Authorization"].split()[1]
    async with browser(app) as web:
        signed_in = await web.post("/signin", data={"token": token, "next": "/production/dashboard"})
        assert signed_in.status_code == 303
        html = await web.get("/production/dashboard")
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assert f'href="/production/orders/{order_id}"' in html.text
        for status, n in json_page["counts"].items():
            assert f"{STATUS_WORDS[status]}<strong>{n}</strong>" in html.text
        assert (await web.get("/production/dashboard", params={"status": "BAKING"})).status_code == 422
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html.text).group(1)  # type: ignore[union-attr]
        take = await web.post(f"/production/orders/{order_id}/take", data={"csrf_token": csrf})
        assert take.status_code == 303 and "notice=" in take.headers["location"]
        assert status_in(await first_page(client, settings, limit=50), order_id) == "MANUFACTURING_STARTED"
        again = await web.post(f"/production/orders/{order_id}/take", data={"csrf_token": csrf})
        assert "error=" in again.headers["location"]  # the second take loses, in plain words
        other_site = await web.post(f"/production/orders/{order_id}/take", data={"csrf_token": csrf},
                                    headers={"origin": "https://evil.example"})
        assert other_site.status_code == 403

    async with browser(app) as web:
        assert (await web.get("/production/dashboard")).headers["location"].startswith("/signin")
        forged = await web.post("/signin", data={"token": "forged.token"})
        assert forged.status_code == 401
        seller = await web.post("/signin", data={"token": bearer(settings, "sam", "seller")["Authorization"].split()[1]})
        assert seller.status_code == 401


async def test_fifty_operators_take_the_same_order_exactly_one_wins(client: httpx.AsyncClient, app: Any,
                                                                    settings: Settings) -> None:
    order_id = await approved_order(app.state.db)
    responses = await asyncio.gather(*(
        client.post(f"{BASE}/orders/{order_id}/take", headers=bearer(settings, f"op-{n}")) for n in range(50)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 49
    winner = next(r for r in responses if r.status_code == 200).json()["operator"]
    assert status_in(await first_page(client, settings, limit=200), order_id) == "MANUFACTURING_STARTED"
    view = await client.get(f"{BASE}/orders/{order_id}", headers=bearer(settings))
    await assert_counts_exact(app.state.db)
    assert view.json()["operator"] == winner and [h["status"] for h in view.json()["history"]].count(
        "MANUFACTURING_STARTED") == 1

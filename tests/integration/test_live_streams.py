"""Live order streams against real PostgreSQL and Redis: fan-out, resume by Last-Event-ID, limits, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from orjson import loads as orjson_loads
from redis.asyncio import Redis

from alexandrite.contracts.events import Envelope, StatusChanged, status_envelope
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit import shutdown
from alexandrite.kit.db import Database, OrderChange
from alexandrite.kit.errors import ApiError
from alexandrite.kit.live.announce import PAYLOAD, Announcer
from alexandrite.kit.live.hub import Entry, LiveHub
from alexandrite.kit.messaging.consumer import Delivery
from alexandrite.kit.settings import Settings
from alexandrite.models3d.rings import ring
from alexandrite.models3d.writers import to_binary_stl
from alexandrite.shop.app import create_app
from alexandrite.shop.consumers import handle_event
from alexandrite.shop.handlers import create_partner
from tests.integration.live_support import EventReader, serving

S = OrderStatus
RING = to_binary_stl(ring(segments=48, profile_segments=8))
QUOTE = {"total": "123.45", "currency": "EUR"}


def shop_settings(settings: Settings, **extra: Any) -> Settings:
    return settings.replace(**{"run_relay": False, "run_consumer": False, "run_webhooks": False,
                               "run_notifier": False, "max_triangles": 50_000, **extra})


@pytest.fixture(scope="module")
async def shop(settings: Settings) -> AsyncIterator[tuple[Any, str]]:
    app = create_app(shop_settings(settings, live_max_streams_per_client=3, live_heartbeat_seconds=0.5))
    async with serving(app) as url:
        yield app, url


def delivery(envelope: Envelope) -> Delivery:
    return Delivery(body=envelope.model_dump_json().encode(), headers={}, routing_key=envelope.type,
                    message_id=str(envelope.event_id), attempt=0, redelivered=False)


async def partner_order(app: Any, client: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    """A partner's submitted order (seq 3) and the partner's headers."""
    headers = {"X-API-Key": await create_partner(app.state.db, f"live-{uuid.uuid4().hex[:6]}")}
    created = await client.post("/api/v1/orders", json={"alloy": "gold_750"}, headers=headers)
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    uploaded = await client.put(f"/api/v1/orders/{order_id}/model", headers=headers,
                                files={"file": ("ring.stl", RING, "model/stl")})
    assert uploaded.status_code == 200, uploaded.text
    assert (await client.post(f"/api/v1/orders/{order_id}/submit", headers=headers)).status_code == 202
    return headers, order_id


async def production_moves(db: Database, order_id: str, seq: int, status: S, previous: S, **extra: Any) -> None:
    envelope = status_envelope(producer="mes", order_id=uuid.UUID(order_id), seq=seq, change=StatusChanged(
        status=status, previous_status=previous, actor="mes:pricing", **extra))
    assert await handle_event(db, delivery(envelope)) == "ok"


async def test_a_partner_hears_each_change_and_catches_up_after_a_reconnect(shop: tuple[Any, str]) -> None:
    app, url = shop
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        headers, order_id = await partner_order(app, client)
        async with client.stream("GET", f"/api/v1/orders/{order_id}/events", headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = EventReader(response)
            opening = await events.until("order")
            assert opening.data["status"] == "SUBMITTED" and opening.id is None
            await production_moves(app.state.db, order_id, 4, S.PRICE_CALCULATING, S.SUBMITTED,
                                   progress={"queue_position": 2, "eta_seconds": 30})
            calculating = await events.until("order")
            assert calculating.data["status"] == "PRICE_CALCULATING" and calculating.id
            assert calculating.data["progress"]["queue_position"] == 2
        # Away while the price is worked out: the reconnect with Last-Event-ID gets it, and only it.
        await production_moves(app.state.db, order_id, 5, S.PRICE_CALCULATED, S.PRICE_CALCULATING, quote=QUOTE)
        resumed_headers = {**headers, "Last-Event-ID": calculating.id}
        async with client.stream("GET", f"/api/v1/orders/{order_id}/events", headers=resumed_headers) as response:
            events = EventReader(response)
            priced = await events.next()
            assert priced is not None and priced.event == "order"
            assert priced.data["status"] == "PRICE_CALCULATED" and priced.data["quote"] == QUOTE
            assert priced.id is not None and priced.id > calculating.id

        # Someone else's order is a missing one; so is an unknown id.
        stranger = {"X-API-Key": await create_partner(app.state.db, f"live-{uuid.uuid4().hex[:6]}")}
        refused = await client.get(f"/api/v1/orders/{order_id}/events", headers=stranger)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
        assert (await client.get(f"/api/v1/orders/{order_id}/events")).status_code == 401


async def test_a_last_event_id_the_stream_no_longer_holds_gets_a_reset(shop: tuple[Any, str]) -> None:
    app, url = shop
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        headers, order_id = await partner_order(app, client)
        async with client.stream("GET", f"/api/v1/orders/{order_id}/events",
                                 headers={**headers, "Last-Event-ID": "not-an-id"}) as response:
            events = EventReader(response)
            reset = await events.next()
            assert reset is not None and reset.event == "reset"
            assert await events.next() is None  # the server ends the stream: the client starts over


async def test_streams_per_client_are_limited_with_the_standard_error(shop: tuple[Any, str]) -> None:
    app, url = shop
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        headers, order_id = await partner_order(app, client)
        path = f"/api/v1/orders/{order_id}/events"
        async with contextlib_streams(client, path, headers, 3) as opened:
            assert [r.status_code for r in opened] == [200, 200, 200]
            fourth = await client.get(path, headers=headers)
            assert fourth.status_code == 429 and fourth.json()["error"]["code"] == "too_many_streams"
            assert fourth.json()["error"]["details"] == {"limit": 3} and fourth.headers["retry-after"]
        for _ in range(50):  # the closed streams are given back
            if app.state.live.hub.count == 0:
                break
            await asyncio.sleep(0.05)
        async with client.stream("GET", path, headers=headers) as again:
            assert again.status_code == 200


@contextlib.asynccontextmanager
async def contextlib_streams(client: httpx.AsyncClient, path: str, headers: dict[str, str],
                             n: int) -> AsyncIterator[list[httpx.Response]]:
    """``n`` streams of ``path`` open at once."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(client.stream("GET", path, headers=headers)) for _ in range(n)]


async def hub_for(settings: Settings, **limits: Any) -> tuple[LiveHub, Redis, str]:
    redis = Redis.from_url(settings.redis.url)
    key = f"{settings.redis.prefix}:live:test-{uuid.uuid4().hex[:8]}"
    options = {"max_streams": 2, "max_per_client": 2, "queue_size": 2, "block_ms": 100, **limits}
    return LiveHub(redis, key, service="test", **options), redis, key


async def test_the_hub_fans_out_by_topic_and_drops_a_subscriber_that_falls_behind(settings: Settings) -> None:
    hub, redis, key = await hub_for(settings, max_streams=3, max_per_client=3)
    stop = asyncio.Event()
    runner = asyncio.create_task(hub.run(stop))
    try:
        mine, other, everything = str(uuid.uuid4()), str(uuid.uuid4()), "*"
        watcher = hub.subscribe([mine], "a")
        bystander = hub.subscribe([other], "b")
        board = hub.subscribe([everything], "c")
        while hub.last_id is None:
            await asyncio.sleep(0.01)
        await redis.xadd(key, {PAYLOAD: f'{{"order_id": "{mine}", "kind": "status", "status": "SHIPPED"}}'})
        got = await asyncio.wait_for(watcher.queue.get(), 5)
        assert isinstance(got, Entry) and got.data["status"] == "SHIPPED"
        assert (await asyncio.wait_for(board.queue.get(), 5)) == got
        assert bystander.queue.empty()
        # The board never reads: its queue (2) fills and the hub closes it rather than buffer without end.
        for n in range(4):
            await redis.xadd(key, {PAYLOAD: f'{{"order_id": "{other}", "kind": "status", "status": "S{n}"}}'})
        for _ in range(100):
            if board.closed:
                break
            await asyncio.sleep(0.02)
        assert board.closed and board.reason == "behind"
        assert bystander.closed and bystander.reason == "behind"  # it did not read either
        assert hub.count == 1  # the dropped ones' places are free at once
        hub.subscribe(["x"], "d")
        hub.subscribe(["x"], "f")
        with pytest.raises(ApiError) as refused:
            hub.subscribe(["x"], "e")
        assert refused.value.status == 503 and refused.value.code == "too_many_streams"  # 3 per process
    finally:
        stop.set()
        await runner
        await redis.delete(key)
        await redis.aclose()


async def test_changes_announced_within_the_hold_are_appended_in_one_pipeline_in_order(settings: Settings) -> None:
    redis = Redis.from_url(settings.redis.url)
    key = f"{settings.redis.prefix}:live:test-{uuid.uuid4().hex[:8]}"
    announcer = Announcer(redis, key, maxlen=1_000, hold_seconds=0.05)
    orders = [uuid.uuid4() for _ in range(60)]
    try:
        announcer(OrderChange(order_id=orders[0], status="SUBMITTED", previous="INITIATED", seq=3))
        await announcer.drain()
        assert len(await redis.xrange(key)) == 1 and announcer._appends.flushes == 1
        for o in orders[1:]:  # announced one at a time, each by a caller that goes on at once
            announcer(OrderChange(order_id=o, status="PRICE_CALCULATING", previous="SUBMITTED", seq=4))
            await asyncio.sleep(0)
        assert len(await redis.xrange(key)) == 1  # held: not appended yet
        await announcer.drain()
        entries = await redis.xrange(key)
        assert [uuid.UUID(orjson_loads(fields[PAYLOAD])["order_id"]) for _, fields in entries] == orders
        assert orjson_loads(entries[1][1][PAYLOAD]) == {"order_id": str(orders[1]), "kind": "status",
                                                        "status": "PRICE_CALCULATING", "previous": "SUBMITTED",
                                                        "seq": 4}
        assert announcer._appends.flushes == 2  # one append, then the 59 held together
        await redis.delete(key)
        await redis.set(key, "not a stream")  # a failing append is logged and dropped, never raised
        announcer(OrderChange(order_id=orders[0], status="SHIPPED"))
        await announcer.drain()
        announcer(OrderChange(order_id=orders[1], status="SHIPPED"))
        await redis.delete(key)  # and the next append works again
        await announcer.drain()
        assert [orjson_loads(fields[PAYLOAD])["order_id"] for _, fields in await redis.xrange(key)] == [
            str(orders[1])]
    finally:
        await redis.delete(key)
        await redis.aclose()


async def test_entries_appended_together_reach_the_watchers_in_a_few_reads(settings: Settings) -> None:
    hub, redis, key = await hub_for(settings, batch_ms=50, queue_size=100)
    stop = asyncio.Event()
    runner = asyncio.create_task(hub.run(stop))
    order = str(uuid.uuid4())
    try:
        watcher = hub.subscribe([order], "a")
        while hub.last_id is None:
            await asyncio.sleep(0.01)
        for n in range(40):  # one by one, as forty commits would, faster than the hub's pace
            await redis.xadd(key, {PAYLOAD: f'{{"order_id": "{order}", "kind": "status", "status": "S{n}"}}'})
        received = [await asyncio.wait_for(watcher.queue.get(), 5) for _ in range(40)]
        assert [e.data["status"] for e in received if isinstance(e, Entry)] == [f"S{n}" for n in range(40)]
        assert hub.reads < 10  # not one read per entry
    finally:
        stop.set()
        await asyncio.wait_for(runner, 5)
        await redis.delete(key)
        await redis.aclose()


async def test_resume_reads_what_was_missed_and_knows_when_it_was_trimmed(settings: Settings) -> None:
    hub, redis, key = await hub_for(settings)
    try:
        order = str(uuid.uuid4())
        ids = [(await redis.xadd(key, {PAYLOAD: f'{{"order_id": "{order}", "kind": "status", "status": "S{n}"}}'}))
               .decode() for n in range(3)]
        missed = await hub.since(ids[0], [order])
        assert missed is not None and [e.data["status"] for e in missed] == ["S1", "S2"]
        assert await hub.since(ids[2], [order]) == []
        assert await hub.since(ids[0], ["someone-else"]) == []
        await redis.xtrim(key, maxlen=2, approximate=False)  # S0 is gone
        assert await hub.since(ids[0], [order]) is None  # what followed S0 may be gone too: start over
        assert [e.id for e in await hub.since(ids[1], [order]) or []] == [ids[2]]
    finally:
        await redis.delete(key)
        await redis.aclose()


async def test_streams_end_cleanly_when_the_process_drains_and_new_ones_are_refused(settings: Settings) -> None:
    app = create_app(shop_settings(settings, live_block_ms=100))
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        headers, order_id = await partner_order(app, client)
        path = f"/api/v1/orders/{order_id}/events"
        try:
            async with client.stream("GET", path, headers=headers) as response:
                events = EventReader(response)
                await events.until("order")
                shutdown._DRAINING.set()  # what SIGTERM does first
                bye = await events.until("bye")
                assert bye.data == {"reason": "shutting_down"}
                assert await events.next() is None
            refused = await client.get(path, headers=headers)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
            assert refused.headers["retry-after"] == "1"
        finally:
            shutdown._DRAINING.clear()


async def test_the_board_hears_production_orders_move_and_the_page_carries_its_stream(settings: Settings) -> None:
    from alexandrite.mes.app import create_app as create_mes
    from tests.integration.mes_orders import approved_order
    from tests.integration.test_staff_pages import sign_in, staff_token

    app = create_mes(settings.replace(**{"run_relay": False, "run_consumer": False, "run_watchdog": False}))
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10, headers={"Origin": url}) as client:
        await sign_in(client, staff_token(settings, "operator", "olga"), "/production/dashboard")
        page = await client.get("/production/dashboard")
        assert 'data-live="/production/dashboard/stream"' in page.text and 'src="/static/live.js"' in page.text
        assert (await client.get("/static/live.js")).status_code == 200
        async with client.stream("GET", "/production/dashboard/stream") as response:
            assert response.status_code == 200
            events = EventReader(response)
            order_id = await approved_order(app.state.db)
            seen = await events.until("change")
            while seen.data["order_id"] != str(order_id) or seen.data["status"] != "MANUFACTURING_APPROVED":
                seen = await events.until("change")
            assert seen.id
        anonymous = await httpx.AsyncClient(base_url=url).get("/production/dashboard/stream")
        assert anonymous.status_code in (303, 401)


async def test_the_sellers_list_hears_orders_arrive_and_move(settings: Settings) -> None:
    from alexandrite.crm.app import create_app as create_crm
    from tests.integration.test_crm_events import feed, pipeline
    from tests.integration.test_staff_pages import sign_in, staff_token

    app = create_crm(settings.replace(**{"run_relay": False, "run_consumer": False}))
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10, headers={"Origin": url}) as client:
        await sign_in(client, staff_token(settings, "seller", "sam"), "/orders")
        page = await client.get("/orders")
        assert 'data-live="/orders/live/stream"' in page.text
        async with client.stream("GET", "/orders/live/stream") as response:
            assert response.status_code == 200
            events = EventReader(response)
            order_id = uuid.uuid4()
            for envelope in pipeline(order_id):
                assert await feed(app.state.db, envelope) == "ok"
            statuses = []
            while len(statuses) < 5:
                change = await events.until("change")
                if change.data["order_id"] == str(order_id):
                    statuses.append(change.data["status"])
            assert statuses == ["INITIATED", "FILE_UPLOADED", "SUBMITTED", "PRICE_CALCULATING", "PRICE_CALCULATED"]


async def test_open_streams_do_not_count_as_requests_in_flight(settings: Settings) -> None:
    app = create_app(shop_settings(settings, max_in_flight_requests=1))
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        headers, order_id = await partner_order(app, client)
        path = f"/api/v1/orders/{order_id}/events"
        async with client.stream("GET", path, headers=headers) as first, \
                client.stream("GET", path, headers=headers) as second:
            assert first.status_code == second.status_code == 200
            # Both streams are open and plain requests are still served: load shedding counts requests only.
            assert (await client.get(f"/api/v1/orders/{order_id}", headers=headers)).status_code == 200


async def test_the_customers_page_hears_its_status_and_its_place_in_the_pricing_queue(
        shop: tuple[Any, str]) -> None:
    from tests.integration.test_shop_pages import signed_up

    app, url = shop
    async with httpx.AsyncClient(base_url=url, timeout=10, headers={"Origin": url}) as client:
        token = await signed_up(client)
        answer = await client.post("/orders/new", data={"alloy": "gold_585", "csrf_token": token},
                                   files={"file": ("ring.stl", RING, "model/stl")})
        assert answer.status_code == 303
        order_url = answer.headers["location"]
        order_id = order_url.rsplit("/", 1)[-1]
        page = await client.get(order_url)
        assert f'data-live="/orders/{order_id}/stream"' in page.text
        assert (await client.post(order_url + "/submit", data={"csrf_token": token})).status_code == 303
        partner_headers, ahead = await partner_order(app, client)  # someone else's order, priced first
        await production_moves(app.state.db, ahead, 4, S.PRICE_CALCULATING, S.SUBMITTED,
                               progress={"queue_position": 1, "eta_seconds": 5})
        async with client.stream("GET", order_url + "/stream") as response:
            assert response.status_code == 200
            events = EventReader(response)
            await production_moves(app.state.db, order_id, 4, S.PRICE_CALCULATING, S.SUBMITTED,
                                   progress={"queue_position": 2, "eta_seconds": 10})
            mine = await events.until("status")
            assert mine.data == {"order_id": order_id, "status": "PRICE_CALCULATING", "previous": "SUBMITTED",
                                 "seq": 4}
            await production_moves(app.state.db, ahead, 5, S.PRICE_CALCULATED, S.PRICE_CALCULATING, quote=QUOTE)
            moved = await events.next()
            assert moved is not None and moved.event == "queue" and moved.id  # the page asks for its new place
            await production_moves(app.state.db, order_id, 5, S.PRICE_CALCULATED, S.PRICE_CALCULATING, quote=QUOTE)
            priced = await events.until("status")
            assert priced.data["status"] == "PRICE_CALCULATED"
        stranger = httpx.AsyncClient(base_url=url, timeout=10, headers={"Origin": url})
        async with stranger:
            await signed_up(stranger)
            assert (await stranger.get(order_url + "/stream")).status_code == 404


async def test_a_quiet_stream_carries_heartbeats(shop: tuple[Any, str]) -> None:
    app, url = shop  # heartbeats every 0.5 s here (15 s by default)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        headers, order_id = await partner_order(app, client)
        async with client.stream("GET", f"/api/v1/orders/{order_id}/events", headers=headers) as response:
            lines = response.aiter_lines()
            seen = [await asyncio.wait_for(anext(lines), 10) for _ in range(8)]
            assert seen[0] == "retry: 2000"
            assert ": ping" in seen  # a comment line: browsers ignore it, proxies see traffic


async def test_a_watcher_on_one_replica_hears_changes_made_on_another(settings: Settings,
                                                                      shop: tuple[Any, str]) -> None:
    """Two shop processes on one database and Redis: the change is committed by replica A (its event
    consumer), the partner's stream is open on replica B, and B's reconnect resumes from its own id."""
    replica_a, url_a = shop
    replica_b = create_app(shop_settings(settings, live_heartbeat_seconds=0.5))
    async with serving(replica_b) as url_b, httpx.AsyncClient(base_url=url_a, timeout=10) as on_a, \
            httpx.AsyncClient(base_url=url_b, timeout=10) as on_b:
        headers, order_id = await partner_order(replica_a, on_a)
        async with on_b.stream("GET", f"/api/v1/orders/{order_id}/events", headers=headers) as response:
            assert response.status_code == 200
            events = EventReader(response)
            assert (await events.until("order")).data["status"] == "SUBMITTED"
            await production_moves(replica_a.state.db, order_id, 4, S.PRICE_CALCULATING, S.SUBMITTED,
                                   progress={"queue_position": 1, "eta_seconds": 10})
            calculating = await events.until("order")
            assert calculating.data["status"] == "PRICE_CALCULATING" and calculating.id
        await production_moves(replica_a.state.db, order_id, 5, S.PRICE_CALCULATED, S.PRICE_CALCULATING,
                               quote=QUOTE)
        # The id one replica gave resumes on the other: ids are the shared stream's, not a process's.
        async with on_a.stream("GET", f"/api/v1/orders/{order_id}/events",
                               headers={**headers, "Last-Event-ID": calculating.id}) as response:
            priced = await EventReader(response).next()
            assert priced is not None and priced.data["status"] == "PRICE_CALCULATED"
            assert priced.data["quote"] == QUOTE

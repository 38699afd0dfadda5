"""Partner webhooks against real local HTTP receivers: signed, isolated, retried, dead-lettered, replayed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from prometheus_client import REGISTRY
from sqlalchemy import delete, select

from alexandrite.contracts.events import StatusChanged, status_envelope
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.messaging.consumer import Delivery
from alexandrite.kit.settings import Settings
from alexandrite.models3d.rings import ring
from alexandrite.models3d.writers import to_binary_stl
from alexandrite.shop.app import create_app
from alexandrite.shop.consumers import handle_event
from alexandrite.shop.handlers import create_partner
from alexandrite.shop.tables import partners, webhook_deliveries
from alexandrite.shop.webhooks import verify
from alexandrite.shop.webhooks.dispatch import WebhookDispatcher
from tests.reliability.receivers import Receiver

RING = to_binary_stl(ring(segments=48, profile_segments=8))


def _settings(settings: Settings, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "run_relay": False, "run_consumer": False, "webhook_idle_seconds": 0.05,
        "webhook_backoff_seconds": (0.1, 0.2), "webhook_timeout_seconds": 5.0,
        "redis_prefix": f"{settings.redis.prefix}:wh-{uuid.uuid4().hex[:6]}",
        "webhook_allow_private_urls": True,  # the receivers listen on this machine (development setting)
    }
    return settings.replace(**{**base, **overrides})


@asynccontextmanager
async def shop(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app, shutdown_timeout=30):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://shop") as client:
            yield client


async def partner(settings: Settings, client: httpx.AsyncClient,
                  receiver: Receiver | None) -> tuple[dict[str, str], str, str]:
    db = Database(settings.database_url("shop"), pool_size=1)
    name = f"p-{uuid.uuid4().hex[:8]}"
    key = await create_partner(db, name)
    await db.dispose()
    headers = {"X-API-Key": key}
    secret = ""
    if receiver is not None:
        response = await client.put("/api/v1/webhook", headers=headers, json={"url": receiver.url})
        assert response.status_code == 200, response.text
        secret = response.json()["secret"]
    return headers, secret, name


async def drop_deliveries(settings: Settings, names: list[str]) -> None:
    """Leave no pending delivery to a receiver this test stops for a later test's dispatcher to try."""
    db = Database(settings.database_url("shop"), pool_size=1)
    try:
        async with UnitOfWork(db) as uow:
            await uow.session.execute(delete(webhook_deliveries).where(webhook_deliveries.c.partner_id.in_(
                select(partners.c.id).where(partners.c.name.in_(names)))))
            await uow.commit()
    finally:
        await db.dispose()


async def wait_for(check: Callable[[], bool | Awaitable[bool]], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_every_status_change_is_delivered_signed(settings: Settings) -> None:
    local = _settings(settings)
    receiver = Receiver().start()
    try:
        async with shop(local) as client:
            headers, secret, _ = await partner(local, client, receiver)
            order = (await client.post("/api/v1/orders", headers=headers, json={"alloy": "gold_750"})).json()
            assert (await client.put(f"/api/v1/orders/{order['id']}/model", headers=headers,
                                     files={"file": ("r.stl", RING)})).status_code == 200
            assert (await client.post(f"/api/v1/orders/{order['id']}/submit", headers=headers)).status_code == 202
            await wait_for(lambda: len(receiver.received) >= 3)
            got = sorted(receiver.received, key=lambda r: r.json["seq"])
            assert [r.json["status"] for r in got] == ["INITIATED", "FILE_UPLOADED", "SUBMITTED"]
            for item in got:
                assert verify(secret, item.headers["X-Alexandrite-Timestamp"], item.body,
                              item.headers["X-Alexandrite-Signature"])
                assert not verify("wrong-secret", item.headers["X-Alexandrite-Timestamp"], item.body,
                                  item.headers["X-Alexandrite-Signature"])
                assert item.json["order_id"] == order["id"] and "actor" not in item.json
                assert item.headers["X-Alexandrite-Delivery"] == item.json["delivery_id"]
            assert {r.headers["X-Alexandrite-Event"] for r in got} == {
                "shop.order.initiated", "shop.order.file_uploaded", "shop.order.submitted"}
            shown = (await client.get("/api/v1/webhook", headers=headers)).json()
            assert shown == {"url": receiver.url, "deliveries": {"pending": 0, "delivered": 3, "dead": 0}}
            # Customers have no webhook; bad URLs are refused.
            assert (await client.put("/api/v1/webhook", headers=headers, json={"url": "ftp://x/y"})).status_code == 422
            assert (await client.get("/api/v1/webhook")).status_code == 401
    finally:
        receiver.stop()


async def partner_ids(settings: Settings, names: list[str]) -> dict[str, str]:
    db = Database(settings.database_url("shop"), pool_size=1)
    try:
        async with db.sessions() as session:
            rows = (await session.execute(select(partners.c.name, partners.c.id).where(partners.c.name.in_(names))))
            return {name: str(partner_id) for name, partner_id in rows.all()}
    finally:
        await db.dispose()


async def test_a_dispatcher_claims_no_more_than_a_partners_free_slots(settings: Settings) -> None:
    local = _settings(settings, run_webhooks=False, webhook_per_endpoint_concurrency=2, webhook_concurrency=8)
    receiver = Receiver().start()
    try:
        async with shop(local) as client:
            names = []
            for _ in range(2):
                headers, _, name = await partner(local, client, receiver)
                names.append(name)
                for _ in range(3):  # three deliveries due for each partner
                    assert (await client.post("/api/v1/orders", headers=headers,
                                              json={"alloy": "silver_925"})).status_code == 201
            ids = {name: uuid.UUID(value) for name, value in (await partner_ids(local, names)).items()}
            db = Database(local.database_url("shop"), pool_size=1)
            redis = aioredis.Redis.from_url(local.redis.url)
            try:
                busy, idle = ids[names[0]], ids[names[1]]
                dispatcher = WebhookDispatcher(db, local, redis)
                dispatcher.in_flight = {busy: 1}  # one request to the first partner still open here
                # (deliveries of earlier tests' partners that fell due may be claimed too: only ours count)
                claimed = [row.partner_id for row in await dispatcher.claim() if row.partner_id in (busy, idle)]
                assert sorted(claimed) == sorted([busy, idle, idle])  # 1 + 1 and 0 + 2: nobody above 2
                dispatcher.in_flight = {busy: 2, idle: 2}
                # both at their cap: the third deliveries wait
                assert [row for row in await dispatcher.claim() if row.partner_id in (busy, idle)] == []
                await dispatcher.client.aclose()
            finally:
                await redis.aclose()
                await db.dispose()
                await drop_deliveries(local, names)
    finally:
        receiver.stop()


async def test_hanging_and_failing_partners_do_not_slow_a_healthy_one(settings: Settings) -> None:
    # The hanging partner's requests time out after 20 s: long enough that, however slow the machine,
    # they still hold its two slots (and no retry has started) when the healthy deliveries are checked.
    local = _settings(settings, webhook_breaker_failures=3, webhook_breaker_reset_seconds=60,
                      webhook_per_endpoint_concurrency=2, webhook_concurrency=8, webhook_timeout_seconds=20.0)
    healthy, hanging, failing = Receiver().start(), Receiver(mode="hang").start(), Receiver(mode="fail").start()
    try:
        async with shop(local) as client:
            good, _, good_name = await partner(local, client, healthy)
            slow, _, slow_name = await partner(local, client, hanging)
            bad, _, bad_name = await partner(local, client, failing)
            names = [good_name, slow_name, bad_name]
            for _ in range(6):  # the troubled partners' orders go first, so their deliveries are older
                for headers in (slow, bad, good):
                    assert (await client.post("/api/v1/orders", headers=headers,
                                              json={"alloy": "silver_925"})).status_code == 201
            await wait_for(lambda: len(healthy.received) == 6)
            # All six healthy deliveries arrived while the hanging partner still holds its first requests,
            # and it never got more than its share of concurrent requests.
            assert hanging.open_requests >= 1 and hanging.hits <= 2 and not hanging.received
            # The failing partner's breaker opened after 3 failures (+1 already in flight beside the third):
            # no more requests go to it.
            await wait_for(lambda: failing.hits >= 3)
            await asyncio.sleep(0.3)
            seen = failing.hits
            await asyncio.sleep(0.7)
            assert 3 <= failing.hits == seen <= 4
            state = REGISTRY.get_sample_value("alexandrite_webhook_endpoint_breaker_state", {"partner": bad_name})
            assert state == 2
            redis = aioredis.Redis.from_url(local.redis.url)
            keys = {k.decode() async for k in redis.scan_iter(match=f"{local.redis.prefix}:webhook:breaker:*")}
            await redis.aclose()
            # Shared state lives in Redis, for every replica: one breaker among these three partners, the
            # failing one's (partners other tests left in the shared database may have breakers of their own).
            ids = await partner_ids(local, names)
            assert {k for k in keys if k.rsplit(":", 1)[-1] in ids.values()} == {
                f"{local.redis.prefix}:webhook:breaker:{ids[bad_name]}"}
            pending = (await client.get("/api/v1/webhook", headers=bad)).json()["deliveries"]
            assert pending["pending"] == 6 and pending["dead"] == 0  # waiting, not lost
            hanging.hang_seconds = 0
        await drop_deliveries(local, names)
    finally:
        for receiver in (healthy, hanging, failing):
            receiver.stop()




async def test_dead_letter_after_max_attempts_then_replay_by_api_and_cli(settings: Settings,
                                                                        test_env: dict[str, str]) -> None:
    local = _settings(settings, webhook_max_attempts=3, webhook_breaker_failures=100)
    receiver = Receiver(mode="fail").start()
    try:
        async with shop(local) as client:
            headers, _, name = await partner(local, client, receiver)
            for _ in range(2):
                assert (await client.post("/api/v1/orders", headers=headers,
                                          json={"alloy": "gold_585"})).status_code == 201

            async def dead() -> bool:
                return (await client.get("/api/v1/webhook", headers=headers)).json()["deliveries"]["dead"] == 2

            await wait_for(dead)
            assert receiver.hits == 6  # 3 attempts each, then no more
            listed = (await client.get("/api/v1/webhook/deliveries?state=dead", headers=headers)).json()["items"]
            assert len(listed) == 2 and all(i["attempts"] == 3 and i["last_status"] == 500 for i in listed)
            bad = await client.post("/api/v1/webhook/deliveries/replay", headers=headers, json={})
            assert bad.status_code == 422

            receiver.mode = "ok"
            first = listed[0]["delivery_id"]
            replayed = await client.post("/api/v1/webhook/deliveries/replay", headers=headers,
                                         json={"delivery_ids": [first]})
            assert replayed.json() == {"replayed": 1}
            await wait_for(lambda: len(receiver.received) == 1)
            assert receiver.received[0].json["delivery_id"] == first  # the same delivery, same id

            env = {**test_env, "ALEX_REDIS_PREFIX": local.redis.prefix}
            cli = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "alexandrite", "webhooks", "replay", "--all", "--partner", name],
                env=env, capture_output=True, text=True, timeout=60)
            assert cli.returncode == 0, cli.stderr
            assert "replayed 1 delivery" in cli.stdout
            await wait_for(lambda: len(receiver.received) == 2)
            listing = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "alexandrite", "webhooks", "list", "--partner", name],
                env=env, capture_output=True, text=True, timeout=60)
            assert listing.returncode == 0 and listing.stdout.count("delivered") == 2
            nothing = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "alexandrite", "webhooks", "replay"], env=env, capture_output=True, text=True,
                timeout=60)
            assert nothing.returncode == 2 and "--id" in nothing.stderr
            unknown = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "alexandrite", "webhooks", "list", "--partner", "nobody-such"], env=env,
                capture_output=True, text=True, timeout=60)
            assert unknown.returncode == 1 and "no partner" in unknown.stderr
    finally:
        receiver.stop()


def test_partner_create_with_a_webhook_url_prints_the_secret(test_env: dict[str, str]) -> None:
    name = f"cli-{uuid.uuid4().hex[:6]}"
    created = subprocess.run([sys.executable, "-m", "alexandrite", "partner", "create", name, "--webhook-url",
                              "https://partner.example/hooks"], env=test_env, capture_output=True, text=True,
                             timeout=60)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1].startswith("whsec_")
    bad = subprocess.run([sys.executable, "-m", "alexandrite", "partner", "create", f"{name}-2", "--webhook-url",
                          "ftp://nope"], env=test_env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "http(s)" in bad.stderr


async def test_a_delay_notice_reaches_the_partner_webhook(settings: Settings) -> None:
    from datetime import UTC, datetime, timedelta

    from alexandrite.contracts.events import OrderDelayed
    from alexandrite.contracts.order_status import OrderStatus
    from alexandrite.shop.delays import apply_delay

    local = _settings(settings)
    receiver = Receiver().start()
    try:
        async with shop(local) as client:
            headers, secret, _ = await partner(local, client, receiver)
            order = (await client.post("/api/v1/orders", headers=headers, json={"alloy": "gold_750"})).json()
            now = datetime.now(UTC)
            delay = OrderDelayed(stage="PRICE_CALCULATING", status=OrderStatus.PRICE_CALCULATING,
                                 since=now - timedelta(hours=1), sla_seconds=1800, detected_at=now,
                                 new_eta=now + timedelta(days=3), owner_kind="partner")
            db = Database(local.database_url("shop"), pool_size=1)
            try:
                assert await apply_delay(db, uuid.UUID(order["id"]), delay) == "ok"
                assert await apply_delay(db, uuid.UUID(order["id"]), delay) == "duplicate"  # told once
            finally:
                await db.dispose()
            await wait_for(lambda: len(receiver.received) == 2)
            notice = next(r for r in receiver.received if r.headers["X-Alexandrite-Event"] == "mes.order.delayed")
            assert notice.json["type"] == "order.delayed" and notice.json["stage"] == "PRICE_CALCULATING"
            assert verify(secret, notice.headers["X-Alexandrite-Timestamp"], notice.body,
                          notice.headers["X-Alexandrite-Signature"])
            await asyncio.sleep(0.5)
            assert len(receiver.received) == 2
    finally:
        receiver.stop()


async def test_a_consumed_status_change_queues_a_delivery_only_for_a_partner_with_a_webhook(
        settings: Settings) -> None:
    """The other services' status changes (applied by the consumer) queue one delivery each for a partner
    whose webhook is set, with the event's type and payload; a partner without a webhook gets none."""
    local = _settings(settings, run_webhooks=False)
    async with shop(local) as client:
        hooked, _, hooked_name = await partner(local, client, None)
        plain, _, plain_name = await partner(local, client, None)
        db = Database(local.database_url("shop"), pool_size=1)
        try:
            async with UnitOfWork(db) as uow:
                await uow.session.execute(partners.update().where(partners.c.name == hooked_name)
                                          .values(webhook_url="https://hooks.example.test/alexandrite"))
                await uow.commit()
            ids = {}
            for name, headers in ((hooked_name, hooked), (plain_name, plain)):
                order = (await client.post("/api/v1/orders", headers=headers, json={"alloy": "gold_750"})).json()
                assert (await client.put(f"/api/v1/orders/{order['id']}/model", headers=headers,
                                         files={"file": ("r.stl", RING)})).status_code == 200
                assert (await client.post(f"/api/v1/orders/{order['id']}/submit", headers=headers)).status_code == 202
                envelope = status_envelope(producer="mes", order_id=uuid.UUID(order["id"]), seq=4, change=StatusChanged(
                    status=OrderStatus.PRICE_CALCULATING, previous_status=OrderStatus.SUBMITTED, actor="mes:pricing"))
                assert await handle_event(db, Delivery(
                    body=envelope.model_dump_json().encode(), headers={}, routing_key=envelope.type,
                    message_id=str(envelope.event_id), attempt=0, redelivered=False)) == "ok"
                ids[name] = uuid.UUID(order["id"])
            async with db.sessions() as session:
                rows = (await session.execute(select(webhook_deliveries).where(
                    webhook_deliveries.c.order_id.in_(list(ids.values())),
                    webhook_deliveries.c.event_type == "mes.order.price_calculating"))).all()
        finally:
            await db.dispose()
        await drop_deliveries(local, [hooked_name, plain_name])
    assert [r.order_id for r in rows] == [ids[hooked_name]]
    row = rows[0]
    assert row.state == "pending" and row.delivery_id is not None
    assert row.payload["type"] == "order.status_changed" and row.payload["status"] == "PRICE_CALCULATING"
    assert row.payload["order_id"] == str(ids[hooked_name]) and row.payload["seq"] == 4
    assert "actor" not in row.payload

"""The shop's order hot paths: round trips per request counted on the wire, and every guarantee kept.

The app runs in-process against real PostgreSQL through a counting proxy of the wire protocol
(``bench/pgwire.py``): every Sync / simple Query a client sends is one round trip, whatever library
sent it. Background loops are off so that only the request's own statements pass; the pool has one
connection, warmed by a first request of each kind, so prepared statements are in place as in steady
state. Create is one round trip, upload and submit one each after this process's own previous write (two
otherwise, and a hint gone stale costs a failed write and a read), GET one; and the order still gets its history,
its outbox events, its webhook deliveries, idempotent replays, owner isolation and one winner among
concurrent submits.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from alexandrite.contracts.events import Envelope
from alexandrite.kit.db import Database, plain_dsn
from alexandrite.kit.settings import Settings
from alexandrite.models3d.rings import ring
from alexandrite.models3d.writers import to_binary_stl
from alexandrite.shop.app import create_app
from alexandrite.shop.handlers import create_partner
from alexandrite.shop.partner_keys import PartnerKeys
from alexandrite.shop.recent_rows import recent_rows
from alexandrite.shop.schemas import OrderOut
from alexandrite.shop.webhooks import register
from bench.pgwire import CountingProxy, Counts

RING = to_binary_stl(ring(segments=48, profile_segments=6))
BODY = {"alloy": "gold_585"}


class Shop:
    def __init__(self, client: httpx.AsyncClient, proxy: CountingProxy, app: Any) -> None:
        self.client = client
        self.proxy = proxy
        self.app = app

    async def counted(self, call: Callable[[], Awaitable[httpx.Response]]) -> tuple[httpx.Response, Counts]:
        before = self.proxy.snapshot()
        response = await call()
        return response, self.proxy.snapshot() - before


@pytest.fixture(scope="module")
async def shop(settings: Settings) -> AsyncIterator[Shop]:
    host, _, port = settings.db.dsn.rsplit("@", 1)[1].partition(":")
    proxy = await CountingProxy((host, int(port or 5432))).start()
    counted = settings.replace(**{
        "pg_dsn": f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}", "db_pool_size": 1,
        "run_relay": False, "run_consumer": False, "run_notifier": False, "run_webhooks": False,
        "rate_limit_enabled": False, "backpressure_mode": "off", "max_upload_bytes": 4_000_000,
        "max_triangles": 50_000})
    app = create_app(counted)
    try:
        async with LifespanManager(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://shop") as client:
                yield Shop(client, proxy, app)
    finally:
        await proxy.close()


@pytest.fixture(scope="module")
async def sql(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(plain_dsn(settings.database_url("shop")))
    yield connection
    await connection.close()


@pytest.fixture(scope="module", autouse=True)
async def no_deliveries_left_behind(settings: Settings) -> AsyncIterator[None]:
    """The deliveries these tests queue go to a closed port: gone at the end, so that the webhook
    dispatchers of later tests (same database) do not spend their slots and breakers on them."""
    yield
    connection = await asyncpg.connect(plain_dsn(settings.database_url("shop")))
    try:
        await connection.execute("DELETE FROM webhook_deliveries WHERE partner_id IN "
                                 "(SELECT id FROM partners WHERE name LIKE 'hot-%')")
    finally:
        await connection.close()


async def new_partner(settings: Settings, *, webhook: bool) -> tuple[str, uuid.UUID, Database]:
    db = Database(settings.database_url("shop"), pool_size=1)
    name = f"hot-{uuid.uuid4().hex[:8]}"
    key = await create_partner(db, name)
    async with db.sessions() as session:
        from sqlalchemy import select

        from alexandrite.shop.tables import partners
        partner_id = (await session.execute(select(partners.c.id).where(partners.c.name == name))).scalar_one()
    if webhook:
        await register(db, partner_id, "http://127.0.0.1:9/hooks")
    return key, partner_id, db


async def customer(shop: Shop) -> dict[str, str]:
    email = f"hot-{uuid.uuid4().hex[:10]}@example.test"
    await shop.client.post("/api/v1/auth/signup", json={"email": email, "password": "s3cret-pass", "name": "Hot"})
    token = (await shop.client.post("/api/v1/auth/token", json={"email": email, "password": "s3cret-pass"})).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


async def order_through(shop: Shop, auth: dict[str, str]) -> dict[str, tuple[httpx.Response, Counts]]:
    """create → upload → submit → GET of one new order, each request counted."""
    client = shop.client
    create = await shop.counted(lambda: client.post("/api/v1/orders", json=BODY,
                                                    headers={**auth, "Idempotency-Key": uuid.uuid4().hex}))
    order_id = create[0].json()["id"]
    upload = await shop.counted(lambda: client.put(f"/api/v1/orders/{order_id}/model", headers=auth,
                                                   files={"file": ("ring.stl", RING, "model/stl")}))
    submit = await shop.counted(lambda: client.post(f"/api/v1/orders/{order_id}/submit", headers=auth))
    get = await shop.counted(lambda: client.get(f"/api/v1/orders/{order_id}", headers=auth))
    return {"create": create, "upload": upload, "submit": submit, "get": get}


async def test_round_trips_per_request_on_the_wire(shop: Shop, settings: Settings) -> None:
    key, _, db = await new_partner(settings, webhook=True)
    await db.dispose()
    auth = {"X-API-Key": key}
    await order_through(shop, auth)  # warm: the pool's connection, prepared statements, the key cache
    for who in (auth, await customer(shop)):
        measured = await order_through(shop, who)
        assert [r.status_code for r, _ in measured.values()] == [201, 200, 202, 200]
        trips = {name: counts.round_trips for name, (_, counts) in measured.items()}
        assert trips["create"] == 1, measured["create"][1]
        assert trips["upload"] == 1 and trips["submit"] == 1, trips  # the row just written, as a hint
        assert trips["get"] == 1, measured["get"][1]
        for name, (_, counts) in measured.items():
            assert counts.transactions == 0, (name, counts.units)  # no BEGIN: each write is one statement
            assert counts.parses == 0, (name, counts.statements)  # prepared once, reused


async def test_upload_and_submit_read_the_order_when_this_process_did_not_just_write_it(
        shop: Shop, settings: Settings, sql: asyncpg.Connection) -> None:
    key, _, db = await new_partner(settings, webhook=False)
    await db.dispose()
    auth, client, rows = {"X-API-Key": key}, shop.client, recent_rows(shop.app.state.db)
    order_id = (await client.post("/api/v1/orders", json=BODY, headers=auth)).json()["id"]
    assert rows.take(uuid.UUID(order_id), None) is not None  # as if another process had created it
    upload, upload_counts = await shop.counted(lambda: client.put(
        f"/api/v1/orders/{order_id}/model", headers=auth, files={"file": ("ring.stl", RING, "model/stl")}))
    assert rows.take(uuid.UUID(order_id), None) is not None
    submit, submit_counts = await shop.counted(lambda: client.post(f"/api/v1/orders/{order_id}/submit",
                                                                   headers=auth))
    assert (upload.status_code, submit.status_code) == (200, 202)
    assert (upload_counts.round_trips, submit_counts.round_trips) == (2, 2)
    assert submit.json() == (await client.get(f"/api/v1/orders/{order_id}", headers=auth)).json()


async def _cancel_elsewhere(sql: asyncpg.Connection, order_id: uuid.UUID) -> None:
    """The order cancelled by another process: its row moves on (seq + 1) behind this one's hint."""
    await sql.execute("""
        WITH o AS (UPDATE orders SET status = 'CANCELLED', seq = seq + 1, status_since = now(), updated_at = now()
                    WHERE id = $1 RETURNING id, seq)
        INSERT INTO order_history (order_id, seq, status, previous_status, at, by)
        SELECT id, seq, 'CANCELLED', NULL, now(), 'customer:elsewhere' FROM o""", order_id)


async def test_a_stale_hint_writes_nothing_and_the_decision_is_made_on_a_fresh_read(
        shop: Shop, settings: Settings, sql: asyncpg.Connection) -> None:
    key, _, db = await new_partner(settings, webhook=False)
    await db.dispose()
    auth, client = {"X-API-Key": key}, shop.client
    # Created here (its row remembered), then cancelled elsewhere: the upload is refused, nothing attached.
    created = (await client.post("/api/v1/orders", json=BODY, headers=auth)).json()["id"]
    await _cancel_elsewhere(sql, uuid.UUID(created))
    refused, counts = await shop.counted(lambda: client.put(
        f"/api/v1/orders/{created}/model", headers=auth, files={"file": ("ring.stl", RING, "model/stl")}))
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "illegal_transition", refused.text
    assert counts.round_trips == 2  # the write that matched no row, then the fresh read that decides
    assert await sql.fetchval("SELECT model FROM orders WHERE id = $1", uuid.UUID(created)) is None
    # Uploaded here, then cancelled elsewhere: the submit is refused, no SUBMITTED event or history line.
    uploaded = (await client.post("/api/v1/orders", json=BODY, headers=auth)).json()["id"]
    assert (await client.put(f"/api/v1/orders/{uploaded}/model", headers=auth,
                             files={"file": ("ring.stl", RING, "model/stl")})).status_code == 200
    await _cancel_elsewhere(sql, uuid.UUID(uploaded))
    refused = await client.post(f"/api/v1/orders/{uploaded}/submit", headers=auth)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "illegal_transition", refused.text
    assert await sql.fetchval("SELECT count(*) FROM outbox WHERE order_id = $1 AND routing_key = $2",
                              uuid.UUID(uploaded), "shop.order.submitted") == 0
    assert [r["status"] for r in await sql.fetch(
        "SELECT status FROM order_history WHERE order_id = $1 ORDER BY seq", uuid.UUID(uploaded))] == [
        "INITIATED", "FILE_UPLOADED", "CANCELLED"]


async def test_each_write_keeps_history_outbox_deliveries_and_its_answer(
        shop: Shop, settings: Settings, sql: asyncpg.Connection) -> None:
    key, partner_id, db = await new_partner(settings, webhook=True)
    await db.dispose()
    measured = await order_through(shop, {"X-API-Key": key})
    order_id = uuid.UUID(measured["create"][0].json()["id"])

    history = await sql.fetch("SELECT seq, status, previous_status, by FROM order_history "
                              "WHERE order_id = $1 ORDER BY seq", order_id)
    assert [(h["seq"], h["status"], h["previous_status"]) for h in history] == [
        (1, "INITIATED", None), (2, "FILE_UPLOADED", "INITIATED"), (3, "SUBMITTED", "FILE_UPLOADED")]
    assert {h["by"] for h in history} == {f"partner:{(await partner_name(sql, partner_id))}"}
    row = await sql.fetchrow("SELECT status, seq FROM orders WHERE id = $1", order_id)
    assert (row["status"], row["seq"]) == ("SUBMITTED", 3)

    bodies = await sql.fetch("SELECT body, routing_key, headers FROM outbox WHERE order_id = $1 ORDER BY id", order_id)
    events = [Envelope.model_validate_json(b["body"]) for b in bodies]
    assert [(e.type, e.seq) for e in events] == [
        ("shop.order.initiated", 1), ("shop.order.file_uploaded", 2), ("shop.order.submitted", 3)]
    assert [b["routing_key"] for b in bodies] == [e.type for e in events]
    assert events[0].payload["owner"]["id"] == str(partner_id)
    assert events[2].payload["model"]["key"].startswith("models/")

    deliveries = await sql.fetch("SELECT partner_id, event_type, payload, state FROM webhook_deliveries "
                                 "WHERE order_id = $1 ORDER BY id", order_id)
    assert [(d["partner_id"], d["event_type"], d["state"]) for d in deliveries] == [
        (partner_id, e.type, "pending") for e in events]
    import json
    payloads = [json.loads(d["payload"]) for d in deliveries]
    assert [(p["type"], p["seq"], p["status"]) for p in payloads] == [
        ("order.status_changed", 1, "INITIATED"), ("order.status_changed", 2, "FILE_UPLOADED"),
        ("order.status_changed", 3, "SUBMITTED")]
    assert all("actor" not in p and "owner" not in p for p in payloads)

    # The answers were built from what was written: each equals the order read back afterwards,
    # and reading it back gives exactly what OrderOut would.
    final = measured["get"][0].json()
    assert measured["submit"][0].json() == final
    assert OrderOut.model_validate(final).model_dump(mode="json") == final
    assert [h["status"] for h in final["history"]] == ["INITIATED", "FILE_UPLOADED", "SUBMITTED"]
    assert measured["upload"][0].json()["model"]["sha256"] == final["model"]["sha256"]
    assert measured["create"][0].json()["history"] == final["history"][:1]


async def partner_name(sql: asyncpg.Connection, partner_id: uuid.UUID) -> str:
    return str(await sql.fetchval("SELECT name FROM partners WHERE id = $1", partner_id))


async def test_customer_orders_queue_no_webhook_delivery(shop: Shop, sql: asyncpg.Connection) -> None:
    measured = await order_through(shop, await customer(shop))
    order_id = uuid.UUID(measured["create"][0].json()["id"])
    assert await sql.fetchval("SELECT count(*) FROM webhook_deliveries WHERE order_id = $1", order_id) == 0
    assert await sql.fetchval("SELECT count(*) FROM outbox WHERE order_id = $1", order_id) == 3


async def test_idempotent_replay(shop: Shop, settings: Settings, sql: asyncpg.Connection) -> None:
    key, _, db = await new_partner(settings, webhook=False)
    await db.dispose()
    headers = {"X-API-Key": key, "Idempotency-Key": f"replay-{uuid.uuid4().hex}"}
    first = await shop.client.post("/api/v1/orders", json=BODY, headers=headers)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again, counts = await shop.counted(lambda: shop.client.post("/api/v1/orders", json=BODY, headers=headers))
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert counts.round_trips <= 2 and counts.transactions == 0
    reused = await shop.client.post("/api/v1/orders", json={"alloy": "silver_925"}, headers=headers)
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"

    racing = {"X-API-Key": key, "Idempotency-Key": f"race-{uuid.uuid4().hex}"}
    answers = await asyncio.gather(*(shop.client.post("/api/v1/orders", json=BODY, headers=racing)
                                     for _ in range(8)))
    assert {a.status_code for a in answers} == {201}
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1
    assert sum(1 for a in answers if "idempotent-replayed" not in a.headers) == 1
    order_id = uuid.UUID(ids.pop())
    assert await sql.fetchval("SELECT count(*) FROM outbox WHERE order_id = $1", order_id) == 1
    assert await sql.fetchval("SELECT count(*) FROM order_history WHERE order_id = $1", order_id) == 1


async def test_owners_see_and_change_only_their_own_orders(shop: Shop, settings: Settings,
                                                           sql: asyncpg.Connection) -> None:
    key, _, db = await new_partner(settings, webhook=False)
    other_key, _, other_db = await new_partner(settings, webhook=False)
    await db.dispose()
    await other_db.dispose()
    order = (await shop.client.post("/api/v1/orders", json=BODY, headers={"X-API-Key": key})).json()
    for intruder in ({"X-API-Key": other_key}, await customer(shop)):
        for method, path in (("GET", ""), ("POST", "/submit")):
            response = await shop.client.request(method, f"/api/v1/orders/{order['id']}{path}", headers=intruder)
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        upload = await shop.client.put(f"/api/v1/orders/{order['id']}/model", headers=intruder,
                                       files={"file": ("ring.stl", RING, "model/stl")})
        assert upload.status_code == 404
    order_id = uuid.UUID(order["id"])
    assert await sql.fetchval("SELECT seq FROM orders WHERE id = $1", order_id) == 1
    assert await sql.fetchval("SELECT count(*) FROM outbox WHERE order_id = $1", order_id) == 1
    bad = await shop.client.get(f"/api/v1/orders/{order['id']}", headers={"X-API-Key": "alx_not-a-key"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"


async def test_concurrent_submits_make_one_transition(shop: Shop, settings: Settings,
                                                      sql: asyncpg.Connection) -> None:
    key, partner_id, db = await new_partner(settings, webhook=True)
    await db.dispose()
    auth = {"X-API-Key": key}
    order = (await shop.client.post("/api/v1/orders", json=BODY, headers=auth)).json()
    uploaded = await shop.client.put(f"/api/v1/orders/{order['id']}/model", headers=auth,
                                     files={"file": ("ring.stl", RING, "model/stl")})
    assert uploaded.status_code == 200
    # Each submit reads the order and then writes WHERE seq = what it read: one of them wins, the others
    # find the order already submitted and answer with it.
    answers = await asyncio.gather(*(shop.client.post(f"/api/v1/orders/{order['id']}/submit", headers=auth)
                                     for _ in range(6)))
    assert {a.status_code for a in answers} == {202}
    assert {a.json()["status"] for a in answers} == {"SUBMITTED"}
    order_id = uuid.UUID(order["id"])
    assert [r["status"] for r in await sql.fetch(
        "SELECT status FROM order_history WHERE order_id = $1 ORDER BY seq", order_id)] == [
        "INITIATED", "FILE_UPLOADED", "SUBMITTED"]
    assert await sql.fetchval("SELECT count(*) FROM outbox WHERE order_id = $1 AND routing_key = $2", order_id,
                              "shop.order.submitted") == 1
    assert await sql.fetchval("SELECT count(*) FROM webhook_deliveries WHERE order_id = $1 AND event_type = $2",
                              order_id, "shop.order.submitted") == 1

    # Two uploads of different files at once: both succeed in turn (the model is replaced), seq stays gapless.
    second = (await shop.client.post("/api/v1/orders", json=BODY, headers=auth)).json()
    other = to_binary_stl(ring(segments=40, profile_segments=6))
    uploads = await asyncio.gather(*(shop.client.put(f"/api/v1/orders/{second['id']}/model", headers=auth,
                                                     files={"file": ("ring.stl", data, "model/stl")})
                                     for data in (RING, other)))
    assert {u.status_code for u in uploads} == {200}
    seqs = [r["seq"] for r in await sql.fetch("SELECT seq FROM order_history WHERE order_id = $1 ORDER BY seq",
                                              uuid.UUID(second["id"]))]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == 3


async def test_a_revoked_key_stops_once_the_cache_forgets_it(shop: Shop, settings: Settings,
                                                            sql: asyncpg.Connection) -> None:
    key, partner_id, db = await new_partner(settings, webhook=False)
    try:
        assert (await shop.client.get("/api/v1/orders", headers={"X-API-Key": key})).status_code == 200
        await sql.execute("UPDATE partners SET active = false WHERE id = $1", partner_id)
        uncached = PartnerKeys(db, ttl_seconds=0)
        assert await uncached.principal(key) is None  # without the cache: refused at once
        shop.app.state.partner_keys.forget(partner_id)  # the window ends (ALEX_PARTNER_KEY_CACHE_SECONDS)
        refused = await shop.client.get("/api/v1/orders", headers={"X-API-Key": key})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    finally:
        await db.dispose()


# --- the ASGI fast path answers exactly as FastAPI's routes do ----------------------------------------

@pytest.fixture(scope="module")
async def plain(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The same shop with every request through FastAPI (ALEX_API_FAST_PATHS=false)."""
    app = create_app(settings.replace(**{
        "run_relay": False, "run_consumer": False, "run_notifier": False, "run_webhooks": False,
        "rate_limit_enabled": False, "backpressure_mode": "off", "api_fast_paths": False}))
    async with LifespanManager(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://shop") as client:
            yield client


VOLATILE = ("id", "created_at", "updated_at", "at", "sha256", "key")


def comparable(data: Any) -> Any:
    """An answer without what differs between two orders (ids, times, file keys)."""
    if isinstance(data, dict):
        return {k: ("*" if k in VOLATILE and v is not None else comparable(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [comparable(v) for v in data]
    return data


def same_answer(fast: httpx.Response, slow: httpx.Response, what: str) -> None:
    assert fast.status_code == slow.status_code, (what, fast.text, slow.text)
    assert comparable(fast.json()) == comparable(slow.json()), what
    for header in ("content-type", "idempotent-replayed", "www-authenticate", "retry-after", "x-content-type-options"):
        assert fast.headers.get(header) == slow.headers.get(header), (what, header)


async def test_the_fast_path_answers_as_fastapi_does(shop: Shop, plain: httpx.AsyncClient, settings: Settings,
                                                    sql: asyncpg.Connection) -> None:
    key, _, db = await new_partner(settings, webhook=False)
    other_key, _, other_db = await new_partner(settings, webhook=False)
    await db.dispose()
    await other_db.dispose()
    partner, other = {"X-API-Key": key}, {"X-API-Key": other_key}
    fast = shop.client
    shared_key = f"same-{uuid.uuid4().hex}"

    async def both(what: str, method: str, path: Callable[[str], str] | str, **kwargs: Any
                   ) -> tuple[httpx.Response, httpx.Response]:
        """The request to each shop; ``path`` may need an order of that shop (created first)."""
        answers = []
        for client in (fast, plain):
            target = path
            if callable(path):
                made = await client.post("/api/v1/orders", json=BODY, headers=partner)
                target = path(made.json()["id"])
            answers.append(await client.request(method, target, **kwargs))
        same_answer(answers[0], answers[1], what)
        return answers[0], answers[1]

    created = await both("create", "POST", "/api/v1/orders", json=BODY, headers=partner)
    assert created[0].status_code == 201 and created[0].json()["history"][0]["by"].startswith("partner:")
    await both("create, empty Idempotency-Key", "POST", "/api/v1/orders", json=BODY,
               headers={**partner, "Idempotency-Key": ""})
    for what, kwargs in (
        ("unknown alloy", {"json": {"alloy": "bronze"}, "headers": partner}),
        ("extra field", {"json": {"alloy": "gold_585", "engraving": "x"}, "headers": partner}),
        ("not JSON", {"content": b"{alloy", "headers": {**partner, "Content-Type": "application/json"}}),
        ("JSON sent as text", {"content": b'{"alloy": "gold_585"}', "headers": {**partner, "Content-Type": "text/plain"}}),
        ("no credentials", {"json": BODY}),
        ("wrong key", {"json": BODY, "headers": {"X-API-Key": "alx_wrong"}}),
        ("expired token", {"json": BODY, "headers": {"Authorization": "Bearer abc.def"}}),
        ("service token", {"json": BODY, "headers": {"Authorization": f"Service {settings.auth.service_token}"}}),
        ("Idempotency-Key too long", {"json": BODY, "headers": {**partner, "Idempotency-Key": "k" * 201}}),
    ):
        fast_answer, _ = await both(what, "POST", "/api/v1/orders", **kwargs)
        assert fast_answer.status_code >= 400, what

    # The same Idempotency-Key on both shops (they share the database): each replays the first order.
    keyed = {**partner, "Idempotency-Key": shared_key}
    first = await fast.post("/api/v1/orders", json=BODY, headers=keyed)
    replays = [await client.post("/api/v1/orders", json=BODY, headers=keyed) for client in (fast, plain)]
    same_answer(replays[0], replays[1], "replay")
    assert replays[0].headers["idempotent-replayed"] == "true" and replays[0].json() == first.json()
    await both("key reused with another body", "POST", "/api/v1/orders", json={"alloy": "gold_750"}, headers=keyed)

    await both("get", "GET", lambda i: f"/api/v1/orders/{i}", headers=partner)
    await both("get, id in capitals", "GET", lambda i: f"/api/v1/orders/{i.upper()}", headers=partner)
    await both("someone else's order", "GET", lambda i: f"/api/v1/orders/{i}", headers=other)
    await both("unknown order", "GET", f"/api/v1/orders/{uuid.uuid4()}", headers=partner)
    await both("submit without a model", "POST", lambda i: f"/api/v1/orders/{i}/submit", headers=partner)
    await both("submit with a body", "POST", lambda i: f"/api/v1/orders/{i}/submit", headers=partner,
               json={"confirm": ["scale"]})
    await both("submit of someone else's", "POST", lambda i: f"/api/v1/orders/{i}/submit", headers=other)

    for client in (fast, plain):  # a full submit, then again (a no-op), on each path
        order = (await client.post("/api/v1/orders", json=BODY, headers=partner)).json()
        await client.put(f"/api/v1/orders/{order['id']}/model", headers=partner,
                         files={"file": ("ring.stl", RING, "model/stl")})
    fast_orders = (await fast.get("/api/v1/orders?status=FILE_UPLOADED", headers=partner)).json()["items"]
    submitted = [await c.post(f"/api/v1/orders/{fast_orders[i]['id']}/submit", headers=partner)
                 for i, c in ((0, fast), (1, plain))]
    same_answer(submitted[0], submitted[1], "submit")
    assert submitted[0].status_code == 202 and submitted[0].json()["status"] == "SUBMITTED"
    again = [await c.post(f"/api/v1/orders/{fast_orders[i]['id']}/submit", headers=partner)
             for i, c in ((0, fast), (1, plain))]
    same_answer(again[0], again[1], "submit again")

    metrics = (await fast.get("/metrics", headers={"Authorization": f"Bearer {settings.obs.metrics_token}"})).text
    for route in ("/api/v1/orders", "/api/v1/orders/{order_id}", "/api/v1/orders/{order_id}/submit"):
        assert f'route="{route}"' in metrics, route

"""Shop API v1 against real PostgreSQL and RabbitMQ, app driven in-process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from alexandrite.contracts.events import Envelope
from alexandrite.kit.db import Database
from alexandrite.kit.messaging.tables import OUTBOX
from alexandrite.kit.settings import Settings
from alexandrite.models3d.rings import ring
from alexandrite.models3d.shapes import box
from alexandrite.models3d.writers import to_ascii_stl, to_binary_stl, to_obj
from alexandrite.shop.app import create_app
from alexandrite.shop.handlers import create_partner

RING = to_binary_stl(ring(segments=64, profile_segments=8))


@pytest.fixture(scope="module")
async def shop(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    # No relay here: the tests read what this service put in its outbox.
    app = create_app(settings.replace(**{"run_relay": False, "run_consumer": False,
                                                 "max_upload_bytes": 4_000_000, "max_triangles": 50_000}))
    async with LifespanManager(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://shop") as client:
            yield client


async def customer(shop: httpx.AsyncClient) -> dict[str, str]:
    email = f"c-{uuid.uuid4().hex[:10]}@example.test"
    response = await shop.post("/api/v1/auth/signup", json={"email": email, "password": "s3cret-pass",
                                                            "name": "Jane Test"})
    assert response.status_code == 201, response.text
    token = (await shop.post("/api/v1/auth/token", json={"email": email, "password": "s3cret-pass"})).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


async def outbox_events(settings: Settings, order_id: str) -> list[Envelope]:
    db = Database(settings.database_url("shop"), pool_size=1)
    try:
        async with db.sessions() as session:
            rows = (await session.execute(select(OUTBOX.c.body).where(
                OUTBOX.c.order_id == uuid.UUID(order_id)).order_by(OUTBOX.c.id))).scalars().all()
    finally:
        await db.dispose()
    return [Envelope.model_validate_json(body) for body in rows]


async def test_order_flow_up_to_submit_emits_sequenced_events(shop: httpx.AsyncClient, settings: Settings) -> None:
    auth = await customer(shop)
    created = await shop.post("/api/v1/orders", json={"alloy": "gold_750"}, headers=auth)
    assert created.status_code == 201
    order = created.json()
    assert order["status"] == "INITIATED" and order["alloy"] == "gold_750"
    assert order["progress"] is None and order["quote"] is None and order["failure"] is None

    uploaded = await shop.put(f"/api/v1/orders/{order['id']}/model", headers=auth,
                              files={"file": ("ring.stl", RING, "model/stl")})
    assert uploaded.status_code == 200, uploaded.text
    body = uploaded.json()
    assert body["status"] == "FILE_UPLOADED"
    assert body["model"]["format"] == "stl_binary"
    assert body["model"]["triangles"] == (len(RING) - 84) // 50
    assert body["model"]["bytes"] == len(RING) and len(body["model"]["sha256"]) == 64

    submitted = await shop.post(f"/api/v1/orders/{order['id']}/submit", headers=auth)
    assert submitted.status_code == 202
    assert submitted.json()["status"] == "SUBMITTED"
    assert [h["status"] for h in submitted.json()["history"]] == ["INITIATED", "FILE_UPLOADED", "SUBMITTED"]
    assert all(h["by"].startswith("customer:") for h in submitted.json()["history"])

    again = await shop.post(f"/api/v1/orders/{order['id']}/submit", headers=auth)
    assert again.status_code == 202 and len(again.json()["history"]) == 3  # idempotent

    events = await outbox_events(settings, order["id"])
    assert [(e.type, e.seq) for e in events] == [
        ("shop.order.initiated", 1), ("shop.order.file_uploaded", 2), ("shop.order.submitted", 3)]
    assert events[2].payload["model"]["key"].startswith("models/")
    assert events[2].payload["alloy"] == "gold_750"
    assert "email" not in str(events[0].payload)


async def test_idempotency_key_never_creates_two_orders(shop: httpx.AsyncClient) -> None:
    auth = await customer(shop)
    headers = {**auth, "Idempotency-Key": uuid.uuid4().hex}
    responses = await asyncio.gather(*(shop.post("/api/v1/orders", json={"alloy": "silver_925"},
                                                 headers=headers) for _ in range(8)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    listed = (await shop.get("/api/v1/orders", headers=auth)).json()
    assert len(listed["items"]) == 1
    reused = await shop.post("/api/v1/orders", json={"alloy": "gold_585"}, headers=headers)
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"


async def test_customers_only_see_their_own_orders(shop: httpx.AsyncClient) -> None:
    alice, bob = await customer(shop), await customer(shop)
    order = (await shop.post("/api/v1/orders", json={"alloy": "gold_585"}, headers=alice)).json()
    for method, path in (("GET", ""), ("POST", "/submit"), ("POST", "/cancel")):
        response = await shop.request(method, f"/api/v1/orders/{order['id']}{path}", headers=bob)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"
    upload = await shop.put(f"/api/v1/orders/{order['id']}/model", headers=bob,
                            files={"file": ("ring.stl", RING, "model/stl")})
    assert upload.status_code == 404
    assert (await shop.get("/api/v1/orders", headers=bob)).json()["items"] == []
    assert (await shop.get(f"/api/v1/orders/{order['id']}", headers=alice)).status_code == 200


async def test_partner_api_key(shop: httpx.AsyncClient, settings: Settings) -> None:
    db = Database(settings.database_url("shop"), pool_size=1)
    try:
        key = await create_partner(db, f"partner-{uuid.uuid4().hex[:6]}")
        other = await create_partner(db, f"partner-{uuid.uuid4().hex[:6]}")
    finally:
        await db.dispose()
    created = await shop.post("/api/v1/orders", json={"alloy": "platinum_950"}, headers={"X-API-Key": key})
    assert created.status_code == 201
    order_id = created.json()["id"]
    assert created.json()["history"][0]["by"].startswith("partner:partner-")
    assert (await shop.get(f"/api/v1/orders/{order_id}", headers={"X-API-Key": other})).status_code == 404
    bad = await shop.get("/api/v1/orders", headers={"X-API-Key": "alx_wrong"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"


async def test_listing_is_newest_first_with_keyset_pages(shop: httpx.AsyncClient) -> None:
    auth = await customer(shop)
    ids = [(await shop.post("/api/v1/orders", json={"alloy": "gold_585"}, headers=auth)).json()["id"]
           for _ in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await shop.get("/api/v1/orders", params=params, headers=auth)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    filtered = (await shop.get("/api/v1/orders", params={"status": "SUBMITTED"}, headers=auth)).json()
    assert filtered["items"] == []
    bad = await shop.get("/api/v1/orders", params={"cursor": "not-a-cursor"}, headers=auth)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_cursor"
    assert (await shop.get("/api/v1/orders", params={"status": "NOPE"}, headers=auth)).status_code == 422


@pytest.mark.parametrize(
    ("filename", "content", "status", "code"),
    [
        ("empty.stl", b"", 422, "empty_file"),
        ("ring.obj", RING, 422, "format_mismatch"),
        ("garbage.stl", b"\x00\x01hello this is not a model" * 10, 422, "malformed_model"),
        ("flat.obj", b"v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", 422, "degenerate_mesh"),
        ("nofaces.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", 422, "no_triangles"),
        ("big.stl", to_binary_stl(ring(segments=2048, profile_segments=32)), 413, "file_too_large"),
        ("many.stl", to_binary_stl(ring(segments=512, profile_segments=64)), 422, "too_many_triangles"),
        ("model.docx", b"PK\x03\x04not really", 422, None),
    ],
)
async def test_bad_uploads_get_precise_errors_and_change_nothing(
    shop: httpx.AsyncClient, settings: Settings, filename: str, content: bytes, status: int, code: str | None
) -> None:
    auth = await customer(shop)
    order = (await shop.post("/api/v1/orders", json={"alloy": "gold_585"}, headers=auth)).json()
    response = await shop.put(f"/api/v1/orders/{order['id']}/model", headers=auth,
                              files={"file": (filename, content, "application/octet-stream")})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code
    after = (await shop.get(f"/api/v1/orders/{order['id']}", headers=auth)).json()
    assert after["status"] == "INITIATED" and after["model"] is None
    assert [e.type for e in await outbox_events(settings, order["id"])] == ["shop.order.initiated"]


async def test_ascii_stl_and_obj_uploads(shop: httpx.AsyncClient) -> None:
    auth = await customer(shop)
    mesh = box(10, 8, 3)
    for name, data, fmt in (("cube.stl", to_ascii_stl(mesh), "stl_ascii"), ("cube.obj", to_obj(mesh), "obj")):
        order = (await shop.post("/api/v1/orders", json={"alloy": "gold_585"}, headers=auth)).json()
        response = await shop.put(f"/api/v1/orders/{order['id']}/model", headers=auth,
                                  files={"file": (name, data, "application/octet-stream")})
        assert response.status_code == 200, response.text
        assert response.json()["model"]["format"] == fmt
        assert response.json()["model"]["triangles"] == 12
        assert response.json()["model"]["size_mm"] == [10.0, 8.0, 3.0]


async def test_submit_without_model_and_cancel_rules(shop: httpx.AsyncClient, settings: Settings) -> None:
    auth = await customer(shop)
    order = (await shop.post("/api/v1/orders", json={"alloy": "gold_585"}, headers=auth)).json()
    early = await shop.post(f"/api/v1/orders/{order['id']}/submit", headers=auth)
    assert early.status_code == 409 and early.json()["error"]["code"] == "model_required"

    cancelled = await shop.post(f"/api/v1/orders/{order['id']}/cancel", headers=auth, json={"reason": "changed mind"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    again = await shop.post(f"/api/v1/orders/{order['id']}/cancel", headers=auth)
    assert again.status_code == 409 and again.json()["error"]["code"] == "illegal_transition"
    upload = await shop.put(f"/api/v1/orders/{order['id']}/model", headers=auth,
                            files={"file": ("ring.stl", RING, "model/stl")})
    assert upload.status_code == 409
    assert [e.type for e in await outbox_events(settings, order["id"])] == [
        "shop.order.initiated", "shop.order.cancelled"]


async def test_cancel_of_an_order_owned_by_production_needs_production(shop: httpx.AsyncClient) -> None:
    # Submitted orders belong to mes; with mes unreachable the shop refuses honestly, changing nothing.
    auth = await customer(shop)
    order = (await shop.post("/api/v1/orders", json={"alloy": "gold_585"}, headers=auth)).json()
    await shop.put(f"/api/v1/orders/{order['id']}/model", headers=auth, files={"file": ("r.stl", RING, "model/stl")})
    await shop.post(f"/api/v1/orders/{order['id']}/submit", headers=auth)
    response = await shop.post(f"/api/v1/orders/{order['id']}/cancel", headers=auth)
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json()["error"]["code"] == "dependency_unavailable"
    assert (await shop.get(f"/api/v1/orders/{order['id']}", headers=auth)).json()["status"] == "SUBMITTED"


async def test_bad_requests(shop: httpx.AsyncClient, settings: Settings) -> None:
    auth = await customer(shop)
    assert (await shop.get("/api/v1/orders")).status_code == 401
    no_auth = await shop.post("/api/v1/orders", json={"alloy": "gold_585"})
    assert no_auth.status_code == 401 and no_auth.json()["error"]["code"] == "unauthorized"
    forged = await shop.get("/api/v1/orders", headers={"Authorization": "Bearer abc.def"})
    assert forged.status_code == 401
    wrong_alloy = await shop.post("/api/v1/orders", json={"alloy": "bronze"}, headers=auth)
    assert wrong_alloy.status_code == 422 and wrong_alloy.json()["error"]["details"][0]["loc"][-1] == "alloy"
    assert (await shop.post("/api/v1/orders", content=b"{", headers={**auth, "content-type": "application/json"})
            ).status_code == 422
    assert (await shop.get("/api/v1/orders/not-a-uuid", headers=auth)).status_code == 422
    assert (await shop.get(f"/api/v1/orders/{uuid.uuid4()}", headers=auth)).status_code == 404
    duplicate = {"email": "dup-" + uuid.uuid4().hex[:6] + "@example.test", "password": "longenough", "name": "D"}
    assert (await shop.post("/api/v1/auth/signup", json=duplicate)).status_code == 201
    taken = await shop.post("/api/v1/auth/signup", json=duplicate)
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "email_taken"
    wrong = await shop.post("/api/v1/auth/token", json={"email": duplicate["email"], "password": "nope-nope"})
    assert wrong.status_code == 401
    short = await shop.post("/api/v1/auth/signup", json={**duplicate, "password": "short"})
    assert short.status_code == 422
    staff = await shop.get("/api/v1/orders", headers={"Authorization": "Bearer " + _staff_token(settings, "seller")})
    assert staff.status_code == 403


def _staff_token(settings: Settings, role: str) -> str:
    from alexandrite.kit.security import Principal
    from alexandrite.kit.tokens import issue_token

    return issue_token(settings, Principal(role=role, subject="s", name="s"), 60)


async def test_a_retried_upload_of_the_same_file_changes_nothing(shop: httpx.AsyncClient) -> None:
    auth = await customer(shop)
    order = (await shop.post("/api/v1/orders", headers=auth, json={"alloy": "gold_585"})).json()
    for _ in range(2):
        response = await shop.put(f"/api/v1/orders/{order['id']}/model", headers=auth,
                                  files={"file": ("ring.stl", RING, "model/stl")})
        assert response.status_code == 200 and len(response.json()["history"]) == 2
    other = to_binary_stl(box(10, 10, 10))
    response = await shop.put(f"/api/v1/orders/{order['id']}/model", headers=auth, files={"file": ("b.stl", other)})
    assert len(response.json()["history"]) == 3  # a different file is a real change

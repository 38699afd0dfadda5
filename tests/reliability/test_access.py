"""Roles on every endpoint (default deny), isolation between customers and partners, hardened uploads."""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from alexandrite.crm.app import create_app as create_crm
from alexandrite.kit.auth import api_routes, guarded_by, unguarded_routes
from alexandrite.kit.db import Database
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import KeyRing, issue_token
from alexandrite.mes.app import create_app as create_mes
from alexandrite.models3d.rings import ring
from alexandrite.models3d.writers import to_binary_stl
from alexandrite.shop.app import create_app as create_shop
from alexandrite.shop.handlers import create_partner

RING = to_binary_stl(ring(segments=48, profile_segments=8))
FACTORIES = {"shop": create_shop, "crm": create_crm, "mes": create_mes}
# Open on purpose, each for the reason its route states; everything else needs a role.
PUBLIC = {"/api/v1/auth/signup", "/api/v1/auth/token", "/api/v1/crm/webhooks/carrier",
          # the pages' start and sign-in forms, before any session (their posts carry CSRF checks)
          "/", "/signin", "/signup", "/signout",
          # the event contract, public like /openapi.json
          "/asyncapi.json"}


@pytest.fixture(scope="module")
async def clients(settings: Settings) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    local = settings.replace(**{"run_relay": False, "run_consumer": False, "run_webhooks": False,
                                    "max_upload_bytes": 4_000_000})
    async with AsyncExitStack() as stack:
        result = {}
        for name, factory in FACTORIES.items():
            app = factory(local)
            await stack.enter_async_context(LifespanManager(app))
            result[name] = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=f"http://{name}"))
        yield result


def bearer(settings: Settings, role: str, subject: str | None = None) -> dict[str, str]:
    subject = subject or f"{role}-{uuid.uuid4().hex[:6]}"
    token = issue_token(settings, Principal(role=role, subject=subject, name=subject), 600)
    return {"Authorization": f"Bearer {token}"}


async def customer(shop: httpx.AsyncClient) -> dict[str, str]:
    email = f"c-{uuid.uuid4().hex[:10]}@example.test"
    await shop.post("/api/v1/auth/signup", json={"email": email, "password": "s3cret-pass", "name": "C"})
    token = (await shop.post("/api/v1/auth/token", json={"email": email, "password": "s3cret-pass"})).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


@pytest.mark.parametrize("service", sorted(FACTORIES))
def test_every_route_requires_a_role_or_says_why_it_is_public(service: str, settings: Settings) -> None:
    app = FACTORIES[service](settings)
    assert unguarded_routes(app.routes) == []
    for path, route, extra in api_routes(app.routes):
        guard = guarded_by(route, extra)
        if isinstance(guard, str):
            assert path in PUBLIC, f"{path} is public: {guard}"
        elif path.startswith(("/api/", "/internal/")):
            assert guard, path
            if path.startswith("/internal/"):
                assert guard <= {"service", "admin", "operator"}, path


async def test_a_route_without_a_role_stops_the_service_from_starting(settings: Settings) -> None:
    app: FastAPI = create_shop(settings.replace(**{"run_relay": False, "run_consumer": False}))

    @app.get("/api/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    with pytest.raises(RuntimeError, match="GET /api/v1/forgotten"):
        async with LifespanManager(app):
            pass


async def test_a_customer_cannot_read_or_change_another_customers_order(
        clients: dict[str, httpx.AsyncClient]) -> None:
    shop = clients["shop"]
    alice, mallory = await customer(shop), await customer(shop)
    order = (await shop.post("/api/v1/orders", headers=alice, json={"alloy": "gold_585"})).json()
    oid = order["id"]
    attempts = [
        await shop.get(f"/api/v1/orders/{oid}", headers=mallory),
        await shop.put(f"/api/v1/orders/{oid}/model", headers=mallory, files={"file": ("r.stl", RING)}),
        await shop.post(f"/api/v1/orders/{oid}/submit", headers=mallory),
        await shop.post(f"/api/v1/orders/{oid}/cancel", headers=mallory),
    ]
    assert [r.status_code for r in attempts] == [404] * 4  # no hint that the id exists
    assert all(r.json()["error"]["code"] == "not_found" for r in attempts)
    listed = (await shop.get("/api/v1/orders", headers=mallory)).json()["items"]
    assert oid not in {o["id"] for o in listed}
    mine = (await shop.get(f"/api/v1/orders/{oid}", headers=alice)).json()
    assert mine["status"] == "INITIATED" and len(mine["history"]) == 1  # untouched
    # Guessing random ids finds nothing either.
    for _ in range(5):
        assert (await shop.get(f"/api/v1/orders/{uuid.uuid4()}", headers=mallory)).status_code == 404


async def test_a_partner_cannot_see_another_partners_orders_or_webhooks(
        clients: dict[str, httpx.AsyncClient], settings: Settings) -> None:
    shop = clients["shop"]
    db = Database(settings.database_url("shop"), pool_size=1)
    one = {"X-API-Key": await create_partner(db, f"iso-a-{uuid.uuid4().hex[:6]}")}
    two = {"X-API-Key": await create_partner(db, f"iso-b-{uuid.uuid4().hex[:6]}")}
    await db.dispose()
    oid = (await shop.post("/api/v1/orders", headers=one, json={"alloy": "silver_925"})).json()["id"]
    assert (await shop.get(f"/api/v1/orders/{oid}", headers=two)).status_code == 404
    assert (await shop.post(f"/api/v1/orders/{oid}/cancel", headers=two)).status_code == 404
    assert oid not in {o["id"] for o in (await shop.get("/api/v1/orders", headers=two)).json()["items"]}
    assert (await shop.get(f"/api/v1/orders/{oid}", headers=one)).status_code == 200
    assert (await shop.get("/api/v1/orders", headers={"X-API-Key": "alx_guessed"})).status_code == 401
    # A customer is not a partner: no webhooks.
    assert (await shop.put("/api/v1/webhook", headers=await customer(shop),
                           json={"url": "http://example.test/h"})).status_code == 403


async def test_roles_are_enforced_across_services(clients: dict[str, httpx.AsyncClient], settings: Settings) -> None:
    shop, crm, mes = clients["shop"], clients["crm"], clients["mes"]
    seller, operator = bearer(settings, "seller"), bearer(settings, "operator")
    cust = await customer(shop)
    oid = uuid.uuid4()
    # A seller cannot act as an operator, nor an operator as a seller.
    assert (await mes.post(f"/api/v1/production/orders/{oid}/take", headers=seller)).status_code == 403
    assert (await mes.get("/api/v1/production/orders", headers=seller)).status_code == 403
    assert (await crm.post(f"/api/v1/crm/orders/{oid}/approve", headers=operator)).status_code == 403
    # Customers and partners reach neither staff service (their tokens name only the shop: 401 there)
    # nor the internal peer API (403 at the shop).
    for headers in (cust, bearer(settings, "partner")):
        assert (await crm.get("/api/v1/crm/orders", headers=headers)).status_code == 401
        assert (await mes.get("/api/v1/production/orders", headers=headers)).status_code == 401
        assert (await mes.get(f"/internal/v1/orders/{oid}/progress", headers=headers)).status_code == 401
        assert (await shop.post(f"/internal/v1/orders/{oid}/cancel", headers=headers,
                                json={"requested_by": "crm", "actor": "x"})).status_code == 403
    # Staff do not own shop orders: a clear 403, not a server error.
    assert (await shop.post("/api/v1/orders", headers=seller, json={"alloy": "gold_585"})).status_code == 403
    assert (await shop.post("/api/v1/orders", headers=bearer(settings, "admin"),
                            json={"alloy": "gold_585"})).status_code == 403
    # No credentials, forged tokens: 401.
    forged = issue_token(KeyRing("k1", {"k1": "not-the-secret-but-long-enough-for-hs256"}), Principal(role="admin", subject="x"), 600)
    for client, path in ((shop, "/api/v1/orders"), (crm, "/api/v1/crm/orders"), (mes, "/api/v1/production/orders")):
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers={"Authorization": f"Bearer {forged}"})).status_code == 401
        assert (await client.get(path, headers={"Authorization": "Service wrong"})).status_code == 401


async def test_security_headers_on_every_answer(clients: dict[str, httpx.AsyncClient]) -> None:
    for client, path in ((clients["shop"], "/api/v1/orders"), (clients["crm"], "/health/live"),
                         (clients["mes"], "/nope")):
        headers = (await client.get(path)).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["referrer-policy"] == "same-origin"  # no-referrer would send "Origin: null" on form posts
        assert headers["strict-transport-security"].startswith("max-age=")


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


HOSTILE = [
    ("bomb.3mf", _zip({"3D/3dmodel.model": b" " * 20_000_000}), "archive_too_large"),  # 20 MB in ~20 kB
    ("path.3mf", _zip({"../../etc/passwd": b"x", "3D/3dmodel.model": b"<model/>"}), "unsafe_archive"),
    ("liar.stl", b"\0" * 80 + (10_000_000).to_bytes(4, "little") + b"\0" * 50 * 3, "malformed_model"),
    ("huge-index.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99999999999999999999999\n", "malformed_model"),
    ("negative.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 -4294967296\n", "malformed_model"),
]


@pytest.mark.parametrize(("name", "data", "code"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_hostile_uploads_are_refused_with_a_reason(clients: dict[str, httpx.AsyncClient], settings: Settings,
                                                         name: str, data: bytes, code: str) -> None:
    shop = clients["shop"]
    headers = await customer(shop)
    oid = (await shop.post("/api/v1/orders", headers=headers, json={"alloy": "gold_585"})).json()["id"]
    response = await shop.put(f"/api/v1/orders/{oid}/model", headers=headers, files={"file": (name, data)})
    assert response.status_code == 422, response.text
    assert code in response.json()["error"]["code"]
    assert (await shop.get(f"/api/v1/orders/{oid}", headers=headers)).json()["status"] == "INITIATED"
    digest = hashlib.sha256(data).hexdigest()  # storage is content-addressed: nothing under this hash
    assert not list((settings.uploads.storage_dir / "models" / digest[:2]).glob(f"{digest}.*"))


async def test_text_postgres_cannot_store_is_a_client_error(clients: dict[str, httpx.AsyncClient]) -> None:
    shop = clients["shop"]
    signup = await shop.post("/api/v1/auth/signup", json={"email": "a\u0000b@example.test", "password": "p" * 8,
                                                          "name": "Nul"})
    assert signup.status_code == 422 and signup.json()["error"]["code"] == "invalid_request"
    token = await shop.post("/api/v1/auth/token", json={"email": "\u0000@x.y", "password": "x"})
    assert token.status_code == 422

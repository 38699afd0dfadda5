"""OWASP API Security Top 10 checks that apply here, walked over every route of the three apps (``app.routes``).

Each check names the request that would exploit the weakness:

- API1 object-level authorization: customer B asks for customer A's order id on every order route → 404
  (the same answer as for an id that does not exist: B learns nothing); partner B likewise for partner A.
- API5 function-level authorization: every guarded route without credentials → 401 (pages: 303 to
  /signin); a customer's token on every staff, partner, service or admin route → 403 where the token is valid
  (shop), 401 on crm/mes (a customer token names only the shop as audience); and even a customer token made
  out for crm/mes is refused 403 there by role.
- API3 mass assignment: every JSON write schema forbids unknown fields, so ``status``/``price``/``partner_id``
  /``role`` in a body are REJECTED with 422 (never ignored, never applied); HTML forms read named fields only,
  so extra form fields are IGNORED (shown with a real request).
- API4 unrestricted resource consumption: every list endpoint's ``limit`` has an upper bound (a request past
  it → 422); list endpoints without ``limit`` serve a fixed page size; uploads past the size limit → 413.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, Union, get_args, get_origin

import httpx
import pytest
from annotated_types import Le
from asgi_lifespan import LifespanManager
from pydantic import BaseModel

from alexandrite.kit.auth import PUBLIC_PATHS, api_routes, guarded_by
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token
from alexandrite.kit.web import session
from alexandrite.models3d.rings import ring
from alexandrite.models3d.writers import to_binary_stl
from alexandrite.shop.app import create_app as create_shop
from alexandrite.shop.handlers import create_partner
from tests.in_process import FACTORIES, in_process_apps

MAX_PAGE = 500
# List endpoints without a ``limit`` parameter: each serves a fixed page size (or a bounded summary).
FIXED_PAGES = {("shop", "/orders"), ("crm", "/orders"), ("crm", "/orders/waiting"), ("mes", "/production/dashboard"),
               ("mes", "/api/v1/production/pricing/queue"), ("shop", "/api/v1/webhook")}
RING = to_binary_stl(ring(segments=64, profile_segments=8))


@pytest.fixture(scope="module")
async def apps(settings: Settings) -> AsyncIterator[dict[str, tuple[Any, httpx.AsyncClient]]]:
    async with in_process_apps(settings, redis_prefix=f"{settings.redis.prefix}:owasp-{uuid.uuid4().hex[:6]}") as apps:
        yield apps


def _routes(app: Any) -> list[tuple[str, str, Any, Any]]:
    """(method, path, route, guard) of every endpoint that is not framework, probe or static."""
    found = []
    for path, route, extra in api_routes(app.routes):
        if not hasattr(route, "dependant") or path in PUBLIC_PATHS or path.startswith(("/static", "/assets")):
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            found.append((method, path, route, guarded_by(route, extra)))
    return found


def _url(path: str, order_id: uuid.UUID | str) -> str:
    return path.replace("{order_id}", str(order_id))


def _bearer(settings: Settings, role: str, subject: str, audience: tuple[str, ...] | None = None) -> dict[str, str]:
    token = issue_token(settings, Principal(role=role, subject=subject, name=subject), 600, audience=audience)
    return {"Authorization": f"Bearer {token}"}


async def _customer(shop: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    email = f"owasp-{uuid.uuid4().hex[:8]}@example.com"
    assert (await shop.post("/api/v1/auth/signup", json={"email": email, "password": "long enough pw",
                                                         "name": "O"})).status_code == 201
    token = (await shop.post("/api/v1/auth/token", json={"email": email, "password": "long enough pw"})
             ).json()["access_token"]
    return token, {"Authorization": f"Bearer {token}"}


def _is_page(path: str) -> bool:
    return not path.startswith(("/api/", "/internal/"))


# --- API5: function-level authorization --------------------------------------------------------------------

@pytest.mark.parametrize("service", list(FACTORIES))
async def test_every_guarded_route_refuses_no_token_and_the_wrong_role(
        apps: dict[str, Any], settings: Settings, service: str) -> None:
    app, client = apps[service]
    customer = _bearer(settings, "customer", str(uuid.uuid4()), ("shop",))
    customer_here = _bearer(settings, "customer", str(uuid.uuid4()), (service,))  # mis-issued audience
    checked = 0
    for method, path, _, guard in _routes(app):
        if not isinstance(guard, frozenset):
            continue  # declared public, with its reason (kit.auth.public)
        url = _url(path, uuid.uuid4())
        anonymous = await client.request(method, url, json={} if method != "GET" else None)
        if _is_page(path):
            assert anonymous.status_code == 303 and "/signin" in anonymous.headers["location"], (method, path)
            continue
        assert anonymous.status_code == 401, (method, path, anonymous.status_code)
        if "customer" not in guard:
            answer = await client.request(method, url, headers=customer, json={} if method != "GET" else None)
            assert answer.status_code == (403 if service == "shop" else 401), (method, path, answer.status_code)
            by_role = await client.request(method, url, headers=customer_here,
                                           json={} if method != "GET" else None)
            assert by_role.status_code == 403, (method, path, by_role.status_code)
            assert by_role.json()["error"]["code"] == "forbidden"
        checked += 1
    assert checked >= 5


# --- API1: object-level authorization ----------------------------------------------------------------------

async def test_another_customers_order_is_not_found_on_every_order_route(
        apps: dict[str, Any], settings: Settings) -> None:
    app, shop = apps["shop"]
    _, owner = await _customer(shop)
    created = await shop.post("/api/v1/orders", headers=owner, json={"alloy": "gold_585"})
    assert created.status_code == 201
    order_id = created.json()["id"]
    before = (await shop.get(f"/api/v1/orders/{order_id}", headers=owner)).json()
    other_token, other = await _customer(shop)
    cookie = {"Cookie": f"{session.cookie_name('shop')}={other_token}",
              "X-CSRF-Token": session.csrf_token(app.state.settings, "shop", other_token)}
    checked = []
    for method, path, route, guard in _routes(app):
        if "{order_id}" not in path or not isinstance(guard, frozenset) or "customer" not in guard:
            continue
        url = _url(path, order_id)
        headers = cookie if _is_page(path) else other
        multipart = any(param.name == "file" for param in route.dependant.body_params)
        if multipart:
            answer = await shop.request(method, url, headers=headers, files={"file": ("ring.stl", RING)})
        elif method == "GET":
            answer = await shop.request(method, url, headers=headers)
        elif _is_page(path):
            answer = await shop.request(method, url, headers=headers, data={})
        else:
            answer = await shop.request(method, url, headers=headers, json={})
        if _is_page(path) and method == "POST" and answer.status_code == 303:
            # pages answer a post by going back to the order page, which is "not found" for this customer
            assert "not_found" in answer.headers["location"], (method, path, answer.headers["location"])
            answer = await shop.get(answer.headers["location"], headers=headers)
        assert answer.status_code == 404, (method, path, answer.status_code, answer.text[:200])
        checked.append(f"{method} {path}")
    assert len(checked) >= 10, checked
    assert (await shop.get(f"/api/v1/orders/{order_id}", headers=owner)).json() == before  # nothing changed


async def test_another_partners_order_is_not_found(apps: dict[str, Any]) -> None:
    app, shop = apps["shop"]
    first = {"X-API-Key": await create_partner(app.state.db, f"owasp-a-{uuid.uuid4().hex[:6]}")}
    second = {"X-API-Key": await create_partner(app.state.db, f"owasp-b-{uuid.uuid4().hex[:6]}")}
    order_id = (await shop.post("/api/v1/orders", headers=first, json={"alloy": "gold_585"})).json()["id"]
    assert (await shop.get(f"/api/v1/orders/{order_id}", headers=second)).status_code == 404
    assert (await shop.post(f"/api/v1/orders/{order_id}/cancel", headers=second, json={})).status_code == 404
    assert order_id not in (await shop.get("/api/v1/orders", headers=second)).text


# --- API3: mass assignment ---------------------------------------------------------------------------------

def _models(annotation: Any) -> list[type[BaseModel]]:
    if get_origin(annotation) in (Union, getattr(__import__("types"), "UnionType", None)):
        return [m for a in get_args(annotation) for m in _models(a)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


@pytest.mark.parametrize("service", list(FACTORIES))
def test_every_json_write_schema_rejects_unknown_fields(apps: dict[str, Any], service: str) -> None:
    app, _ = apps[service]
    json_schemas, forms = [], []
    for method, path, route, _ in _routes(app):
        body = getattr(route, "body_field", None)
        if body is None:
            continue
        for model in _models(body.field_info.annotation):
            if model.__name__.startswith("Body_"):  # FastAPI's model of form / multipart fields
                forms.append(f"{method} {path}")
            else:
                json_schemas.append(model.__name__)
                assert model.model_config.get("extra") == "forbid", (method, path, model.__name__)
    assert json_schemas or service == "mes" or forms


@pytest.mark.parametrize(("service", "method", "path", "body"), [
    ("shop", "POST", "/api/v1/auth/signup", {"email": "m@example.com", "password": "long enough pw", "name": "M",
                                             "role": "admin", "id": str(uuid.uuid4())}),
    ("shop", "POST", "/api/v1/orders", {"alloy": "gold_585", "status": "CLOSED", "price": 1,
                                        "partner_id": str(uuid.uuid4()), "customer_id": str(uuid.uuid4())}),
    ("shop", "POST", "/api/v1/orders/{order_id}/cancel", {"reason": "x", "status": "CANCELLED", "actor": "crm"}),
    ("shop", "POST", "/api/v1/orders/{order_id}/submit", {"confirm": [], "price": 1}),
    ("crm", "POST", "/api/v1/crm/orders/{order_id}/notes", {"text": "hi", "author": "someone-else"}),
    ("crm", "POST", "/api/v1/crm/orders/{order_id}/cancel", {"reason": "x", "status": "CLOSED"}),
    ("mes", "POST", "/api/v1/production/orders/{order_id}/ship", {"tracking": "T1", "status": "DELIVERED"}),
])
async def test_extra_fields_in_a_json_body_are_rejected(apps: dict[str, Any], settings: Settings, service: str,
                                                        method: str, path: str, body: dict[str, Any]) -> None:
    _, client = apps[service]
    role = {"shop": "customer", "crm": "seller", "mes": "operator"}[service]
    headers = _bearer(settings, role, str(uuid.uuid4()), (service,))
    answer = await client.request(method, _url(path, uuid.uuid4()), headers=headers, json=body)
    assert answer.status_code == 422, (path, answer.status_code, answer.text[:200])
    assert answer.json()["error"]["code"] == "invalid_request"


async def test_extra_fields_in_a_page_form_are_ignored(apps: dict[str, Any]) -> None:
    """POST /orders/new (form) alloy=gold_585&status=CLOSED&price=1&customer_id=<other>: the order is new, ours."""
    app, shop = apps["shop"]
    token, auth = await _customer(shop)
    headers = {"Cookie": f"{session.cookie_name('shop')}={token}",
               "X-CSRF-Token": session.csrf_token(app.state.settings, "shop", token)}
    answer = await shop.post("/orders/new", headers=headers, files={"file": ("ring.stl", RING)}, data={
        "alloy": "gold_585", "status": "CLOSED", "price": "1", "customer_id": str(uuid.uuid4())})
    assert answer.status_code == 303, answer.text[:300]
    orders = (await shop.get("/api/v1/orders", headers=auth)).json()["items"]
    assert len(orders) == 1 and orders[0]["status"] == "FILE_UPLOADED"  # not CLOSED: the field was ignored
    assert not orders[0].get("price")


# --- API4: unrestricted resource consumption ---------------------------------------------------------------

def _upper_bound(param: Any) -> int | None:
    for item in param.field_info.metadata:
        if isinstance(item, Le):
            return int(item.le)
    return None


@pytest.mark.parametrize("service", list(FACTORIES))
async def test_every_list_limit_is_capped(apps: dict[str, Any], settings: Settings, service: str) -> None:
    app, client = apps[service]
    if service == "shop":  # a partner may call every shop list (orders, webhook deliveries)
        headers = {"X-API-Key": await create_partner(app.state.db, f"owasp-l-{uuid.uuid4().hex[:6]}")}
    else:
        headers = _bearer(settings, {"crm": "seller", "mes": "operator"}[service], "owasp")
    lists = 0
    for method, path, route, _ in _routes(app):
        if method != "GET" or "{" in path:
            continue
        limit = next((p for p in route.dependant.query_params if p.name == "limit"), None)
        if limit is None:
            is_list = any(p.name == "cursor" for p in route.dependant.query_params) or path.endswith(
                ("/orders", "/queue", "/dashboard", "/webhook"))
            assert not is_list or (service, path) in FIXED_PAGES, (service, path)
            continue
        bound = _upper_bound(limit)
        assert bound is not None and bound <= MAX_PAGE, (service, path, bound)
        answer = await client.get(path, params={"limit": 10**6}, headers=headers)
        assert answer.status_code == 422, (service, path, answer.status_code)
        lists += 1
    assert lists >= 1


async def test_an_upload_past_the_size_limit_is_refused(settings: Settings) -> None:
    """PUT /api/v1/orders/{id}/model with a body past ALEX_MAX_UPLOAD_BYTES → 413, nothing stored."""
    local = settings.replace(run_relay=False, run_consumer=False, run_webhooks=False, max_upload_bytes=64 * 1024,
                             redis_prefix=f"{settings.redis.prefix}:owasp-up-{uuid.uuid4().hex[:6]}")
    app = create_shop(local)
    async with LifespanManager(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://shop") as shop:
            _, auth = await _customer(shop)
            order_id = (await shop.post("/api/v1/orders", headers=auth, json={"alloy": "gold_585"})).json()["id"]
            answer = await shop.put(f"/api/v1/orders/{order_id}/model", headers=auth,
                                    files={"file": ("big.stl", b"x" * (256 * 1024))})
            assert answer.status_code == 413
            assert (await shop.get(f"/api/v1/orders/{order_id}", headers=auth)).json()["status"] == "INITIATED"

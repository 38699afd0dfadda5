"""Submit backpressure: the pricing backlog's expected wait against the stage SLA.

Production's queue endpoint is played by a real local HTTP server that reports a chosen ETA.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from asgi_lifespan import LifespanManager

from alexandrite.kit.settings import Settings
from alexandrite.models3d.rings import ring
from alexandrite.models3d.writers import to_binary_stl
from alexandrite.shop.app import create_app

RING = to_binary_stl(ring(segments=48, profile_segments=8))


@pytest.fixture
def mes_queue() -> Iterator[dict[str, object]]:
    state: dict[str, object] = {"eta": 10.0, "calls": 0, "auth": None}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            state["calls"] = int(state["calls"]) + 1  # type: ignore[call-overload]
            state["auth"] = self.headers.get("Authorization")
            body = json.dumps({"queued": 5, "running": 1, "workers": 1, "broker_ready_messages": 5,
                               "average_seconds": 2.0, "oldest_queued_seconds": 1.0,
                               "eta_seconds_for_new_job": state["eta"]}).encode()
            self.send_response(200 if self.path == "/api/v1/production/pricing/queue" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()


@asynccontextmanager
async def shop(settings: Settings, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.replace(**{"run_relay": False, "run_consumer": False, "run_webhooks": False,
                                                 "pricing_stage_sla_seconds": 60.0,
                                                 "backpressure_cache_seconds": 0.0, **overrides}))
    async with LifespanManager(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://shop") as client:
            yield client


async def uploaded_order(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    email = f"bp-{uuid.uuid4().hex[:8]}@example.test"
    await client.post("/api/v1/auth/signup", json={"email": email, "password": "pass-word-1", "name": "B"})
    token = (await client.post("/api/v1/auth/token", json={"email": email, "password": "pass-word-1"})).json()
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    oid = (await client.post("/api/v1/orders", headers=auth, json={"alloy": "gold_585"})).json()["id"]
    assert (await client.put(f"/api/v1/orders/{oid}/model", headers=auth,
                             files={"file": ("r.stl", RING)})).status_code == 200
    return oid, auth


async def test_submit_is_refused_with_retry_after_when_the_backlog_breaks_the_sla(
        settings: Settings, mes_queue: dict[str, object]) -> None:
    async with shop(settings, mes_url=mes_queue["url"]) as client:
        oid, auth = await uploaded_order(client)
        mes_queue["eta"] = 250.0
        refused = await client.post(f"/api/v1/orders/{oid}/submit", headers=auth)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "190"  # until the backlog is back within the 60 s SLA
        body = refused.json()["error"]
        assert body["code"] == "pricing_overloaded" and body["details"] == {"eta_seconds": 250.0, "sla_seconds": 60.0}
        assert (await client.get(f"/api/v1/orders/{oid}", headers=auth)).json()["status"] == "FILE_UPLOADED"
        assert str(mes_queue["auth"]).startswith("Service ")  # asked as a service, not as the customer

        mes_queue["eta"] = 30.0
        accepted = await client.post(f"/api/v1/orders/{oid}/submit", headers=auth)
        assert accepted.status_code == 202 and accepted.headers["Pricing-ETA-Seconds"] == "30"
        assert accepted.json()["status"] == "SUBMITTED"


async def test_accept_with_eta_mode_tells_the_honest_wait(settings: Settings, mes_queue: dict[str, object]) -> None:
    mes_queue["eta"] = 900.0
    async with shop(settings, mes_url=mes_queue["url"], backpressure_mode="accept_with_eta") as client:
        oid, auth = await uploaded_order(client)
        response = await client.post(f"/api/v1/orders/{oid}/submit", headers=auth)
        assert response.status_code == 202 and response.headers["Pricing-ETA-Seconds"] == "900"


async def test_production_unreachable_means_accept(settings: Settings) -> None:
    async with shop(settings, mes_url="http://127.0.0.1:1") as client:
        oid, auth = await uploaded_order(client)
        response = await client.post(f"/api/v1/orders/{oid}/submit", headers=auth)
        assert response.status_code == 202 and "Pricing-ETA-Seconds" not in response.headers

"""Probe and service-to-service endpoints: metrics behind a token, readiness cheap and terse, internal routes
absent from the public API description."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from alexandrite.kit.settings import Settings
from tests.in_process import FACTORIES, in_process_apps


@pytest.fixture(scope="module")
async def apps(settings: Settings) -> AsyncIterator[dict[str, tuple[Any, httpx.AsyncClient]]]:
    async with in_process_apps(settings) as apps:
        yield apps


def _token(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.obs.metrics_token}"}


@pytest.mark.parametrize("service", list(FACTORIES))
async def test_metrics_need_the_metrics_token(apps: dict[str, Any], settings: Settings, service: str) -> None:
    _, client = apps[service]
    anonymous = await client.get("/metrics")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    assert "alexandrite_" not in anonymous.text
    for wrong in ({"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {settings.auth.service_token}"},
                  {"Authorization": f"Service {settings.obs.metrics_token}"}):
        assert (await client.get("/metrics", headers=wrong)).status_code == 401
    scraped = await client.get("/metrics", headers=_token(settings))
    assert scraped.status_code == 200 and "alexandrite_http_requests_total" in scraped.text


@pytest.mark.parametrize("service", list(FACTORIES))
async def test_readiness_is_terse_for_everyone_and_detailed_for_the_scraper(
        apps: dict[str, Any], settings: Settings, service: str) -> None:
    _, client = apps[service]
    public = await client.get("/health/ready")
    assert public.status_code == 200 and public.json() == {"status": "ok"}
    detailed = (await client.get("/health/ready", headers=_token(settings))).json()
    assert detailed["status"] == "ok" and detailed["checks"]["postgres"] == "ok"


async def test_readiness_checks_run_once_per_cache_period_under_a_flood(apps: dict[str, Any]) -> None:
    from alexandrite.kit.probes import Readiness

    app, client = apps["shop"]
    app.state.readiness = readiness = Readiness(ttl=3600)  # one cache period covers the whole flood
    answers = await asyncio.gather(*(client.get("/health/ready") for _ in range(200)))
    assert all(a.status_code == 200 for a in answers)
    assert readiness.runs == 1  # 200 requests (concurrent ones included), one database check
    readiness.ttl = 0  # the period is over: the next request checks again
    await client.get("/health/ready")
    assert readiness.runs == 2
    app.state.readiness = Readiness()


@pytest.mark.parametrize("service", list(FACTORIES))
async def test_internal_routes_are_not_in_the_public_openapi(apps: dict[str, Any], service: str) -> None:
    app, client = apps[service]
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert paths and not [p for p in paths if p.startswith("/internal/")]
    assert "/metrics" not in paths


@pytest.mark.parametrize("service", list(FACTORIES))
async def test_internal_routes_refuse_everyone_but_the_service_token(
        apps: dict[str, Any], settings: Settings, service: str) -> None:
    from alexandrite.kit.auth import api_routes
    from alexandrite.kit.security import Principal
    from alexandrite.kit.tokens import issue_token

    app, client = apps[service]
    staff = {role: {"Authorization": "Bearer " + issue_token(settings, Principal(role=role, subject=role, name=role), 600)}
             for role in ("customer", "seller", "operator")}
    checked = 0
    for path, route, _ in api_routes(app.routes):
        if not path.startswith("/internal/"):
            continue
        url = path.replace("{order_id}", "00000000-0000-4000-8000-000000000001")
        for method in sorted(getattr(route, "methods", None) or ()):
            for headers in ({}, *staff.values(), _token(settings)):
                response = await client.request(method, url, headers=headers, json={})
                assert response.status_code in (401, 403), (method, url, headers, response.status_code)
            checked += 1
    assert checked >= 1

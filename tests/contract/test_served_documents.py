"""What the services serve at /openapi.json and /asyncapi.json is the committed contract, to anyone."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from alexandrite.crm.app import create_app as create_crm
from alexandrite.kit.settings import Settings
from alexandrite.mes.app import create_app as create_mes
from alexandrite.shop.app import create_app as create_shop

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
FACTORIES = {"shop": create_shop, "crm": create_crm, "mes": create_mes}


@pytest.fixture(scope="module")
async def clients(settings: Settings) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    local = settings.replace(run_relay=False, run_consumer=False, run_webhooks=False)
    async with AsyncExitStack() as stack:
        found = {}
        for name, factory in FACTORIES.items():
            app = factory(local)
            await stack.enter_async_context(LifespanManager(app))
            found[name] = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=f"http://{name}"))
        yield found


def _committed(name: str) -> Any:
    return json.loads((CONTRACTS / name).read_text())


@pytest.mark.parametrize("service", list(FACTORIES))
async def test_the_served_openapi_is_the_committed_one(clients: dict[str, httpx.AsyncClient], service: str) -> None:
    answer = await clients[service].get("/openapi.json")
    assert answer.status_code == 200 and answer.json() == _committed(f"openapi/{service}.json")


async def test_the_shop_serves_the_event_contract(clients: dict[str, httpx.AsyncClient]) -> None:
    answer = await clients["shop"].get("/asyncapi.json")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == _committed("asyncapi/events.json")
    assert (await clients["crm"].get("/asyncapi.json")).status_code == 404

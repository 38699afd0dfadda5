"""What the services serve at /openapi.json and /asyncapi.json is the committed contract, to anyone."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from alexandrite.kit.settings import Settings
from tests.in_process import FACTORIES, in_process_apps

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


@pytest.fixture(scope="module")
async def clients(settings: Settings) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with in_process_apps(settings) as apps:
        yield {name: client for name, (_, client) in apps.items()}


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

"""MES fixtures shared by the integration tests that talk to production in-process.

``app``/``client``/``db`` are the MES service (a module defining its own fixture of the same
name uses that one instead). Events are fed to the handler directly, so relay and consumer are
off; ``db`` drops cached dashboard pages after its commits, as the service's consumer does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from alexandrite.kit.db import Database
from alexandrite.kit.settings import Settings
from alexandrite.mes.app import create_app
from alexandrite.mes.dashboard import attach_cache


@pytest.fixture(scope="module")
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings.replace(**{"run_relay": False, "run_consumer": False}))
    async with LifespanManager(application):
        yield application


@pytest.fixture(scope="module")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mes.test") as http:
        yield http


@pytest.fixture(scope="module")
async def db(settings: Settings, app: Any) -> AsyncIterator[Database]:
    database = Database(settings.database_url("mes"), pool_size=3)
    attach_cache(database, app.state.dashboard_cache)
    yield database
    await database.dispose()

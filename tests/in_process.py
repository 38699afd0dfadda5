"""The three services as ASGI apps in this process (lifespan run, no relay, consumer or webhook
dispatcher), each with an httpx client, for tests that call every service's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from alexandrite.crm.app import create_app as create_crm
from alexandrite.kit.settings import Settings
from alexandrite.mes.app import create_app as create_mes
from alexandrite.shop.app import create_app as create_shop

FACTORIES = {"shop": create_shop, "crm": create_crm, "mes": create_mes}


@asynccontextmanager
async def in_process_apps(settings: Settings, **overrides: Any) -> AsyncIterator[dict[str, tuple[Any, httpx.AsyncClient]]]:
    local = settings.replace(run_relay=False, run_consumer=False, run_webhooks=False, **overrides)
    async with AsyncExitStack() as stack:
        found = {}
        for name, factory in FACTORIES.items():
            app = factory(local)
            await stack.enter_async_context(LifespanManager(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=f"http://{name}"))
            found[name] = (app, client)
        yield found

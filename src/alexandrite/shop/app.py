"""The shop service's ASGI app."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request

from alexandrite.kit.app import create_service_app
from alexandrite.kit.errors import ApiError
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings, get_settings
from alexandrite.shop import handlers
from alexandrite.shop.api import internal, router
from alexandrite.shop.consumers import event_handler
from alexandrite.shop.notifier import run_notifier


async def notifier(app: FastAPI, stop: asyncio.Event) -> None:
    if app.state.settings.run_notifier:
        await run_notifier(app.state.db, app.state.settings, stop)


async def _startup(app: FastAPI) -> None:
    async def partner_auth(request: Request) -> Principal | None:
        key = request.headers.get("x-api-key")
        if not key:
            return None
        principal = await handlers.partner_principal(app.state.db, key)
        if principal is None:
            raise ApiError(401, "invalid_api_key", "The API key is not valid.")
        return principal

    app.state.extra_auth = partner_auth


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        "shop", settings or get_settings(), [router, internal], event_handler=event_handler, on_startup=_startup,
        title="Alexandrite shop API", loops=(notifier,),
    )

"""The shop service's ASGI app."""

from __future__ import annotations

import asyncio
import functools
import gc
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware import Middleware

from alexandrite.kit.app import create_service_app
from alexandrite.kit.auth import public
from alexandrite.kit.errors import ApiError, error_body
from alexandrite.kit.openapi import install_contract
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings, get_settings
from alexandrite.kit.throttle import PlanCache
from alexandrite.shop import order_streams, pages
from alexandrite.shop.api import internal, router
from alexandrite.shop.asyncapi import build_asyncapi
from alexandrite.shop.backpressure import PricingBacklog
from alexandrite.shop.consumers import event_handler
from alexandrite.shop.contract import SHOP_CONTRACT
from alexandrite.shop.hot_paths import OrderHotPaths
from alexandrite.shop.notifier import run_notifier
from alexandrite.shop.partner_keys import PartnerKeys
from alexandrite.shop.uploads import ParseSlots
from alexandrite.shop.webhooks.api import webhook_router
from alexandrite.shop.webhooks.dispatch import WebhookDispatcher


async def notifier(app: FastAPI, stop: asyncio.Event) -> None:
    if app.state.settings.mail.run_notifier:
        await run_notifier(app.state.db, app.state.settings, stop)


async def webhook_dispatcher(app: FastAPI, stop: asyncio.Event) -> None:
    if app.state.settings.webhooks.run:
        await WebhookDispatcher(app.state.db, app.state.settings, app.state.redis,
                                resolver=getattr(app.state, "webhook_resolver", None)).run(stop)


async def _startup(app: FastAPI) -> None:
    keys = PartnerKeys(app.state.db, app.state.settings.auth.partner_key_cache_seconds)
    app.state.partner_keys = keys

    async def partner_auth(request: Request) -> Principal | None:
        key = request.headers.get("x-api-key")
        if not key:
            return None
        principal = await keys.principal(key)
        if principal is None:
            raise ApiError(401, "invalid_api_key", "The API key is not valid.")
        return principal

    app.state.extra_auth = partner_auth
    app.state.partner_plans = PlanCache(keys.plan)
    app.state.backlog = PricingBacklog(app.state.peers, app.state.settings)
    uploads = app.state.settings.uploads
    app.state.parse_slots = ParseSlots(uploads.max_concurrent_parses, uploads.parse_wait_seconds)
    # Everything loaded so far (modules, the app, its routes and models) lives as long as the process:
    # out of the collector's sight, a full collection under load costs a few ms instead of tens.
    gc.collect()
    gc.freeze()


async def _not_an_owner(_: Request, exc: PermissionError) -> JSONResponse:
    return JSONResponse(error_body("forbidden", "Only customers and partners own orders; "
                                   "staff read them in the CRM and MES."), 403)


@functools.cache
def _asyncapi() -> dict[str, Any]:
    return build_asyncapi()


async def asyncapi_document() -> JSONResponse:
    """The order events (bus and partner webhooks) as AsyncAPI 3.0; built once per process."""
    return JSONResponse(_asyncapi())


def create_app(settings: Settings | None = None) -> FastAPI:
    app_settings = settings or get_settings()
    app = create_service_app(
        "shop", app_settings, [router, order_streams.api_router, webhook_router, internal], event_handler=event_handler,
        on_startup=_startup, title="Alexandrite shop API", loops=(notifier, webhook_dispatcher),
    )
    app.add_exception_handler(PermissionError, _not_an_owner)  # type: ignore[arg-type]  # Owner.of(staff)
    if app_settings.net.fast_paths:  # innermost: throttling, shedding and metrics stay in front of it
        app.user_middleware.append(Middleware(OrderHotPaths))
    pages.install(app)
    app.add_api_route("/asyncapi.json", asyncapi_document, methods=["GET"], include_in_schema=False,
                      dependencies=[public("the event contract is public, like /openapi.json")])
    install_contract(app, SHOP_CONTRACT)
    return app

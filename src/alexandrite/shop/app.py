"""The shop service's ASGI app."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from alexandrite.kit.app import create_service_app
from alexandrite.kit.errors import ApiError, error_body
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings, get_settings
from alexandrite.kit.throttle import PlanCache
from alexandrite.shop import handlers, pages
from alexandrite.shop.api import internal, router
from alexandrite.shop.backpressure import PricingBacklog
from alexandrite.shop.consumers import event_handler
from alexandrite.shop.notifier import run_notifier
from alexandrite.shop.tables import partners
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
    async def partner_auth(request: Request) -> Principal | None:
        key = request.headers.get("x-api-key")
        if not key:
            return None
        principal = await handlers.partner_principal(app.state.db, key)
        if principal is None:
            raise ApiError(401, "invalid_api_key", "The API key is not valid.")
        return principal

    app.state.extra_auth = partner_auth

    async def plan_of(key_hash: str) -> str | None:
        async with app.state.db.sessions() as session:
            return (await session.execute(select(partners.c.plan).where(
                partners.c.key_hash == key_hash, partners.c.active))).scalar()

    app.state.partner_plans = PlanCache(plan_of)
    app.state.backlog = PricingBacklog(app.state.peers, app.state.settings)
    uploads = app.state.settings.uploads
    app.state.parse_slots = ParseSlots(uploads.max_concurrent_parses, uploads.parse_wait_seconds)


async def _not_an_owner(_: Request, exc: PermissionError) -> JSONResponse:
    return JSONResponse(error_body("forbidden", "Only customers and partners own orders; "
                                   "staff read them in the CRM and MES."), 403)


def create_app(settings: Settings | None = None) -> FastAPI:
    app = create_service_app(
        "shop", settings or get_settings(), [router, webhook_router, internal], event_handler=event_handler,
        on_startup=_startup, title="Alexandrite shop API", loops=(notifier, webhook_dispatcher),
    )
    app.add_exception_handler(PermissionError, _not_an_owner)  # type: ignore[arg-type]  # Owner.of(staff)
    pages.install(app)
    return app

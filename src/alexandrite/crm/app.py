"""The CRM service's ASGI app."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from alexandrite.crm import list_stream, pages
from alexandrite.crm.api import internal, router, webhooks
from alexandrite.crm.consumers import event_handler
from alexandrite.crm.contract import CRM_CONTRACT
from alexandrite.crm.tables import orders
from alexandrite.kit.app import create_service_app
from alexandrite.kit.openapi import install_contract
from alexandrite.kit.settings import Settings, get_settings
from alexandrite.orders.status_gauge import run_status_gauge


async def status_gauge(app: FastAPI, stop: asyncio.Event) -> None:
    settings = app.state.settings
    await run_status_gauge(app.state.db, orders, "crm", settings.obs.status_gauge_interval_seconds, stop)


def create_app(settings: Settings | None = None) -> FastAPI:
    app = create_service_app(
        "crm", settings or get_settings(), [router, webhooks, internal], event_handler=event_handler,
        title="Alexandrite CRM API", loops=(status_gauge,),
    )
    app.include_router(list_stream.router)  # before the pages: /orders/{id} must not take it
    pages.install(app)
    install_contract(app, CRM_CONTRACT)
    return app

"""The MES service's ASGI app (the pricing workers are separate processes: see worker.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from alexandrite.kit.app import create_service_app
from alexandrite.kit.openapi import install_contract
from alexandrite.kit.settings import Settings, get_settings
from alexandrite.mes import board_stream, pages
from alexandrite.mes.api import internal, router
from alexandrite.mes.consumers import event_handler
from alexandrite.mes.contract import MES_CONTRACT
from alexandrite.mes.dashboard import attach_cache, make_cache
from alexandrite.mes.progress import QueueProbe
from alexandrite.mes.tables import production_orders
from alexandrite.mes.watchdog import run_watchdog
from alexandrite.orders.status_gauge import run_status_gauge


async def status_gauge(app: FastAPI, stop: asyncio.Event) -> None:
    settings = app.state.settings
    await run_status_gauge(app.state.db, production_orders, "mes", settings.obs.status_gauge_interval_seconds, stop)


async def sla_watchdog(app: FastAPI, stop: asyncio.Event) -> None:
    if app.state.settings.sla.run_watchdog:
        await run_watchdog(app.state.db, app.state.settings, stop)


async def _start_cache(app: FastAPI) -> None:
    """The dashboard cache, dropped after every status change this process commits (API and events)."""
    app.state.dashboard_cache = make_cache(app.state.settings)
    attach_cache(app.state.db, app.state.dashboard_cache)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = create_service_app(
        "mes", settings, [router, internal], event_handler=event_handler, title="Alexandrite MES API",
        on_startup=_start_cache, loops=(status_gauge, sla_watchdog),
    )
    app.state.dashboard_cache = None
    app.include_router(board_stream.router)  # before the pages: /orders/{id} must not take it
    pages.install(app)
    install_contract(app, MES_CONTRACT)
    # Workers on the pricing queue, for ETAs: connects lazily, closed when the app stops.
    probe = QueueProbe(settings.broker.url)
    app.state.pricing_probe = probe
    kit_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        try:
            async with kit_lifespan(application) as state:
                yield state
        finally:
            await probe.close()
            if app.state.dashboard_cache is not None:
                await app.state.dashboard_cache.close()

    app.router.lifespan_context = lifespan
    return app

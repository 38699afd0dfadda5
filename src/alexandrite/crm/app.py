"""The CRM service's ASGI app."""

from __future__ import annotations

from fastapi import FastAPI

from alexandrite.crm import pages
from alexandrite.crm.api import internal, router, webhooks
from alexandrite.crm.consumers import event_handler
from alexandrite.kit.app import create_service_app
from alexandrite.kit.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    app = create_service_app(
        "crm", settings or get_settings(), [router, webhooks, internal], event_handler=event_handler,
        title="Alexandrite CRM API",
    )
    pages.install(app)
    return app

"""A partner's webhook endpoint: which URLs are acceptable, registering, showing and removing it."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update

from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.errors import ApiError
from alexandrite.kit.settings import Settings
from alexandrite.shop.tables import partners, webhook_deliveries
from alexandrite.shop.webhooks.deliveries import STATES
from alexandrite.shop.webhooks.signing import new_secret


def check_url(url: str, settings: Settings) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise ApiError(422, "invalid_webhook_url", "The webhook URL must be an absolute http(s) URL.")
    if settings.environment == "production" and not settings.webhooks.allow_private_urls:
        if parts.scheme != "https":
            raise ApiError(422, "invalid_webhook_url", "The webhook URL must use https.")
        host = parts.hostname
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if host == "localhost" or (address is not None and not address.is_global):
            raise ApiError(422, "invalid_webhook_url", "The webhook URL must point to a public host.")
    return url


# --- registration ---------------------------------------------------------------------------------

async def register(db: Database, partner_id: uuid.UUID, url: str) -> str:
    """Set the partner's webhook URL with a fresh signing secret; returns the secret."""
    secret = new_secret()
    async with UnitOfWork(db) as uow:
        await uow.session.execute(
            update(partners).where(partners.c.id == partner_id).values(webhook_url=url, webhook_secret=secret))
        await uow.commit()
    return secret


async def unregister(db: Database, partner_id: uuid.UUID) -> None:
    async with UnitOfWork(db) as uow:
        await uow.session.execute(
            update(partners).where(partners.c.id == partner_id).values(webhook_url=None, webhook_secret=None))
        await uow.commit()


async def endpoint(db: Database, partner_id: uuid.UUID) -> dict[str, Any]:
    async with db.sessions() as session:
        url = (await session.execute(select(partners.c.webhook_url).where(partners.c.id == partner_id))).scalar()
        counts: dict[str, int] = dict((await session.execute(
            select(webhook_deliveries.c.state, func.count()).where(webhook_deliveries.c.partner_id == partner_id)
            .group_by(webhook_deliveries.c.state))).all())
    return {"url": url, "deliveries": {state: int(counts.get(state, 0)) for state in STATES}}


# --- the queue ------------------------------------------------------------------------------------

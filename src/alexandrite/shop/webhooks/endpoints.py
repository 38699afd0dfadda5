"""A partner's webhook endpoint: which URLs are acceptable, registering, showing and removing it."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update

from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.egress import EgressPolicy, RefusedUrl, Resolver
from alexandrite.kit.errors import ApiError
from alexandrite.kit.settings import Settings
from alexandrite.shop.tables import partners, webhook_deliveries
from alexandrite.shop.webhooks.deliveries import STATES
from alexandrite.shop.webhooks.signing import new_secret


def check_url(url: str, settings: Settings) -> str:
    """The URL, normalised, if its form is acceptable (https, no user-info, public host); 422 otherwise."""
    try:
        return EgressPolicy.for_webhooks(settings).check_url(url)
    except RefusedUrl as refused:
        raise ApiError(422, "invalid_webhook_url", refused.message, details={"reason": refused.reason}) from None


async def check_url_resolves(url: str, settings: Settings, resolver: Resolver | None = None) -> None:
    """At registration: a name that resolves now must resolve only to public addresses; 422 otherwise."""
    try:
        await EgressPolicy.for_webhooks(settings, resolver).check_resolves(url)
    except RefusedUrl as refused:
        raise ApiError(422, "invalid_webhook_url", refused.message, details={"reason": refused.reason}) from None


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

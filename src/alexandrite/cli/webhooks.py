"""Partner webhook deliveries: ``webhooks list|replay``; registering an endpoint for ``partner create``."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from typing import Any

from alexandrite.cli.common import Subparsers, fail
from alexandrite.kit.settings import Settings


async def _partner_id(db: Any, name: str | None) -> uuid.UUID | None:
    from sqlalchemy import select

    from alexandrite.shop.tables import partners

    if name is None:
        return None
    async with db.sessions() as session:
        found = (await session.execute(select(partners.c.id).where(partners.c.name == name))).scalar()
    if found is None:
        raise LookupError(f"no partner named {name!r}")
    return found


async def _run(settings: Settings, args: argparse.Namespace) -> str:
    from alexandrite.kit.db import Database
    from alexandrite.shop import webhooks

    db = Database(settings.database_url("shop"), pool_size=1)
    try:
        partner_id = await _partner_id(db, args.partner)
        if args.action == "list":
            items = await webhooks.list_deliveries(db, partner_id, args.state, args.limit)
            if args.json:
                return json.dumps(items, indent=2)
            lines = [f"{i['delivery_id']}\t{i['partner']}\t{i['order_id']}\t{i['event_type']}\t{i['state']}\t"
                     f"attempts={i['attempts']}\t{i['last_error'] or ''}" for i in items]
            return "\n".join([*lines, f"{len(items)} delivery(ies)"])
        ids = [uuid.UUID(value) for value in args.id] if args.id else None
        count = await webhooks.replay(db, partner_id, ids)
        return f"replayed {count} delivery(ies)"
    finally:
        await db.dispose()


async def register_endpoint(settings: Settings, api_key: str, url: str) -> str:
    """Register a partner's webhook URL (``partner create --webhook-url``); returns the signing secret."""
    from alexandrite.kit.db import Database
    from alexandrite.shop import webhooks
    from alexandrite.shop.handlers import partner_principal

    db = Database(settings.database_url("shop"), pool_size=1)
    try:
        principal = await partner_principal(db, api_key)
        if principal is None:
            raise LookupError("the partner was not found")
        checked = webhooks.check_url(url, settings)
        await webhooks.check_url_resolves(checked, settings)
        return await webhooks.register(db, uuid.UUID(principal.subject), checked)
    finally:
        await db.dispose()


def cmd_webhooks(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "replay" and not args.id and not args.all:
        return fail("say which deliveries to replay: --id DELIVERY_ID (repeatable) or --all")
    try:
        if args.id:
            [uuid.UUID(value) for value in args.id]
    except ValueError:
        return fail("--id must be a delivery id (UUID)")
    try:
        print(asyncio.run(_run(settings, args)))
    except LookupError as error:
        return fail(str(error), 1)
    return 0


def register(sub: Subparsers) -> None:
    parser = sub.add_parser("webhooks", help="list or replay partner webhook deliveries (dead letters)")
    parser.add_argument("action", choices=("list", "replay"))
    parser.add_argument("--partner", help="partner name (default: every partner)")
    parser.add_argument("--state", choices=("pending", "delivered", "dead"), help="list: only this state")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--id", action="append", help="replay: delivery id (repeatable)")
    parser.add_argument("--all", action="store_true", help="replay: every dead delivery")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=cmd_webhooks)

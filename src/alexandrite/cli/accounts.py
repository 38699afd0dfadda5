"""Accounts: ``partner create``, staff ``token``, ``seed`` (demo accounts and, with ``--orders``, bulk orders)."""

from __future__ import annotations

import argparse
import asyncio

from alexandrite.cli.common import Subparsers, fail
from alexandrite.cli.data import seed_orders_arguments, seed_orders_command
from alexandrite.kit.settings import Settings


def cmd_partner_create(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.kit.db import Database
    from alexandrite.kit.errors import ApiError
    from alexandrite.shop.handlers import create_partner
    from alexandrite.shop.webhooks import check_url, check_url_resolves

    webhook_url = None
    if args.webhook_url:  # the same checks as PUT /api/v1/webhook
        try:
            webhook_url = check_url(args.webhook_url, settings)
            asyncio.run(check_url_resolves(webhook_url, settings))
        except ApiError as error:
            return fail(error.message)

    async def _run() -> str:
        db = Database(settings.database_url("shop"), pool_size=1)
        try:
            return await create_partner(db, args.name, plan=args.plan, webhook_url=webhook_url)
        finally:
            await db.dispose()

    try:
        key = asyncio.run(_run())
    except ValueError as error:
        return fail(str(error), 1)
    print(f"partner {args.name} created; its API key (shown once, keep it secret):")
    print(key)
    if webhook_url:
        print("webhook signing secret (PUT /api/v1/webhook issues a new one):")
        from alexandrite.cli.webhooks import register_endpoint

        print(asyncio.run(register_endpoint(settings, key, webhook_url)))
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.kit.security import Principal, issue_token

    print(issue_token(settings.auth.secret_key, Principal(role=args.role, subject=args.name, name=args.name),
                      args.ttl))
    return 0


def cmd_seed(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.kit.db import Database
    from alexandrite.kit.errors import ApiError
    from alexandrite.shop.handlers import create_partner, sign_up

    async def _run() -> None:
        db = Database(settings.database_url("shop"), pool_size=1)
        try:
            try:
                await sign_up(db, "demo@alexandrite.local", "demo-password", "Demo Customer")
                print("customer demo@alexandrite.local / demo-password")
            except ApiError:
                print("customer demo@alexandrite.local exists")
            try:
                key = await create_partner(db, "demo-partner")
                print(f"partner demo-partner, API key: {key}")
            except ValueError:
                print("partner demo-partner exists")
        finally:
            await db.dispose()

    asyncio.run(_run())
    code = cmd_token_pair(settings)
    return code or seed_orders_command(settings, args)


def cmd_token_pair(settings: Settings) -> int:
    from alexandrite.kit.security import Principal, issue_token

    for role in ("seller", "operator"):
        token = issue_token(settings.auth.secret_key, Principal(role=role, subject=f"demo-{role}", name=f"demo-{role}"),
                            settings.auth.token_ttl_seconds)
        print(f"{role} token: {token}")
    return 0


def register(sub: Subparsers) -> None:
    seed = sub.add_parser("seed", help="create a demo customer, partner and staff tokens (and --orders N orders)")
    seed_orders_arguments(seed)
    seed.set_defaults(func=cmd_seed)

    partner = sub.add_parser("partner", help="partner accounts")
    partner_sub = partner.add_subparsers(dest="partner_command", required=True)
    create = partner_sub.add_parser("create", help="create a partner and print its API key once")
    create.add_argument("name")
    create.add_argument("--plan", default="standard")
    create.add_argument("--webhook-url")
    create.set_defaults(func=cmd_partner_create)

    token = sub.add_parser("token", help="issue a bearer token for a staff member")
    token.add_argument("name")
    token.add_argument("--role", choices=("seller", "operator", "admin"), required=True)
    token.add_argument("--ttl", type=int, default=12 * 3600)
    token.set_defaults(func=cmd_token)

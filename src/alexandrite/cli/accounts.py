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
    from alexandrite.kit.security import Principal
    from alexandrite.kit.tokens import issue_token

    if args.name == "revoke":
        return cmd_token_revoke(settings, args)
    if args.target is not None:
        return fail("usage: alexandrite token --role ROLE NAME | alexandrite token revoke JTI|--user EMAIL|NAME")
    if args.role is None:
        return fail("--role is required to issue a token")
    ttl = args.ttl if args.ttl is not None else 12 * 3600
    if not 0 < ttl <= settings.auth.max_token_ttl_seconds:
        return fail(f"--ttl must be between 1 and {settings.auth.max_token_ttl_seconds} seconds")
    print(issue_token(settings, Principal(role=args.role, subject=args.name, name=args.name), ttl))
    return 0


def cmd_token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """``token revoke JTI`` (one token) or ``token revoke --user EMAIL|STAFF_NAME`` (all of them so far)."""
    from alexandrite.kit.redis_clients import redis_client
    from alexandrite.kit.revocation import revoke_subject, revoke_token

    if (args.target is None) == (args.user is None):
        return fail("give either a token id (jti) or --user EMAIL|STAFF_NAME")

    async def _run() -> str:
        redis = redis_client(settings)
        try:
            if args.target is not None:
                # unknown expiry: kept as long as any token can live
                import time

                await revoke_token(redis, settings.redis.prefix, args.target,
                                   time.time() + settings.auth.max_token_ttl_seconds)
                return f"token {args.target} revoked"
            subjects = await _subjects_of(settings, args.user)
            for role, subject in subjects:
                await revoke_subject(redis, settings.redis.prefix, role, subject, settings.auth.max_token_ttl_seconds)
            return f"every token of {args.user} issued until now revoked"
        finally:
            await redis.aclose()

    try:
        print(asyncio.run(_run()))
    except LookupError as error:
        return fail(str(error), 1)
    return 0


async def _subjects_of(settings: Settings, user: str) -> list[tuple[str, str]]:
    """(role, subject) pairs a user's tokens carry: a customer by e-mail, staff by name (every staff role)."""
    if "@" not in user:
        from alexandrite.kit.security import STAFF_ROLES

        return [(role, user) for role in STAFF_ROLES]
    from alexandrite.kit.db import Database
    from alexandrite.shop import repository
    from alexandrite.shop.domain import normalise_email

    db = Database(settings.database_url("shop"), pool_size=1)
    try:
        async with db.sessions() as session:
            row = await repository.customer_by_email(session, normalise_email(user))
    finally:
        await db.dispose()
    if row is None:
        raise LookupError(f"no customer with the e-mail {user}")
    return [("customer", str(row.id))]


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
    from alexandrite.kit.security import Principal
    from alexandrite.kit.tokens import issue_token

    for role in ("seller", "operator"):
        token = issue_token(settings, Principal(role=role, subject=f"demo-{role}", name=f"demo-{role}"),
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

    token = sub.add_parser(
        "token", help="issue a staff bearer token (token --role ROLE NAME) or revoke tokens "
                      "(token revoke JTI | token revoke --user EMAIL|STAFF_NAME)")
    token.add_argument("name", help="the staff member's name, or 'revoke'")
    token.add_argument("target", nargs="?", help="with 'revoke': the token id (jti) to revoke")
    token.add_argument("--role", choices=("seller", "operator", "admin"))
    token.add_argument("--user", help="with 'revoke': every token of this customer e-mail or staff name so far")
    token.add_argument("--ttl", type=int, default=None,
                       help="seconds (default 12 h, at most ALEX_MAX_TOKEN_TTL_SECONDS)")
    token.set_defaults(func=cmd_token)

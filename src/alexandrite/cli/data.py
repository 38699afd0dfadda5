"""Data at scale: ``maintain`` (MES order partitions ahead of time, old months archived or restored) and the
``--orders N`` part of ``seed``."""

from __future__ import annotations

import argparse
import asyncio
from datetime import date

from alexandrite.cli.common import Subparsers, fail
from alexandrite.kit.settings import Settings


async def _maintain(settings: Settings, args: argparse.Namespace, archive: list[date],
                    restore: list[date]) -> list[str]:
    from alexandrite.kit.db import make_engine
    from alexandrite.mes import partitions

    lines: list[str] = []
    engine = make_engine(settings.database_url("mes"), pool_size=1)
    try:
        async with engine.begin() as conn:
            for month in restore:
                await partitions.restore_month(conn, month)
                lines.append(f"restored {partitions.partition_name(month)}")
            for month in archive:
                await partitions.archive_month(conn, month)
                lines.append(f"archived {partitions.partition_name(month)}")
            if not (archive or restore):
                report = await partitions.maintain(
                    conn, months_ahead=args.months_ahead, archive_after_months=args.archive_after_months)
                lines += [f"created {name}" for name in report.created]
                lines += [f"archived {name}" for name in report.archived]
            if args.list:
                for part in await partitions.list_partitions(conn):
                    rows = "?" if part.rows < 0 else f"~{part.rows:,}"
                    lines.append(f"{part.schema}.{part.name}\t{rows} rows")
    finally:
        await engine.dispose()
    return lines


def cmd_maintain(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.mes.partitions import parse_month

    if args.months_ahead < 0 or args.archive_after_months < 0:
        return fail("--months-ahead and --archive-after-months must not be negative")
    try:
        archive = [parse_month(m) for m in args.archive or ()]
        restore = [parse_month(m) for m in args.restore or ()]
    except ValueError as error:
        return fail(str(error))
    try:
        lines = asyncio.run(_maintain(settings, args, archive, restore))
    except LookupError as error:
        return fail(str(error.args[0] if error.args else error))
    print("\n".join(lines) if lines else "partitions up to date")
    return 0


def register(sub: Subparsers) -> None:
    maintain = sub.add_parser("maintain", help="create future MES order partitions, archive old months")
    maintain.add_argument("--months-ahead", type=int, default=None,
                          help="months after this one to create (default: ALEX_PARTITION_MONTHS_AHEAD, 3)")
    maintain.add_argument("--archive-after-months", type=int, default=None,
                          help="archive months that ended this many months ago, 0: never "
                               "(default: ALEX_PARTITION_ARCHIVE_AFTER_MONTHS, 24)")
    maintain.add_argument("--archive", action="append", metavar="YYYY-MM", help="archive this month now (repeatable)")
    maintain.add_argument("--restore", action="append", metavar="YYYY-MM", help="bring an archived month back")
    maintain.add_argument("--list", action="store_true", help="list live and archived partitions")
    maintain.set_defaults(func=_with_defaults)


def _with_defaults(settings: Settings, args: argparse.Namespace) -> int:
    if args.months_ahead is None:
        args.months_ahead = settings.db.partition_months_ahead
    if args.archive_after_months is None:
        args.archive_after_months = settings.db.partition_archive_after_months
    return cmd_maintain(settings, args)


def seed_orders_arguments(seed: argparse.ArgumentParser) -> None:
    seed.add_argument("--orders", type=int, default=0, help="also load N generated orders into every service "
                      "(COPY; most old and closed, a few thousand in work, over two years)")
    seed.add_argument("--in-work", type=int, help="how many of them are in work (default: N/100, at most 5,000)")
    seed.add_argument("--years", type=float, default=2.0, help="history length (default 2)")
    seed.add_argument("--random-seed", type=int, default=7)


def seed_orders_command(settings: Settings, args: argparse.Namespace) -> int:
    """The ``--orders`` part of ``alexandrite seed`` (0: nothing to do)."""
    from alexandrite.devtools.seed_orders import Plan, seed_orders

    if args.orders == 0:
        return 0
    if args.orders < 0 or (args.in_work is not None and args.in_work < 0) or args.years <= 0:
        return fail("--orders and --in-work must not be negative, --years must be positive")
    plan = Plan.make(args.orders, in_work=args.in_work, years=args.years, seed=args.random_seed)
    elapsed = seed_orders(settings, plan)
    print(f"seeded {plan.orders:,} orders ({plan.in_work:,} in work) in {elapsed:.1f} s")
    return 0

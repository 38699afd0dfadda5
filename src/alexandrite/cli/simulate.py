"""``simulate``: drive generated ring orders through the running platform and report stage latencies."""

from __future__ import annotations

import argparse
import asyncio

from alexandrite.cli.common import Subparsers, fail
from alexandrite.kit.settings import Settings


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.devtools.simulate import format_report, simulate

    if args.orders < 1:
        return fail("--orders must be at least 1")
    outcomes, elapsed = asyncio.run(simulate(settings, args.orders, concurrency=args.concurrency,
                                             close=args.close, timeout=args.timeout, seed=args.seed))
    print(format_report(outcomes, elapsed))
    return 1 if any(o.error for o in outcomes) else 0


def register(sub: Subparsers) -> None:
    simulate = sub.add_parser("simulate", help="drive generated ring orders through the running platform")
    simulate.add_argument("--orders", type=int, required=True)
    simulate.add_argument("--concurrency", type=int, default=16)
    simulate.add_argument("--close", action="store_true", help="go all the way to CLOSED")
    simulate.add_argument("--timeout", type=float, default=300.0, help="seconds an order may take per stage")
    simulate.add_argument("--seed", type=int)
    simulate.set_defaults(func=cmd_simulate)

"""The ``alexandrite`` command line. Each module of this package registers its commands the same way:
``register(subparsers)`` adds them, each with ``func(settings, args) -> exit code``. Commands are thin:
they parse, call the services' or tools' functions, and print."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from alexandrite.cli import (
    accounts,
    contract,
    data,
    ha,
    messaging,
    observability,
    operations,
    run,
    simulate,
    webhooks,
)
from alexandrite.cli.common import fail
from alexandrite.kit.settings import get_settings

COMMAND_MODULES = (run, accounts, data, messaging, webhooks, simulate, observability, operations, ha, contract)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alexandrite",
        description="The alexandrite command line: run, migrate, seed, partners, tokens, dead letters, simulate, "
                    "contract.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValueError as error:
        return fail(str(error))
    try:
        return int(args.func(settings, args) or 0)
    except KeyboardInterrupt:
        return 130
    except (OSError, ConnectionError) as error:
        return fail(f"{type(error).__name__}: {error}", 1)


if __name__ == "__main__":
    sys.exit(main())

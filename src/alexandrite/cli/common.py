"""What every command shares: how a command fails, argument types."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from alexandrite.kit.settings import Settings

Command = Callable[[Settings, argparse.Namespace], int]
Subparsers = Any  # argparse's _SubParsersAction


def fail(message: str, code: int = 2) -> int:
    """Print ``alexandrite: message`` on stderr; 2 for a bad command line, 1 for a failure while running."""
    print(f"alexandrite: {message}", file=sys.stderr)
    return code


def port(value: str) -> int:
    number = int(value)
    if not 1024 <= number <= 65535:
        raise argparse.ArgumentTypeError("port must be between 1024 and 65535")
    return number


def guarded(func: Command) -> Command:
    """Operations failures (tool missing, cluster refused, not found) end with a message, not a traceback."""
    def run(settings: Settings, args: argparse.Namespace) -> int:
        try:
            return int(func(settings, args))
        except (ValueError, LookupError, RuntimeError, TimeoutError) as error:
            return fail(str(error), 1)
    return run

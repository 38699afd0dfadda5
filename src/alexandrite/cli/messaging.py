"""Dead letters: ``dlq list|replay``."""

from __future__ import annotations

import argparse
import asyncio
import json

from alexandrite.cli.common import Subparsers, fail
from alexandrite.kit.settings import Settings


def cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.kit.messaging.dlq import list_dead_letters, replay

    queues = [args.queue] if args.queue else None
    if args.action == "list":
        letters = asyncio.run(list_dead_letters(settings.broker.url, queues))
        if args.json:
            print(json.dumps([letter.as_dict() for letter in letters], indent=2, default=str))
        else:
            for letter in letters:
                print(f"{letter.queue}\t{letter.message_id}\t{letter.type}\t{letter.order_id}\t{letter.error}")
            print(f"{len(letters)} dead letter(s)")
        return 0
    ids = set(args.id) if args.id else None
    if ids is None and not args.all:
        return fail("say which messages to replay: --id MESSAGE_ID (repeatable) or --all")
    count = asyncio.run(replay(settings.broker.url, queues, ids))
    print(f"replayed {count} message(s)")
    return 0


def register(sub: Subparsers) -> None:
    dlq = sub.add_parser("dlq", help="inspect or replay dead-lettered messages")
    dlq.add_argument("action", choices=("list", "replay"))
    dlq.add_argument("--queue", help="consumer queue, e.g. crm.events or mes.pricing.jobs")
    dlq.add_argument("--id", action="append", help="message id to replay (repeatable)")
    dlq.add_argument("--all", action="store_true", help="replay every dead letter")
    dlq.add_argument("--json", action="store_true")
    dlq.set_defaults(func=cmd_dlq)

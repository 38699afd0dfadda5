"""Observability: the SLA ``watchdog`` and the local ``smtp-sink``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from alexandrite.cli.common import Subparsers
from alexandrite.kit.settings import Settings


def cmd_watchdog(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.kit.db import Database
    from alexandrite.kit.logs import configure_logging
    from alexandrite.kit.side_port import SidePortServer
    from alexandrite.mes.watchdog import run_watchdog, scan, slas_from

    configure_logging("mes", level=settings.obs.log_level, json_output=settings.obs.log_json)

    async def _run() -> int:
        db = Database(settings.database_url("mes"), pool_size=2)
        try:
            if args.once:
                reported = await scan(db, slas_from(settings))
                for item in reported:
                    print(f"delayed\t{item.order_id}\t{item.stage}\tsince {item.since.isoformat()}")
                print(f"{len(reported)} new delay(s) reported")
                return 0
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            side = SidePortServer(settings.net.host, args.metrics_port, lambda: True) if args.metrics_port else None
            try:
                await run_watchdog(db, settings, stop)
            finally:
                if side is not None:
                    side.close()
            return 0
        finally:
            await db.dispose()

    return asyncio.run(_run())


def cmd_smtp_sink(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.devtools.smtp_sink import SmtpSink

    port = args.port or settings.mail.smtp_port
    sink = SmtpSink(args.host or settings.mail.smtp_host, port, Path(args.dir))
    stopping: list[Any] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    with sink:
        print(f"SMTP sink on {args.host or settings.mail.smtp_host}:{port}, writing messages to {args.dir}", flush=True)
        try:
            while not stopping:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


def register(sub: Subparsers) -> None:
    watchdog = sub.add_parser("watchdog", help="find orders past their stage SLA and report each delay once")
    watchdog.add_argument("--once", action="store_true", help="one scan, print what was reported, exit")
    watchdog.add_argument("--metrics-port", type=int, help="serve /metrics and /health/live on this port")
    watchdog.set_defaults(func=cmd_watchdog)

    sink = sub.add_parser("smtp-sink", help="a local SMTP server that keeps every e-mail (development, tests)")
    sink.add_argument("--host")
    sink.add_argument("--port", type=int)
    sink.add_argument("--dir", default="var/mail", help="folder for the received .eml files")
    sink.set_defaults(func=cmd_smtp_sink)

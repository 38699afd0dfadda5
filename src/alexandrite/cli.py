"""The ``alexandrite`` command line: run, migrate, seed, partners, tokens, dead letters, simulate."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from alexandrite.kit.settings import SERVICES, Settings, get_settings
from alexandrite.scale_cli import add_maintain_parser, seed_orders_arguments, seed_orders_command


def _fail(message: str, code: int = 2) -> int:
    print(f"alexandrite: {message}", file=sys.stderr)
    return code


# --- prestart -----------------------------------------------------------------------------

def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.kit.messaging.topology import setup_topology
    from alexandrite.kit.migrations import create_databases, upgrade, wait_for_postgres

    services = tuple(getattr(args, "service", None) or SERVICES)  # one service: its own database server
    asyncio.run(wait_for_postgres(settings))
    created = asyncio.run(create_databases(settings, services))
    for name in created:
        print(f"created database {name}")
    for service in services:
        upgrade(service, settings)
        print(f"migrated {settings.database_name(service)} to head")
    asyncio.run(setup_topology(settings))
    print("declared RabbitMQ topology")
    return 0


# --- processes ----------------------------------------------------------------------------

def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from alexandrite.kit.shutdown import serve

    port = args.port or settings.service_port(args.service)
    options = dict(factory=True, host=args.host or settings.host, port=port, log_level="warning",
                   access_log=False, timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
                   timeout_keep_alive=30)  # longer than clients' idle expiry: no close-while-reused races
    if args.workers > 1:  # uvicorn's supervisor: its children stop without the readiness drain
        uvicorn.run(f"alexandrite.{args.service}.app:create_app", workers=args.workers, **options)  # type: ignore[arg-type]
    else:
        serve(f"alexandrite.{args.service}.app:create_app", drain_seconds=settings.shutdown_drain_seconds,
              **options)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.mes.worker import run_worker

    asyncio.run(run_worker(settings, metrics_port=args.metrics_port, worker_name=args.name))
    return 0


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "alexandrite", *argv], env=env, start_new_session=True)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    if args.replicas < 0 or args.workers < 0:
        return _fail("--replicas and --workers cannot be negative")
    if args.ha:  # clusters first (ops/ha), then migrations and the platform on them
        from alexandrite.ops.ha.up import run_ha_up

        return run_ha_up(settings, args)
    if not args.no_migrate and cmd_migrate(settings, args) != 0:
        return 1
    if args.replicas:
        from alexandrite.ops.replicas import run_replicas

        return run_replicas(settings, args.replicas, args.workers)
    env = dict(os.environ)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    for service in SERVICES:
        processes.append((f"{service} api", _spawn(["serve", service], env)))
    for index in range(args.workers):
        processes.append((f"pricing worker {index + 1}", _spawn(
            ["worker", "--metrics-port", str(settings.worker_metrics_port + index), "--name", f"worker-{index + 1}"],
            env)))
    print("\nAlexandrite is starting:")
    for service in SERVICES:
        url = settings.service_url(service)
        print(f"  {service:5} {url}/docs   metrics {url}/metrics")
    print(f"  pages: shop {settings.shop_url}/  crm {settings.crm_url}/orders  "
          f"mes {settings.mes_url}/production/dashboard")
    for index in range(args.workers):
        print(f"  worker {index + 1} metrics http://{settings.host}:{settings.worker_metrics_port + index}/metrics")
    print("Ctrl-C stops everything.\n", flush=True)

    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    code = 0
    while not stopping:
        for name, process in processes:
            if process.poll() is not None:
                print(f"{name} exited with {process.returncode}; stopping the rest", file=sys.stderr)
                stopping, code = True, 1
                break
        time.sleep(0.5)
    for _, process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for _, process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
    print("stopped")
    return code


# --- accounts -----------------------------------------------------------------------------

def cmd_partner_create(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.kit.db import Database
    from alexandrite.kit.errors import ApiError
    from alexandrite.shop.handlers import create_partner
    from alexandrite.shop.webhooks import check_url

    if args.webhook_url:
        try:
            check_url(args.webhook_url, settings)
        except ApiError as error:
            return _fail(error.message)

    async def _run() -> str:
        db = Database(settings.database_url("shop"), pool_size=1)
        try:
            return await create_partner(db, args.name, plan=args.plan, webhook_url=args.webhook_url)
        finally:
            await db.dispose()

    try:
        key = asyncio.run(_run())
    except ValueError as error:
        return _fail(str(error), 1)
    print(f"partner {args.name} created; its API key (shown once, keep it secret):")
    print(key)
    if args.webhook_url:
        print("webhook signing secret (PUT /api/v1/webhook issues a new one):")
        from alexandrite.webhooks_cli import register_endpoint

        print(asyncio.run(register_endpoint(settings, key, args.webhook_url)))
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.kit.security import Principal, issue_token

    print(issue_token(settings.secret_key, Principal(role=args.role, subject=args.name, name=args.name),
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
        token = issue_token(settings.secret_key, Principal(role=role, subject=f"demo-{role}", name=f"demo-{role}"),
                            settings.token_ttl_seconds)
        print(f"{role} token: {token}")
    return 0


# --- dead letters -------------------------------------------------------------------------

def cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.kit.messaging.dlq import list_dead_letters, replay

    queues = [args.queue] if args.queue else None
    if args.action == "list":
        letters = asyncio.run(list_dead_letters(settings.amqp_url, queues))
        if args.json:
            print(json.dumps([letter.as_dict() for letter in letters], indent=2, default=str))
        else:
            for letter in letters:
                print(f"{letter.queue}\t{letter.message_id}\t{letter.type}\t{letter.order_id}\t{letter.error}")
            print(f"{len(letters)} dead letter(s)")
        return 0
    ids = set(args.id) if args.id else None
    if ids is None and not args.all:
        return _fail("say which messages to replay: --id MESSAGE_ID (repeatable) or --all")
    count = asyncio.run(replay(settings.amqp_url, queues, ids))
    print(f"replayed {count} message(s)")
    return 0


# --- simulation ---------------------------------------------------------------------------

def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.simulate import format_report, simulate

    if args.orders < 1:
        return _fail("--orders must be at least 1")
    outcomes, elapsed = asyncio.run(simulate(settings, args.orders, concurrency=args.concurrency,
                                             close=args.close, timeout=args.timeout, seed=args.seed))
    print(format_report(outcomes, elapsed))
    return 1 if any(o.error for o in outcomes) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alexandrite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="migrate, then run all three APIs, their relays and N pricing workers")
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--no-migrate", action="store_true")
    up.add_argument("--replicas", type=int, default=0,
                    help="N instances of each API behind HAProxy on the public ports (0: one, no load balancer)")
    from alexandrite.ops.ha.commands import add_up_arguments as add_ha_arguments

    add_ha_arguments(up)
    up.set_defaults(func=cmd_up)

    serve = sub.add_parser("serve", help="run one service's API (with its outbox relay and event consumer)")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run one pricing worker")
    worker.add_argument("--metrics-port", type=int)
    worker.add_argument("--name")
    worker.set_defaults(func=cmd_worker)

    migrate = sub.add_parser("migrate", help="create the databases, migrate them, declare the queues")
    migrate.add_argument("--service", action="append", choices=SERVICES,
                         help="only this service's database (repeatable; default: all three)")
    migrate.set_defaults(func=cmd_migrate)
    seed = sub.add_parser("seed", help="create a demo customer, partner and staff tokens (and --orders N orders)")
    seed_orders_arguments(seed)
    seed.set_defaults(func=cmd_seed)
    add_maintain_parser(sub)

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

    dlq = sub.add_parser("dlq", help="inspect or replay dead-lettered messages")
    dlq.add_argument("action", choices=("list", "replay"))
    dlq.add_argument("--queue", help="consumer queue, e.g. crm.events or mes.pricing.jobs")
    dlq.add_argument("--id", action="append", help="message id to replay (repeatable)")
    dlq.add_argument("--all", action="store_true", help="replay every dead letter")
    dlq.add_argument("--json", action="store_true")
    dlq.set_defaults(func=cmd_dlq)

    simulate = sub.add_parser("simulate", help="drive generated ring orders through the running platform")
    simulate.add_argument("--orders", type=int, required=True)
    simulate.add_argument("--concurrency", type=int, default=16)
    simulate.add_argument("--close", action="store_true", help="go all the way to CLOSED")
    simulate.add_argument("--timeout", type=float, default=300.0, help="seconds an order may take per stage")
    simulate.add_argument("--seed", type=int)
    simulate.set_defaults(func=cmd_simulate)

    from alexandrite import webhooks_cli

    webhooks_cli.register(sub)

    from alexandrite.obs_commands import register as register_observability

    register_observability(sub)

    from alexandrite.ops.commands import add_operations_commands

    add_operations_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValueError as error:
        return _fail(str(error))
    try:
        return int(args.func(settings, args) or 0)
    except KeyboardInterrupt:
        return 130
    except (OSError, ConnectionError) as error:
        return _fail(f"{type(error).__name__}: {error}", 1)


if __name__ == "__main__":
    sys.exit(main())

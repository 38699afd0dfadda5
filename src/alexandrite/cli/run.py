"""Running the platform: ``migrate`` (prestart), ``serve`` one API, ``worker``, ``up`` everything."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

from alexandrite.cli.common import Subparsers, fail
from alexandrite.cli.ha import add_up_arguments as add_ha_arguments
from alexandrite.kit.local_secrets import secret_environment
from alexandrite.kit.settings import SERVICES, Settings


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


def server_options(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """uvicorn options. X-Forwarded-For is read only from ``ALEX_TRUSTED_PROXIES`` (none by default),
    never from uvicorn's built-in loopback trust: a spoofed header must not give a fresh limit bucket."""
    port = args.port or settings.service_port(args.service)
    proxies = [p.strip() for p in settings.net.trusted_proxies.split(",") if p.strip()]
    return dict(factory=True, host=args.host or settings.net.host, port=port, log_level="warning",
                access_log=False, timeout_graceful_shutdown=settings.shutdown.timeout_seconds,
                timeout_keep_alive=30,  # longer than clients' idle expiry: no close-while-reused races
                proxy_headers=bool(proxies), forwarded_allow_ips=",".join(proxies) or None)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from alexandrite.kit.header_limit import server_options as head_limit
    from alexandrite.kit.shutdown import serve

    options = server_options(settings, args)
    if args.workers > 1:  # uvicorn's supervisor: its children stop without the readiness drain
        uvicorn.run(f"alexandrite.{args.service}.app:create_app", workers=args.workers, **options,
                    **head_limit(settings))
    else:
        serve(f"alexandrite.{args.service}.app:create_app", drain_seconds=settings.shutdown.drain_seconds,
              **options, **head_limit(settings))
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.kit.loops import run_process
    from alexandrite.mes.worker import run_worker

    run_process(run_worker(settings, metrics_port=args.metrics_port, worker_name=args.name))
    return 0


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "alexandrite", *argv], env=env, start_new_session=True)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    if args.replicas < 0 or args.workers < 0:
        return fail("--replicas and --workers cannot be negative")
    if args.ha:  # clusters first (ops/ha), then migrations and the platform on them
        from alexandrite.ops.ha.up import run_ha_up

        return run_ha_up(settings, args)
    if not args.no_migrate and cmd_migrate(settings, args) != 0:
        return 1
    if args.replicas:
        from alexandrite.ops.replicas import run_replicas

        return run_replicas(settings, args.replicas, args.workers)
    env = dict(os.environ)
    env.update(secret_environment(settings))  # every process of this run: the same (generated) secrets
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    for service in SERVICES:
        processes.append((f"{service} api", _spawn(["serve", service], env)))
    for index in range(args.workers):
        processes.append((f"pricing worker {index + 1}", _spawn(
            ["worker", "--metrics-port", str(settings.net.worker_metrics_port + index),
             "--name", f"worker-{index + 1}"], env)))
    print("\nAlexandrite is starting:")
    for service in SERVICES:
        url = settings.service_url(service)
        print(f"  {service:5} {url}/docs   metrics {url}/metrics (Bearer ALEX_METRICS_TOKEN)")
    print(f"  pages: shop {settings.net.shop_url}/  crm {settings.net.crm_url}/orders  "
          f"mes {settings.net.mes_url}/production/dashboard")
    for index in range(args.workers):
        port = settings.net.worker_metrics_port + index
        print(f"  worker {index + 1} metrics http://{settings.net.host}:{port}/metrics")
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


def register(sub: Subparsers) -> None:
    up = sub.add_parser("up", help="migrate, then run all three APIs, their relays and N pricing workers")
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--no-migrate", action="store_true")
    up.add_argument("--replicas", type=int, default=0,
                    help="N instances of each API behind HAProxy on the public ports (0: one, no load balancer)")
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

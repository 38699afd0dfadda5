"""Isolated resources for tests and benchmarks: own databases, RabbitMQ vhost, Redis prefix, storage.

Everything :func:`provision` creates, :func:`deprovision` drops, so runs never see each
other's data. Needs ``rabbitmqctl`` on the machine (vhosts are created with it).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import uuid
from pathlib import Path

from redis.exceptions import RedisError

from alexandrite.kit.messaging.topology import setup_topology
from alexandrite.kit.migrations import create_databases, drop_databases, upgrade
from alexandrite.kit.redis_clients import redis_client
from alexandrite.kit.settings import SERVICES, Settings


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


def sandbox_settings(root: Path, token: str | None = None, **overrides: object) -> Settings:
    token = token or uuid.uuid4().hex[:10]
    values: dict[str, object] = {
        "environment": "test",
        "db_prefix": f"alextest_{token}",
        "amqp_url": f"amqp://guest:guest@127.0.0.1:5672/alextest-{token}",
        "redis_prefix": f"alextest:{token}",
        "storage_dir": Path(root) / "storage",
        "retry_delays_ms": (100, 300, 1000),
        "relay_idle_seconds": 1.0,  # the safety poll: relays wake on notifications
        "db_pool_size": 5,
        "log_level": "WARNING",
        # Tests drive many requests from one address and one customer: limits only where a test sets them.
        "rate_limit_per_ip": 1_000_000,
        "rate_limit_per_customer": 1_000_000,
        "rate_limit_per_staff": 1_000_000,
        "failed_auth_limit": 1_000_000,
        "shutdown_drain_seconds": 0.5,
        # Each run its own secrets (never the published defaults); children get them through sandbox_env.
        "secret_key": secrets.token_urlsafe(48),
        "service_token": secrets.token_urlsafe(48),
        "carrier_webhook_secret": secrets.token_urlsafe(48),
        "metrics_token": secrets.token_urlsafe(48),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type, call-arg]


def sandbox_env(settings: Settings, base: dict[str, str]) -> dict[str, str]:
    """Environment variables that make a child process use the sandbox's resources."""
    env = {k: v for k, v in base.items() if not k.startswith("ALEX_")}
    env.update(
        {
            "ALEX_ENVIRONMENT": settings.environment,
            "ALEX_DB_PREFIX": settings.db.prefix,
            "ALEX_AMQP_URL": settings.broker.url,
            "ALEX_REDIS_PREFIX": settings.redis.prefix,
            "ALEX_STORAGE_DIR": str(settings.uploads.storage_dir),
            "ALEX_RETRY_DELAYS_MS": "[" + ",".join(str(d) for d in settings.broker.retry_delays_ms) + "]",
            "ALEX_RELAY_IDLE_SECONDS": str(settings.broker.relay_idle_seconds),
            "ALEX_DB_POOL_SIZE": str(settings.db.pool_size),  # children share one PostgreSQL with the rest
            "ALEX_SECRET_KEY": settings.auth.secret_key,
            "ALEX_SERVICE_TOKEN": settings.auth.service_token,
            "ALEX_CARRIER_WEBHOOK_SECRET": settings.auth.carrier_webhook_secret,
            "ALEX_METRICS_TOKEN": settings.obs.metrics_token,
            "ALEX_RATE_LIMIT_PER_IP": str(settings.throttle.per_ip),
            "ALEX_RATE_LIMIT_PER_CUSTOMER": str(settings.throttle.per_customer),
            "ALEX_RATE_LIMIT_PER_STAFF": str(settings.throttle.per_staff),
            "ALEX_FAILED_AUTH_LIMIT": str(settings.throttle.failed_auth_limit),
            "ALEX_RATE_LIMIT_PLANS": json.dumps(settings.throttle.plans),
            "ALEX_SHUTDOWN_DRAIN_SECONDS": str(settings.shutdown.drain_seconds),
        }
    )
    return env


def provision(settings: Settings) -> None:
    vhost = settings.broker.url.rsplit("/", 1)[1]
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    asyncio.run(create_databases(settings))
    for service in SERVICES:
        upgrade(service, settings)
    asyncio.run(setup_topology(settings))


async def _delete_keys(settings: Settings) -> None:
    client = redis_client(settings, timeout=10)
    try:
        async for key in client.scan_iter(match=f"{settings.redis.prefix}:*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()


def deprovision(settings: Settings) -> None:
    vhost = settings.broker.url.rsplit("/", 1)[1]
    try:
        asyncio.run(drop_databases(settings))
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)
        try:
            asyncio.run(_delete_keys(settings))
        except (RedisError, OSError):
            pass
        shutil.rmtree(settings.uploads.storage_dir, ignore_errors=True)

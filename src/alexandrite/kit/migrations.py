"""Database creation and Alembic migrations, one history per service."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, MetaData, pool
from sqlalchemy.ext.asyncio import create_async_engine

from alexandrite.kit.settings import SERVICES, Service, Settings

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def wait_for_postgres(settings: Settings, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            conn = await asyncpg.connect(plain_dsn(settings.admin_database_url()), timeout=5)
            await conn.close()
            return
        except (OSError, asyncpg.PostgresError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def create_databases(settings: Settings, services: tuple[Service, ...] = SERVICES) -> list[str]:
    conn = await asyncpg.connect(plain_dsn(settings.admin_database_url()))
    created = []
    try:
        for service in services:
            name = settings.database_name(service)
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
                created.append(name)
    finally:
        await conn.close()
    return created


async def drop_databases(settings: Settings, services: tuple[Service, ...] = SERVICES) -> None:
    conn = await asyncpg.connect(plain_dsn(settings.admin_database_url()))
    try:
        for service in services:
            await conn.execute(f'DROP DATABASE IF EXISTS "{settings.database_name(service)}" WITH (FORCE)')
    finally:
        await conn.close()


def alembic_config(service: Service, settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(PACKAGE_ROOT / service / "migrations"))
    config.set_main_option("sqlalchemy.url", settings.database_url(service).replace("%", "%%"))
    return config


def upgrade(service: Service, settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, settings), revision)


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's Alembic ``env.py`` (online, async engine)."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic config has no sqlalchemy.url")

    def _run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()

    async def _main() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(_run)
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(_main())

"""Test environment: each run gets its own databases, RabbitMQ vhost, Redis prefix and storage.

Real PostgreSQL, RabbitMQ and Redis on their standard local ports; everything this run
creates is dropped at the end, so runs never see each other's data.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from alexandrite.devtools.sandbox import deprovision, provision, sandbox_env, sandbox_settings
from alexandrite.kit.settings import Settings


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    value = sandbox_settings(tmp_path_factory.mktemp("alexandrite"))
    try:
        provision(value)  # a half-made sandbox is dropped too
        yield value
    finally:
        deprovision(value)


@pytest.fixture(scope="session")
def test_env(settings: Settings) -> dict[str, str]:
    """Environment variables that make a child process use this run's resources."""
    return sandbox_env(settings, dict(os.environ))


@pytest.fixture
async def db_factory(settings: Settings) -> AsyncIterator[object]:
    from alexandrite.kit.db import Database

    created: list[Database] = []

    def _make(service: str) -> Database:
        db = Database(settings.database_url(service), pool_size=3)  # type: ignore[arg-type]
        created.append(db)
        return db

    yield _make
    for db in created:
        await db.dispose()

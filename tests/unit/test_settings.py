from __future__ import annotations

import pytest
from pydantic import ValidationError

from alexandrite.kit.settings import Settings


def test_local_defaults_work_without_environment() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url("mes").endswith("/alexandrite_mes")
    assert settings.database_url("shop", replica=True) == settings.database_url("shop")


def test_production_refuses_default_secrets() -> None:
    with pytest.raises(ValidationError, match="ALEX_SECRET_KEY"):
        Settings(environment="production", _env_file=None)  # type: ignore[call-arg]


def test_production_starts_with_real_secrets() -> None:
    settings = Settings(environment="production", secret_key="k" * 40, service_token="t" * 40,
                        carrier_webhook_secret="c" * 40, _env_file=None)  # type: ignore[call-arg]
    assert settings.environment == "production"


def test_replica_dsn_routes_reads() -> None:
    settings = Settings(pg_replica_dsn="postgresql+asyncpg://postgres@127.0.0.1:5433", _env_file=None)  # type: ignore[call-arg]
    assert ":5433/alexandrite_crm" in settings.database_url("crm", replica=True)

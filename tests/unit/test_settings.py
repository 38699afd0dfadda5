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
                        carrier_webhook_secret="c" * 40, metrics_token="m" * 40,
                        _env_file=None)  # type: ignore[call-arg]
    assert settings.environment == "production"


def test_replica_dsn_routes_reads() -> None:
    settings = Settings(pg_replica_dsn="postgresql+asyncpg://postgres@127.0.0.1:5433", _env_file=None)  # type: ignore[call-arg]
    assert ":5433/alexandrite_crm" in settings.database_url("crm", replica=True)


def test_every_flat_environment_variable_reaches_its_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALEX_DB_POOL_SIZE", "7")
    monkeypatch.setenv("ALEX_RATE_LIMIT_PER_IP", "42")
    monkeypatch.setenv("ALEX_RATE_LIMIT_PLANS", '{"gold": 5}')
    monkeypatch.setenv("ALEX_RETRY_DELAYS_MS", "[10, 20]")
    monkeypatch.setenv("ALEX_WEBHOOK_ALLOW_PRIVATE_URLS", "true")
    monkeypatch.setenv("ALEX_PRICING_CONFIG", "/etc/prices.json")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.db.pool_size == 7
    assert settings.throttle.per_ip == 42 and settings.throttle.plans == {"gold": 5}
    assert settings.broker.retry_delays_ms == (10, 20)
    assert settings.webhooks.allow_private_urls is True
    assert str(settings.pricing.config_path) == "/etc/prices.json"


def test_flat_names_cover_every_grouped_field_once() -> None:
    flat = Settings(_env_file=None).flat()  # type: ignore[call-arg]
    assert len(flat) == len(Settings.FLAT) + 1  # + environment
    assert flat["db_pool_size"] == 10 and flat["rate_limit_per_ip"] == 1200 and flat["amqp_url"].startswith("amqp")


def test_env_file_is_read_and_the_environment_wins(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    env_file = Path(str(tmp_path)) / ".env"
    env_file.write_text("ALEX_DB_PREFIX=from_file\nALEX_REDIS_PREFIX=file_prefix\n")
    monkeypatch.setenv("ALEX_REDIS_PREFIX", "env_prefix")
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.db.prefix == "from_file" and settings.redis.prefix == "env_prefix"


def test_keyword_flat_names_win_and_replace_validates() -> None:
    settings = Settings(_env_file=None, db_pool_size=3, run_relay=False)  # type: ignore[call-arg]
    assert settings.db.pool_size == 3 and settings.broker.run_relay is False
    changed = settings.replace(shop_port=9001, rate_limit_per_ip=5)
    assert (changed.net.shop_port, changed.throttle.per_ip, changed.db.pool_size) == (9001, 5, 3)
    assert settings.net.shop_port == 8001  # the original is untouched
    with pytest.raises(ValidationError):
        settings.replace(rate_limit_per_ip=0)
    with pytest.raises(KeyError):
        settings.replace(no_such_setting=1)

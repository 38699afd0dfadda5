"""Cluster addresses in the settings: several broker URLs, the Redis sentinels."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from alexandrite.kit.redis_clients import sentinel_addresses
from alexandrite.kit.settings import Settings


def test_several_broker_urls_and_sentinels_are_accepted() -> None:
    settings = Settings(amqp_url="amqp://g:g@h1:5672/v,amqp://g:g@h2:5673/v", redis_sentinels="h1:26379, h2:26380",
                        _env_file=None)  # type: ignore[call-arg]
    assert sentinel_addresses(settings.redis.sentinels or "") == [("h1", 26379), ("h2", 26380)]
    assert settings.redis.sentinel_master == "alexandrite"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("redis_sentinels", "h1:26379,h2", "ALEX_REDIS_SENTINELS"),
    ("redis_sentinels", ":26379", "ALEX_REDIS_SENTINELS"),
    ("amqp_url", " , ", "ALEX_AMQP_URL"),
])
def test_malformed_cluster_addresses_are_refused(field: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{field: value}, _env_file=None)  # type: ignore[arg-type]

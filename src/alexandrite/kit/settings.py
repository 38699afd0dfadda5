"""One settings class for every process, read from the environment (prefix ``ALEX_``) or ``.env``.

Settings are grouped by area (``settings.db.pool_size``, ``settings.throttle.per_ip`` ...). Every
field keeps its flat environment name, given as the field's alias: ``db.pool_size`` is
``ALEX_DB_POOL_SIZE``, ``throttle.per_ip`` is ``ALEX_RATE_LIMIT_PER_IP``. The same flat names are
accepted as keyword arguments (``Settings(db_pool_size=3)``) and by :meth:`Settings.replace`.
"""

from __future__ import annotations

import json
import os
import typing
from functools import lru_cache
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.setting_groups import (
    DEFAULT_CARRIER_SECRET,
    DEFAULT_METRICS_TOKEN,
    DEFAULT_SECRET,
    DEFAULT_SERVICE_TOKEN,
    AuthSettings,
    BreakerSettings,
    BrokerSettings,
    CacheSettings,
    DatabaseSettings,
    Group,
    LiveSettings,
    MailSettings,
    NetworkSettings,
    ObservabilitySettings,
    OperationsSettings,
    PricingSettings,
    RedisSettings,
    RequestLimitSettings,
    ShutdownSettings,
    SlaSettings,
    ThrottleSettings,
    UploadSettings,
    WebhookSettings,
)

Service = Literal["shop", "crm", "mes"]

SERVICES: tuple[Service, ...] = ("shop", "crm", "mes")


def _flat_names(settings_cls: type[BaseModel]) -> dict[str, tuple[str, str]]:
    """Flat name (``db_pool_size``) -> (group, field) for every grouped setting."""
    names: dict[str, tuple[str, str]] = {}
    for group_name, info in settings_cls.model_fields.items():
        group = info.annotation
        if isinstance(group, type) and issubclass(group, Group):
            for field_name, field in group.model_fields.items():
                names[(field.alias or field_name).lower()] = (group_name, field_name)
    return names


def _is_complex(field: FieldInfo) -> bool:
    """A value given as JSON in the environment (dict, list, tuple)."""
    annotation = field.annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_is_complex(FieldInfo(annotation=a)) for a in typing.get_args(annotation) if a is not type(None))
    return origin in (dict, list, tuple, set) or annotation in (dict, list, tuple, set)


class FlatEnvironment(PydanticBaseSettingsSource):
    """Reads every grouped setting from its flat ``ALEX_<NAME>`` variable (``.env`` first, the environment wins)."""

    def __init__(self, settings_cls: type[BaseSettings], *maps: typing.Mapping[str, str | None]) -> None:
        super().__init__(settings_cls)
        self._maps = maps

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False  # unused: __call__ builds the whole mapping

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.settings_cls.model_config.get("env_prefix", "")).lower()
        merged: dict[str, str] = {}
        for mapping in self._maps:
            for key, value in mapping.items():
                if value is not None and key.lower().startswith(prefix):
                    merged[key.lower()[len(prefix):]] = value
        out: dict[str, Any] = {}
        groups = _flat_names(self.settings_cls)
        for flat, raw in merged.items():
            if flat in groups:
                group, field_name = groups[flat]
                field = self.settings_cls.model_fields[group].annotation.model_fields[field_name]  # type: ignore[union-attr]
                out.setdefault(group, {})[field_name] = json.loads(raw) if _is_complex(field) else raw
            elif flat in self.settings_cls.model_fields and not flat.startswith("_"):
                out[flat] = raw
        return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALEX_", env_file=".env", extra="ignore", frozen=True)

    environment: Literal["local", "test", "production"] = "local"

    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    net: NetworkSettings = Field(default_factory=NetworkSettings)
    uploads: UploadSettings = Field(default_factory=UploadSettings)
    pricing: PricingSettings = Field(default_factory=PricingSettings)
    throttle: ThrottleSettings = Field(default_factory=ThrottleSettings)
    limits: RequestLimitSettings = Field(default_factory=RequestLimitSettings)
    breakers: BreakerSettings = Field(default_factory=BreakerSettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    obs: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    sla: SlaSettings = Field(default_factory=SlaSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    ops: OperationsSettings = Field(default_factory=OperationsSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)

    FLAT: ClassVar[dict[str, tuple[str, str]]]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        dotenv = getattr(dotenv_settings, "env_vars", {})
        return init_settings, FlatEnvironment(settings_cls, dotenv, os.environ)

    @model_validator(mode="before")
    @classmethod
    def _group_flat_names(cls, data: Any) -> Any:
        """Flat keyword names (``db_pool_size=3``) go to their group; they win over the environment."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in [k for k in data if k in cls.FLAT]:
            group, field_name = cls.FLAT[key]
            current = data.get(group)
            if isinstance(current, BaseModel):
                current = current.model_dump()
            data[group] = {**(current or {}), field_name: data.pop(key)}
        return data

    @model_validator(mode="after")
    def _known_sla_statuses(self) -> "Settings":
        unknown = sorted(set(self.sla.seconds) - {s.value for s in OrderStatus})
        if unknown:
            raise ValueError(f"ALEX_SLA_SECONDS names unknown statuses: {', '.join(unknown)}")
        if self.obs.graphite_address and not self.obs.graphite_address.rpartition(":")[2].isdigit():
            raise ValueError("ALEX_GRAPHITE_ADDRESS must be host:port")
        if any(value <= 0 for value in self.sla.seconds.values()):
            raise ValueError("ALEX_SLA_SECONDS values must be positive seconds")
        if not any(part.strip() for part in self.broker.url.split(",")):
            raise ValueError("ALEX_AMQP_URL is empty")
        if self.redis.sentinels and not all(
                part.strip().rpartition(":")[0] and part.strip().rpartition(":")[2].isdigit()
                for part in self.redis.sentinels.split(",")):
            raise ValueError("ALEX_REDIS_SENTINELS must be host:port[,host:port...]")
        return self

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> "Settings":
        if self.environment == "production":
            bad = [
                name
                for name, value, default in (
                    ("ALEX_SECRET_KEY", self.auth.secret_key, DEFAULT_SECRET),
                    ("ALEX_SERVICE_TOKEN", self.auth.service_token, DEFAULT_SERVICE_TOKEN),
                    ("ALEX_CARRIER_WEBHOOK_SECRET", self.auth.carrier_webhook_secret, DEFAULT_CARRIER_SECRET),
                    ("ALEX_METRICS_TOKEN", self.obs.metrics_token, DEFAULT_METRICS_TOKEN),
                )
                if value == default or len(value) < 32
            ] + [f"ALEX_PREVIOUS_SECRET_KEYS[{kid}]" for kid, value in self.auth.previous_secret_keys.items()
                 if value == DEFAULT_SECRET or len(value) < 32]
            if bad:
                raise ValueError(
                    "refusing to start in production with default or short secrets: " + ", ".join(bad)
                )
            if self.webhooks.allow_private_urls:
                raise ValueError("ALEX_WEBHOOK_ALLOW_PRIVATE_URLS is a development setting; production refuses it")
        return self

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some values changed, by flat name (``run_relay=False``) or whole group; validated."""
        values: dict[str, Any] = self.model_dump()
        for key, value in changes.items():
            if key in self.FLAT:
                group, field_name = self.FLAT[key]
                values[group][field_name] = value
            elif key in type(self).model_fields:
                values[key] = value.model_dump() if isinstance(value, BaseModel) else value
            else:
                raise KeyError(f"unknown setting {key!r}")
        return type(self).model_validate(values)

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name (what ``ALEX_<NAME>`` sets)."""
        out: dict[str, Any] = {"environment": self.environment}
        for flat_name, (group, field_name) in self.FLAT.items():
            out[flat_name] = getattr(getattr(self, group), field_name)
        return out

    def database_name(self, service: Service) -> str:
        return f"{self.db.prefix}_{service}"

    def database_url(self, service: Service, *, replica: bool = False) -> str:
        base = self.db.replica_dsn if (replica and self.db.replica_dsn) else self.db.dsn
        return f"{base.rstrip('/')}/{self.database_name(service)}"

    def admin_database_url(self) -> str:
        return f"{self.db.dsn.rstrip('/')}/postgres"

    def service_url(self, service: Service) -> str:
        return {"shop": self.net.shop_url, "crm": self.net.crm_url, "mes": self.net.mes_url}[service]

    def service_port(self, service: Service) -> int:
        return {"shop": self.net.shop_port, "crm": self.net.crm_port, "mes": self.net.mes_port}[service]


Settings.FLAT = _flat_names(Settings)


@lru_cache
def get_settings() -> Settings:
    """The process's settings; outside production, published default secrets are swapped for generated ones."""
    from alexandrite.kit.local_secrets import with_local_secrets

    return with_local_secrets(Settings())

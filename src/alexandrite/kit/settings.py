"""One settings class for every process, read from the environment (prefix ``ALEX_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from alexandrite.contracts.order_status import OrderStatus

DEFAULT_SECRET = "local-development-secret-change-me"
DEFAULT_SERVICE_TOKEN = "local-service-token-change-me"
DEFAULT_CARRIER_SECRET = "local-carrier-secret-change-me"

Service = Literal["shop", "crm", "mes"]

DAY = 86400.0
# Longest time an order may stay in a status before the customer is told of the delay.
DEFAULT_SLA_SECONDS: dict[str, float] = {
    "SUBMITTED": 600.0,
    "PRICE_CALCULATING": 1800.0,
    "PRICE_CALCULATED": 2 * DAY,  # waiting for the seller's approval
    "MANUFACTURING_APPROVED": 2 * DAY,  # until an operator starts it
    "MANUFACTURING_STARTED": 7 * DAY,
    "MANUFACTURING_COMPLETED": 1 * DAY,
    "PACKAGING": 1 * DAY,
    "SHIPPED": 10 * DAY,
}
SERVICES: tuple[Service, ...] = ("shop", "crm", "mes")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALEX_", env_file=".env", extra="ignore")

    environment: Literal["local", "test", "production"] = "local"

    # PostgreSQL: one server DSN, one database per service named "<db_prefix>_<service>".
    pg_dsn: str = "postgresql+asyncpg://postgres@127.0.0.1:5432"
    db_prefix: str = "alexandrite"
    db_pool_size: int = 10
    # Optional read replica server DSN for lag-tolerant reads (same database names).
    pg_replica_dsn: str | None = None

    # One broker URL, or several separated by commas (the nodes of a cluster): every connection goes
    # through kit.messaging.connection, which tries them in turn and moves on when a node is lost.
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "alexandrite"
    # Redis behind Sentinel: "host:port,host:port,..." of the sentinels; when set, clients ask them for
    # the current master of redis_sentinel_master (database and password still come from redis_url).
    redis_sentinels: str | None = None
    redis_sentinel_master: str = "alexandrite"

    secret_key: str = DEFAULT_SECRET
    service_token: str = DEFAULT_SERVICE_TOKEN
    carrier_webhook_secret: str = DEFAULT_CARRIER_SECRET
    token_ttl_seconds: int = 12 * 3600

    storage_dir: Path = Path("var/storage")
    pricing_config: Path | None = None

    shop_url: str = "http://127.0.0.1:8001"
    crm_url: str = "http://127.0.0.1:8002"
    mes_url: str = "http://127.0.0.1:8003"
    host: str = "127.0.0.1"
    shop_port: int = 8001
    crm_port: int = 8002
    mes_port: int = 8003
    worker_metrics_port: int = 9100

    # Uploads
    max_upload_bytes: int = 100 * 1024 * 1024
    max_triangles: int = 2_000_000

    # Messaging
    pricing_queue_max_length: int = 10_000
    consumer_prefetch: int = 20
    retry_delays_ms: tuple[int, ...] = (500, 2_000, 10_000)
    relay_batch_size: int = 200
    relay_idle_seconds: float = 0.05
    pricing_seconds_estimate: float = 2.0

    log_level: str = "INFO"
    log_json: bool = True

    # Processes started by "serve": relay and event consumer run beside the API.
    run_relay: bool = True
    run_consumer: bool = True

    peer_timeout_seconds: float = Field(default=3.0, gt=0)

    # --- Reliability: throttling, backpressure, breakers, shutdown, partner webhooks ---
    # Requests per minute; partners by plan (an unknown plan gets "standard").
    rate_limit_enabled: bool = True
    rate_limit_window_seconds: int = Field(default=60, ge=1)
    rate_limit_per_ip: int = Field(default=1200, ge=1)
    rate_limit_per_customer: int = Field(default=600, ge=1)
    rate_limit_per_staff: int = Field(default=3000, ge=1)
    rate_limit_plans: dict[str, int] = {"standard": 600, "premium": 3000, "enterprise": 12000}
    # Redis away: True lets requests through (counted), False answers 503.
    rate_limit_fail_open: bool = True
    redis_timeout_seconds: float = Field(default=0.25, gt=0)
    # Requests served at once per process; more are answered 503 + Retry-After immediately.
    max_in_flight_requests: int = Field(default=64, ge=1)
    # Backpressure at submit: the pricing stage SLA and what to do when the backlog would break it.
    pricing_stage_sla_seconds: float = Field(default=900.0, gt=0)
    backpressure_mode: Literal["reject", "accept_with_eta", "off"] = "reject"
    backpressure_cache_seconds: float = Field(default=2.0, ge=0)
    # Circuit breakers (every outbound dependency): failures before opening, seconds open.
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=10.0, gt=0)
    storage_timeout_seconds: float = Field(default=10.0, gt=0)
    # Graceful shutdown: after SIGTERM readiness is false for this long before the listener closes.
    shutdown_drain_seconds: float = Field(default=3.0, ge=0)
    shutdown_timeout_seconds: int = Field(default=20, ge=1)
    # Partner webhooks (shop).
    run_webhooks: bool = True
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_backoff_seconds: tuple[float, ...] = (1, 5, 30, 120, 600, 1800, 3600)
    webhook_concurrency: int = Field(default=16, ge=1)
    webhook_per_endpoint_concurrency: int = Field(default=2, ge=1)
    webhook_batch_size: int = Field(default=100, ge=1)
    webhook_idle_seconds: float = Field(default=0.2, gt=0)
    webhook_breaker_failures: int = Field(default=5, ge=1)
    webhook_breaker_reset_seconds: float = Field(default=30.0, gt=0)
    webhook_allow_private_urls: bool = True  # production: False refuses loopback/private partner URLs

    # Reading fast at scale: partitions, Redis cache of hot pages, replica reads.
    partition_months_ahead: int = Field(default=3, ge=0, le=60)  # "alexandrite maintain" creates these
    partition_archive_after_months: int = Field(default=24, ge=0)  # 0: never archive
    cache_ttl_seconds: float = Field(default=30.0, ge=0)  # 0 disables the page cache
    cache_ttl_jitter: float = Field(default=0.2, ge=0, le=1)  # TTL grows by up to this fraction, at random
    cache_lock_seconds: float = Field(default=2.0, gt=0)  # one loader per missing page; others wait this long
    cache_redis_timeout_seconds: float = Field(default=0.25, gt=0)
    cache_retry_seconds: float = Field(default=1.0, ge=0)  # after a Redis failure, go straight to the database
    replica_fresh_seconds: float = Field(default=2.0, ge=0)  # after a change, cache refills read the primary

    # --- Observability: metrics push, tracing, per-stage SLAs, delay notices -----------------
    # Optional push of every metric to Graphite (carbon plaintext "host:port"); off when unset.
    graphite_address: str | None = None
    graphite_prefix: str = "alexandrite"
    graphite_interval_seconds: float = Field(default=30.0, gt=0)
    # How often each API recounts its orders per status for the orders-in-status gauge.
    status_gauge_interval_seconds: float = Field(default=15.0, gt=0)
    # OpenTelemetry: off by default (no instrumentation installed, near-zero cost).
    # "otlp" exports to otlp_endpoint (OTLP/HTTP); "file" writes JSON lines to trace_dir/<service>-<pid>.jsonl.
    tracing: Literal["off", "otlp", "file"] = "off"
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    trace_dir: Path = Path("var/traces")
    # Per-stage SLAs: the longest an order may stay in a status, in seconds (JSON object in the
    # environment, e.g. ALEX_SLA_SECONDS='{"PRICE_CALCULATING": 1800}'); statuses not listed have none.
    sla_seconds: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SLA_SECONDS))
    promised_delivery_days: float = Field(default=21.0, gt=0)
    # The SLA watchdog runs inside the mes service (and as "alexandrite watchdog").
    run_watchdog: bool = True
    watchdog_interval_seconds: float = Field(default=60.0, gt=0)
    # Delay notices: the shop's notification outbox is sent by SMTP (a local sink in development).
    run_notifier: bool = True
    notifier_interval_seconds: float = Field(default=2.0, gt=0)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_sender: str = "Alexandrite <orders@alexandrite.local>"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _known_sla_statuses(self) -> "Settings":
        unknown = sorted(set(self.sla_seconds) - {s.value for s in OrderStatus})
        if unknown:
            raise ValueError(f"ALEX_SLA_SECONDS names unknown statuses: {', '.join(unknown)}")
        if self.graphite_address and not self.graphite_address.rpartition(":")[2].isdigit():
            raise ValueError("ALEX_GRAPHITE_ADDRESS must be host:port")
        if any(value <= 0 for value in self.sla_seconds.values()):
            raise ValueError("ALEX_SLA_SECONDS values must be positive seconds")
        if not any(part.strip() for part in self.amqp_url.split(",")):
            raise ValueError("ALEX_AMQP_URL is empty")
        if self.redis_sentinels and not all(
                part.strip().rpartition(":")[0] and part.strip().rpartition(":")[2].isdigit()
                for part in self.redis_sentinels.split(",")):
            raise ValueError("ALEX_REDIS_SENTINELS must be host:port[,host:port...]")
        return self
    # --- Operations: replicas behind HAProxy, PostgreSQL replication, backups --------------
    run_dir: Path = Path("var/run")  # `up --replicas`: HAProxy config, socket, logs, up.json
    instance_base_port: int = Field(default=8100, ge=1024, le=65535)  # API instances behind the LB
    haproxy_bin: str = "haproxy"
    lb_stats_port: int = 8404  # HAProxy /stats and /metrics
    lb_start_timeout: float = Field(default=60.0, gt=0)
    lb_drain_timeout_seconds: float = Field(default=30.0, gt=0)
    pg_version: str = "15"  # Debian cluster version used by `replica` and `backup`
    replication_user: str = "alexandrite_replicator"
    replication_metrics_port: int = 9190  # `alexandrite replica exporter`
    backup_repo: Path = Path("/var/lib/pgbackrest")  # pgBackRest repository (owned by postgres)
    backup_stanza: str = "alexandrite"
    backup_retention_full: int = Field(default=2, ge=1)
    # --- High availability on one machine (`alexandrite up --ha`, ops/ha) ---------------------
    # Run directory of etcd, Patroni/PostgreSQL, the RabbitMQ cluster, Redis + Sentinel and their HAProxy;
    # its ports are allocated from ha_base_port up (the first free ones).
    ha_dir: Path = Path("var/ha")
    ha_base_port: int = Field(default=17000, ge=1024, le=60000)

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> "Settings":
        if self.environment == "production":
            bad = [
                name
                for name, value, default in (
                    ("ALEX_SECRET_KEY", self.secret_key, DEFAULT_SECRET),
                    ("ALEX_SERVICE_TOKEN", self.service_token, DEFAULT_SERVICE_TOKEN),
                    ("ALEX_CARRIER_WEBHOOK_SECRET", self.carrier_webhook_secret, DEFAULT_CARRIER_SECRET),
                )
                if value == default or len(value) < 32
            ]
            if bad:
                raise ValueError(
                    "refusing to start in production with default or short secrets: " + ", ".join(bad)
                )
        return self

    def database_name(self, service: Service) -> str:
        return f"{self.db_prefix}_{service}"

    def database_url(self, service: Service, *, replica: bool = False) -> str:
        base = self.pg_replica_dsn if (replica and self.pg_replica_dsn) else self.pg_dsn
        return f"{base.rstrip('/')}/{self.database_name(service)}"

    def admin_database_url(self) -> str:
        return f"{self.pg_dsn.rstrip('/')}/postgres"

    def service_url(self, service: Service) -> str:
        return {"shop": self.shop_url, "crm": self.crm_url, "mes": self.mes_url}[service]

    def service_port(self, service: Service) -> int:
        return {"shop": self.shop_port, "crm": self.crm_port, "mes": self.mes_port}[service]


@lru_cache
def get_settings() -> Settings:
    return Settings()

"""The groups of settings, one model per area. Each field's alias is its flat name: ``ALEX_<ALIAS>`` in the
environment (``DatabaseSettings.pool_size`` is ``ALEX_DB_POOL_SIZE``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alexandrite.models3d.limits import ModelLimits

DEFAULT_SECRET = "local-development-secret-change-me"
DEFAULT_SERVICE_TOKEN = "local-service-token-change-me"
DEFAULT_CARRIER_SECRET = "local-carrier-secret-change-me"
DEFAULT_METRICS_TOKEN = "local-metrics-token-change-me"

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


class Group(BaseModel):
    """A group of settings; each field's alias is its flat name (``ALEX_<ALIAS>`` in the environment)."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid")


class DatabaseSettings(Group):
    """PostgreSQL: one server DSN, one database per service named ``<prefix>_<service>``."""

    dsn: str = Field(default="postgresql+asyncpg://postgres@127.0.0.1:5432", alias="pg_dsn")
    prefix: str = Field(default="alexandrite", alias="db_prefix")
    pool_size: int = Field(default=10, alias="db_pool_size")
    # Optional read replica server DSN for lag-tolerant reads (same database names).
    replica_dsn: str | None = Field(default=None, alias="pg_replica_dsn")
    # Directory of the local server's Unix socket (e.g. /var/run/postgresql): the raw pool of the hot
    # paths connects there instead of by TCP, which costs each round trip about half the CPU. None: TCP.
    socket_dir: str | None = Field(default=None, alias="pg_socket_dir")
    # A service's transaction idle this long (its task stalled or lost the connection) is ended by
    # PostgreSQL, releasing its locks; 0 turns it off. Longer than any wait inside a transaction (the
    # outbox relay's publish timeout is 10 s).
    idle_in_transaction_seconds: float = Field(default=60.0, ge=0, alias="db_idle_in_transaction_seconds")
    # MES order partitions: "alexandrite maintain" creates these months ahead; 0 never archives.
    partition_months_ahead: int = Field(default=3, ge=0, le=60, alias="partition_months_ahead")
    partition_archive_after_months: int = Field(default=24, ge=0, alias="partition_archive_after_months")


class BrokerSettings(Group):
    """RabbitMQ: the outbox relay, consumers and the bounded pricing queue."""

    # One broker URL, or several separated by commas (the nodes of a cluster): every connection goes
    # through kit.messaging.connection, which tries them in turn and moves on when a node is lost.
    url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/", alias="amqp_url")
    pricing_queue_max_length: int = Field(default=10_000, alias="pricing_queue_max_length")
    # Events an event consumer holds at once (at least the pool size); no more handlers run at once than the
    # pool has connections, so deliveries beyond that (or whose acks are held) only keep a prefetch slot.
    consumer_prefetch: int = Field(default=20, alias="consumer_prefetch")
    # An event consumer's acks may wait this long to leave several to a socket write (0: each at once).
    consumer_ack_hold_ms: int = Field(default=20, ge=0, le=1000, alias="consumer_ack_hold_ms")
    retry_delays_ms: tuple[int, ...] = Field(default=(500, 2_000, 10_000), alias="retry_delays_ms")
    relay_batch_size: int = Field(default=200, alias="relay_batch_size")
    # The relay wakes on PostgreSQL notifications of committed outbox rows (relay_listen); this is its
    # safety poll for lost notifications (or its poll period with relay_listen off).
    relay_idle_seconds: float = Field(default=3.0, gt=0, alias="relay_idle_seconds")
    relay_listen: bool = Field(default=True, alias="relay_listen")
    # After a batch that published, the relay waits this long before it claims the next: rows committed
    # meanwhile leave together (one claim, one delete, one socket write) instead of one batch each. A
    # relay that found nothing still publishes the next row as soon as it is notified. 0: no pause.
    relay_gather_ms: int = Field(default=10, ge=0, le=1000, alias="relay_gather_ms")
    # How often each relay counts its backlog for the outbox gauges (one query).
    relay_gauge_seconds: float = Field(default=15.0, gt=0, alias="relay_gauge_seconds")
    # Processes started by "serve": relay and event consumer run beside the API.
    run_relay: bool = Field(default=True, alias="run_relay")
    run_consumer: bool = Field(default=True, alias="run_consumer")


class RedisSettings(Group):
    url: str = Field(default="redis://127.0.0.1:6379/0", alias="redis_url")
    prefix: str = Field(default="alexandrite", alias="redis_prefix")
    timeout_seconds: float = Field(default=0.25, gt=0, alias="redis_timeout_seconds")
    # Redis behind Sentinel: "host:port,host:port,..." of the sentinels; when set, clients ask them for
    # the current master of sentinel_master (database and password still come from the URL).
    sentinels: str | None = Field(default=None, alias="redis_sentinels")
    sentinel_master: str = Field(default="alexandrite", alias="redis_sentinel_master")


class AuthSettings(Group):
    """Secrets and tokens; production refuses the defaults."""

    secret_key: str = Field(default=DEFAULT_SECRET, alias="secret_key")
    service_token: str = Field(default=DEFAULT_SERVICE_TOKEN, alias="service_token")
    carrier_webhook_secret: str = Field(default=DEFAULT_CARRIER_SECRET, alias="carrier_webhook_secret")
    # Access tokens are JWTs (kit/tokens.py) signed with ``secret_key`` under the key id ``secret_key_id``;
    # ``previous_secret_keys`` ({"kid": "secret"}, JSON) still verify, so a rotation signs nobody out.
    secret_key_id: str = Field(default="k1", min_length=1, max_length=40, alias="secret_key_id")
    previous_secret_keys: dict[str, str] = Field(default_factory=dict, alias="previous_secret_keys")
    # Not production: secrets left at their published defaults are generated into (and read from) this file.
    local_secrets_file: Path = Field(default=Path(".alexandrite/secrets.env"), alias="local_secrets_file")
    # Short-lived access tokens (sign-in, page sessions); sign-out and password change revoke sooner.
    token_ttl_seconds: int = Field(default=3600, gt=0, le=7 * 86400, alias="token_ttl_seconds")
    # The longest a token may live (``alexandrite token --ttl``): "revoke everything of a user" is kept this long.
    max_token_ttl_seconds: int = Field(default=7 * 86400, gt=0, alias="max_token_ttl_seconds")
    # A partner API key found valid is trusted this long without asking the database again; a key
    # revoked (partners.active = false) keeps working at most this long in each process. 0: no cache.
    partner_key_cache_seconds: float = Field(default=5.0, ge=0, le=300, alias="partner_key_cache_seconds")


class NetworkSettings(Group):
    """Where each service listens and how the services reach each other."""

    host: str = Field(default="127.0.0.1", alias="host")
    # comma-separated proxy addresses whose X-Forwarded-For/-Proto is believed; none by default
    trusted_proxies: str = Field(default="", alias="trusted_proxies")
    shop_url: str = Field(default="http://127.0.0.1:8001", alias="shop_url")
    crm_url: str = Field(default="http://127.0.0.1:8002", alias="crm_url")
    mes_url: str = Field(default="http://127.0.0.1:8003", alias="mes_url")
    shop_port: int = Field(default=8001, alias="shop_port")
    crm_port: int = Field(default=8002, alias="crm_port")
    mes_port: int = Field(default=8003, alias="mes_port")
    worker_metrics_port: int = Field(default=9100, alias="worker_metrics_port")
    peer_timeout_seconds: float = Field(default=3.0, gt=0, alias="peer_timeout_seconds")
    # The hottest order requests answered straight from ASGI (shop/hot_paths.py); false: all through FastAPI.
    fast_paths: bool = Field(default=True, alias="api_fast_paths")


class UploadSettings(Group):
    """3D model uploads and where their files are kept; the same limits bind the shop and the workers."""

    max_bytes: int = Field(default=100 * 1024 * 1024, alias="max_upload_bytes")
    max_triangles: int = Field(default=2_000_000, alias="max_triangles")
    storage_dir: Path = Field(default=Path("var/storage"), alias="storage_dir")
    storage_timeout_seconds: float = Field(default=10.0, gt=0, alias="storage_timeout_seconds")
    # Model parses a shop process runs at once; an upload waits this long for one, then gets 503.
    max_concurrent_parses: int = Field(default=2, ge=1, alias="max_concurrent_parses")
    parse_wait_seconds: float = Field(default=2.0, ge=0, alias="parse_wait_seconds")

    @property
    def limits(self) -> ModelLimits:
        """The limits every parse of an uploaded model runs under: upload check, preview, pricing worker."""
        return ModelLimits(max_bytes=self.max_bytes, max_triangles=self.max_triangles)


class PricingSettings(Group):
    """The pricing configuration the workers load, and backpressure at submit."""

    config_path: Path | None = Field(default=None, alias="pricing_config")
    seconds_estimate: float = Field(default=2.0, alias="pricing_seconds_estimate")
    # The pricing stage SLA and what submit does when the backlog would break it.
    stage_sla_seconds: float = Field(default=900.0, gt=0, alias="pricing_stage_sla_seconds")
    backpressure_mode: Literal["reject", "accept_with_eta", "off"] = Field(default="reject", alias="backpressure_mode")
    backpressure_cache_seconds: float = Field(default=2.0, ge=0, alias="backpressure_cache_seconds")
    # Jobs a pricing worker holds at once: their database steps overlap, their pricing never does
    # (one model at a time per worker, so a worker's memory and CPU stay one model's).
    worker_prefetch: int = Field(default=4, ge=1, le=64, alias="pricing_worker_prefetch")


class ThrottleSettings(Group):
    """Requests per minute (partners by plan; an unknown plan gets "standard") and load shedding."""

    enabled: bool = Field(default=True, alias="rate_limit_enabled")
    window_seconds: int = Field(default=60, ge=1, alias="rate_limit_window_seconds")
    per_ip: int = Field(default=1200, ge=1, alias="rate_limit_per_ip")
    per_customer: int = Field(default=600, ge=1, alias="rate_limit_per_customer")
    per_staff: int = Field(default=3000, ge=1, alias="rate_limit_per_staff")
    # Failed authentication (passwords, tokens, API keys) per client address and per account / key prefix.
    failed_auth_limit: int = Field(default=10, ge=1, alias="failed_auth_limit")
    failed_auth_window_seconds: int = Field(default=300, ge=1, alias="failed_auth_window_seconds")
    plans: dict[str, int] = Field(
        default_factory=lambda: {"standard": 600, "premium": 3000, "enterprise": 12000}, alias="rate_limit_plans")
    # Redis away: True lets requests through (counted), False answers 503.
    fail_open: bool = Field(default=True, alias="rate_limit_fail_open")
    # Requests served at once per process; more are answered 503 + Retry-After immediately.
    max_in_flight_requests: int = Field(default=64, ge=1, alias="max_in_flight_requests")


class RequestLimitSettings(Group):
    """How large a request may be; checked as it arrives (kit/body_limit.py), before authentication.
    Routes taking an uploaded file accept ``max_upload_bytes`` (plus the multipart envelope) instead."""

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, alias="max_body_bytes")
    # Request line + headers; uvicorn's parser is held to it too (kit/header_limit.py): 431 past it.
    max_header_bytes: int = Field(default=32 * 1024, ge=4096, alias="max_header_bytes")


class BreakerSettings(Group):
    """Circuit breakers on every outbound dependency: failures before opening, seconds open."""

    failure_threshold: int = Field(default=5, ge=1, alias="breaker_failure_threshold")
    reset_seconds: float = Field(default=10.0, gt=0, alias="breaker_reset_seconds")


class ShutdownSettings(Group):
    # After SIGTERM readiness is false for drain_seconds before the listener closes.
    drain_seconds: float = Field(default=3.0, ge=0, alias="shutdown_drain_seconds")
    timeout_seconds: int = Field(default=20, ge=1, alias="shutdown_timeout_seconds")


class WebhookSettings(Group):
    """Partner webhooks sent by the shop."""

    run: bool = Field(default=True, alias="run_webhooks")
    timeout_seconds: float = Field(default=5.0, gt=0, alias="webhook_timeout_seconds")
    max_attempts: int = Field(default=8, ge=1, alias="webhook_max_attempts")
    backoff_seconds: tuple[float, ...] = Field(default=(1, 5, 30, 120, 600, 1800, 3600),
                                               alias="webhook_backoff_seconds")
    concurrency: int = Field(default=16, ge=1, alias="webhook_concurrency")
    per_endpoint_concurrency: int = Field(default=2, ge=1, alias="webhook_per_endpoint_concurrency")
    batch_size: int = Field(default=100, ge=1, alias="webhook_batch_size")
    # The dispatcher wakes on notifications of queued deliveries; this poll finds retries as they fall due.
    idle_seconds: float = Field(default=2.0, gt=0, alias="webhook_idle_seconds")
    gauge_seconds: float = Field(default=15.0, gt=0, alias="webhook_gauge_seconds")
    breaker_failures: int = Field(default=5, ge=1, alias="webhook_breaker_failures")
    breaker_reset_seconds: float = Field(default=30.0, gt=0, alias="webhook_breaker_reset_seconds")
    # Development only (refused in production): webhook URLs may use http and reach loopback/private
    # addresses, for receivers on this machine. The platform's own services stay refused even then.
    allow_private_urls: bool = Field(default=False, alias="webhook_allow_private_urls")


class CacheSettings(Group):
    """Redis cache of hot pages; replica reads right after a change go to the primary."""

    ttl_seconds: float = Field(default=30.0, ge=0, alias="cache_ttl_seconds")  # 0 disables the page cache
    ttl_jitter: float = Field(default=0.2, ge=0, le=1, alias="cache_ttl_jitter")  # TTL grows by up to this, at random
    lock_seconds: float = Field(default=2.0, gt=0, alias="cache_lock_seconds")  # one loader per page; others wait
    redis_timeout_seconds: float = Field(default=0.25, gt=0, alias="cache_redis_timeout_seconds")
    retry_seconds: float = Field(default=1.0, ge=0, alias="cache_retry_seconds")  # after a Redis failure: database only
    replica_fresh_seconds: float = Field(default=2.0, ge=0, alias="replica_fresh_seconds")


class ObservabilitySettings(Group):
    # What a Prometheus scrape of an API's /metrics presents (Authorization: Bearer ...); production
    # refuses the default. Workers' side ports serve /metrics without it (internal ports only).
    metrics_token: str = Field(default=DEFAULT_METRICS_TOKEN, alias="metrics_token")
    log_level: str = Field(default="INFO", alias="log_level")
    log_json: bool = Field(default=True, alias="log_json")
    # Optional push of every metric to Graphite (carbon plaintext "host:port"); off when unset.
    graphite_address: str | None = Field(default=None, alias="graphite_address")
    graphite_prefix: str = Field(default="alexandrite", alias="graphite_prefix")
    graphite_interval_seconds: float = Field(default=30.0, gt=0, alias="graphite_interval_seconds")
    # How often each API recounts its orders per status for the orders-in-status gauge.
    status_gauge_interval_seconds: float = Field(default=15.0, gt=0, alias="status_gauge_interval_seconds")
    # OpenTelemetry: off by default (no instrumentation installed, near-zero cost).
    # "otlp" exports to otlp_endpoint (OTLP/HTTP); "file" writes JSON lines to trace_dir/<service>-<pid>.jsonl.
    tracing: Literal["off", "otlp", "file"] = Field(default="off", alias="tracing")
    otlp_endpoint: str = Field(default="http://127.0.0.1:4318/v1/traces", alias="otlp_endpoint")
    trace_dir: Path = Field(default=Path("var/traces"), alias="trace_dir")


class SlaSettings(Group):
    """Per-stage SLAs in seconds (JSON object, e.g. ALEX_SLA_SECONDS='{"PRICE_CALCULATING": 1800}');
    statuses not listed have none. The watchdog runs inside the mes service (and as "alexandrite watchdog")."""

    seconds: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SLA_SECONDS), alias="sla_seconds")
    promised_delivery_days: float = Field(default=21.0, gt=0, alias="promised_delivery_days")
    run_watchdog: bool = Field(default=True, alias="run_watchdog")
    watchdog_interval_seconds: float = Field(default=60.0, gt=0, alias="watchdog_interval_seconds")


class MailSettings(Group):
    """Delay notices: the shop's notification outbox is sent by SMTP (a local sink in development)."""

    run_notifier: bool = Field(default=True, alias="run_notifier")
    notifier_interval_seconds: float = Field(default=5.0, gt=0, alias="notifier_interval_seconds")
    smtp_host: str = Field(default="127.0.0.1", alias="smtp_host")
    smtp_port: int = Field(default=8025, alias="smtp_port")
    smtp_sender: str = Field(default="Alexandrite <orders@alexandrite.local>", alias="smtp_sender")
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, alias="smtp_timeout_seconds")


class OperationsSettings(Group):
    """Replicas behind HAProxy, PostgreSQL replication, backups."""

    run_dir: Path = Field(default=Path("var/run"), alias="run_dir")  # `up --replicas`: HAProxy config, logs, up.json
    instance_base_port: int = Field(default=8100, ge=1024, le=65535, alias="instance_base_port")
    haproxy_bin: str = Field(default="haproxy", alias="haproxy_bin")
    lb_stats_port: int = Field(default=8404, alias="lb_stats_port")  # HAProxy /stats and /metrics
    lb_start_timeout: float = Field(default=60.0, gt=0, alias="lb_start_timeout")
    lb_drain_timeout_seconds: float = Field(default=30.0, gt=0, alias="lb_drain_timeout_seconds")
    pg_version: str = Field(default="15", alias="pg_version")  # Debian cluster version used by `replica` and `backup`
    replication_user: str = Field(default="alexandrite_replicator", alias="replication_user")
    # `alexandrite replica exporter`
    replication_metrics_port: int = Field(default=9190, alias="replication_metrics_port")
    backup_repo: Path = Field(default=Path("/var/lib/pgbackrest"), alias="backup_repo")  # owned by postgres
    backup_stanza: str = Field(default="alexandrite", alias="backup_stanza")
    backup_retention_full: int = Field(default=2, ge=1, alias="backup_retention_full")
    # High availability on one machine (`alexandrite up --ha`, ops/ha): run directory of etcd, Patroni,
    # the RabbitMQ cluster, Redis + Sentinel and their HAProxy; ports allocated from ha_base_port up.
    ha_dir: Path = Field(default=Path("var/ha"), alias="ha_dir")
    ha_base_port: int = Field(default=17000, ge=1024, le=60000, alias="ha_base_port")


class LiveSettings(Group):
    """Server-sent events of order changes (kit/live): one Redis stream per service, one reader per process."""

    enabled: bool = Field(default=True, alias="live_enabled")
    # Entries kept per service stream (trimmed approximately); a reconnect older than that gets "reset".
    stream_maxlen: int = Field(default=10000, ge=100, alias="live_stream_maxlen")
    max_streams: int = Field(default=5000, ge=1, alias="live_max_streams")  # per process: 503 past it
    max_streams_per_client: int = Field(default=8, ge=1, alias="live_max_streams_per_client")  # 429 past it
    heartbeat_seconds: float = Field(default=15.0, gt=0, alias="live_heartbeat_seconds")
    queue_size: int = Field(default=256, ge=1, alias="live_queue_size")  # a subscriber this far behind is dropped
    block_ms: int = Field(default=1000, ge=10, alias="live_block_ms")  # one XREAD waits at most this long
    # After a read that brought entries the reader waits this long, so entries committed meanwhile come in
    # one read together (at most 1000 / batch_ms reads a second, however busy the service).
    batch_ms: int = Field(default=20, ge=0, le=200, alias="live_batch_ms")
    # Committed changes wait this long to be appended to the stream together (one pipeline per hold, not
    # one per change); nobody waits for the append. 0: at the next loop turn.
    announce_hold_ms: int = Field(default=10, ge=0, le=200, alias="live_announce_hold_ms")
    retry_ms: int = Field(default=2000, ge=100, alias="live_retry_ms")  # the browser's reconnect delay

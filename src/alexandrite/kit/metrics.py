"""Prometheus metrics shared by every process (labels never carry raw ids)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
STAGE_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400, 21 * 86400)

HTTP_REQUESTS = Counter(
    "alexandrite_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "alexandrite_http_request_duration_seconds",
    "HTTP request duration",
    ["service", "method", "route"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("alexandrite_http_requests_in_flight", "HTTP requests in flight", ["service"])

OUTBOX_PUBLISHED = Counter("alexandrite_outbox_published_total", "Outbox messages published", ["service"])
OUTBOX_PUBLISH_FAILURES = Counter(
    "alexandrite_outbox_publish_failures_total", "Outbox publish attempts that failed", ["service"]
)
OUTBOX_BACKLOG = Gauge("alexandrite_outbox_backlog", "Unpublished outbox messages", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "alexandrite_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox message", ["service"]
)

MESSAGES_PROCESSED = Counter(
    "alexandrite_messages_processed_total",
    "Messages consumed, by outcome",
    ["queue", "type", "outcome"],  # outcome: ok, retried, dead_lettered, duplicate, deferred
)
MESSAGE_DURATION = Histogram(
    "alexandrite_message_processing_seconds",
    "Message processing time",
    ["queue", "type"],
    buckets=LATENCY_BUCKETS,
)

ORDER_TRANSITIONS = Counter(
    "alexandrite_order_transitions_total", "Order status transitions applied", ["service", "status"]
)
TIME_IN_STATUS = Histogram(
    "alexandrite_order_time_in_status_seconds",
    "Time an order spent in a status before leaving it",
    ["service", "status"],
    buckets=STAGE_BUCKETS,
)

PRICING_DURATION = Histogram(
    "alexandrite_pricing_duration_seconds",
    "Time to parse, analyse and price one model",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)
PRICING_QUEUE_WAIT = Histogram(
    "alexandrite_pricing_queue_wait_seconds",
    "Time a pricing job waited in the queue",
    buckets=LATENCY_BUCKETS + (30, 60, 300),
)

# Page cache (kit/cache.py). outcome: hit, miss, coalesced (waited for another loader),
# unavailable (Redis failed or is being left alone: served from the database).
CACHE_REQUESTS = Counter("alexandrite_cache_requests_total", "Page cache lookups", ["cache", "outcome"])
CACHE_INVALIDATIONS = Counter(
    "alexandrite_cache_invalidations_total", "Page cache invalidations after commit", ["cache", "outcome"]
)
CACHE_UP = Gauge("alexandrite_cache_up", "1 while the page cache's Redis answers, 0 after a failure", ["cache"])

# --- Consumers, order pipeline and SLAs -------------------------------------------------------

MESSAGE_FAILURES = Counter(
    "alexandrite_message_failures_total",
    "Message deliveries whose handler failed (then retried or dead-lettered)",
    ["queue", "type"],
)
ORDERS_IN_STATUS = Gauge(
    "alexandrite_orders_in_status",
    "Orders currently in each status, as this service's projection sees them (recounted periodically)",
    ["service", "status"],
)
ORDER_DURATION = Histogram(
    "alexandrite_order_duration_seconds",
    "End-to-end order duration, from creation to a final status",
    ["service", "outcome"],  # outcome: CLOSED or CANCELLED
    buckets=STAGE_BUCKETS + (60 * 86400,),
)
ORDERS_PAST_SLA = Gauge(
    "alexandrite_orders_past_sla",
    "Orders now past their stage SLA (stage = status, or DELIVERY for the promised delivery)",
    ["stage"],
)
DELAYS_DETECTED = Counter(
    "alexandrite_order_delays_detected_total", "Stage SLA breaches detected (once per order and stage)", ["stage"]
)
WATCHDOG_RUNS = Counter("alexandrite_sla_watchdog_runs_total", "SLA watchdog scans", ["outcome"])
WATCHDOG_LAST_RUN = Gauge(
    "alexandrite_sla_watchdog_last_run_timestamp_seconds", "When the SLA watchdog last finished a scan"
)
NOTIFICATIONS_SENT = Counter(
    "alexandrite_notifications_sent_total", "Notifications delivered", ["channel", "kind"]
)
NOTIFICATION_FAILURES = Counter(
    "alexandrite_notification_failures_total", "Notification delivery attempts that failed", ["channel", "kind"]
)
NOTIFICATION_BACKLOG = Gauge("alexandrite_notification_backlog", "Notifications waiting to be delivered")

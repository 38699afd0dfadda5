"""Prometheus metrics of the MES service and its pricing workers (kit metrics are shared)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PRICING_JOBS_CREATED = Counter(
    "alexandrite_mes_pricing_jobs_created_total", "Pricing jobs created (one per submission)"
)
PRICING_JOBS_FINISHED = Counter(
    "alexandrite_mes_pricing_jobs_finished_total",
    "Pricing job deliveries handled by a worker, by outcome",
    ["outcome"],  # priced, failed, cancelled, duplicate
)
PRICING_FAILURES = Counter(
    "alexandrite_mes_pricing_failures_total",
    "Models that could not be priced, by reason code",
    ["code"],
)
PRICING_WORKER_BUSY = Gauge(
    "alexandrite_mes_pricing_worker_busy", "1 while this worker is pricing a model"
)
PRICING_JOB_ERRORS = Counter(
    "alexandrite_mes_pricing_job_errors_total",
    "Pricing job attempts that ended in an error and go back to the queue",
)

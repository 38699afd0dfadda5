"""The pricing worker: a separate process consuming the pricing queue, one model at a time.

Any number of workers compete for the quorum queue. A worker holds a few jobs at once
(``ALEX_PRICING_WORKER_PREFETCH``) so that one job's database steps overlap another's pricing,
but it prices one model at a time. A job is acknowledged only
after its result was committed, so a worker killed mid-job loses nothing: the job returns to
the queue and another worker prices it; the job's final state makes a second completion a
no-op, so every order is priced once.

Run it with ``alexandrite worker`` or ``python -m alexandrite.mes.worker``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError

from alexandrite.kit import metrics as kit_metrics
from alexandrite.kit.breaker import breaker_from_settings
from alexandrite.kit.db import Database
from alexandrite.kit.graphite import run_graphite_push
from alexandrite.kit.logs import configure_logging
from alexandrite.kit.loops import run_process
from alexandrite.kit.messaging.consumer import Consumer, Delivery, PermanentError
from alexandrite.kit.messaging.topology import PRICING_QUEUE, setup_topology
from alexandrite.kit.settings import Settings, get_settings
from alexandrite.kit.side_port import SidePortServer
from alexandrite.kit.storage import LocalStorage
from alexandrite.kit.tracing import configure_tracing, shutdown_tracing
from alexandrite.mes import metrics
from alexandrite.mes.dashboard import attach_cache, make_cache
from alexandrite.mes.domain import PricingJobMessage
from alexandrite.mes.pricing import jobs
from alexandrite.mes.pricing.quote import PricingConfig, PricingRejected, load_pricing, price_model
from alexandrite.models3d.formats import ModelFormatError
from alexandrite.models3d.limits import ModelLimits

log = structlog.get_logger(__name__)

DRAIN_SECONDS = 20.0  # on SIGTERM: how long the job in hand may take to finish


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class PricingWorker:
    """Handles one pricing job delivery (the kit consumer acks after it returns)."""

    db: Database
    storage: LocalStorage
    pricing: PricingConfig
    name: str
    limits: ModelLimits
    # One model priced at a time per worker, however many jobs it holds.
    pricing_slot: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))

    async def handle(self, delivery: Delivery) -> str:
        try:
            message = PricingJobMessage.model_validate_json(delivery.body)
        except ValidationError as error:
            raise PermanentError(f"invalid pricing job: {error.errors(include_url=False)[:3]}") from error
        try:
            job = await jobs.begin_job(self.db, message.job_id, worker=self.name)
        except (LookupError, ValueError) as error:
            raise PermanentError(str(error)) from error
        if isinstance(job, str):  # "duplicate" or "cancelled": nothing to price
            metrics.PRICING_JOBS_FINISHED.labels(job).inc()
            log.info("pricing_job_skipped", order_id=str(message.order_id), job_id=str(message.job_id),
                     outcome=job, worker=self.name)
            return job
        if job.attempt == 1:
            wait = (job.started_at - job.enqueued_at).total_seconds()
            kit_metrics.PRICING_QUEUE_WAIT.observe(max(wait, 0.0))
        busy = metrics.PRICING_WORKER_BUSY
        busy.inc()
        try:
            async with self.pricing_slot:  # the job's turn among those this worker holds
                clock = time.perf_counter()
                quote, failure = await self._price(job)
                elapsed = time.perf_counter() - clock
            outcome = await jobs.finish_job(
                self.db, job, worker=self.name, duration_ms=int(round(elapsed * 1000)), quote=quote,
                failure=failure,
            )
        except Exception:
            metrics.PRICING_JOB_ERRORS.inc()
            with contextlib.suppress(Exception):
                await jobs.release_job(self.db, job.job_id, worker=self.name)
            log.exception("pricing_job_error", order_id=str(job.order_id), job_id=str(job.job_id),
                          attempt=job.attempt, worker=self.name)
            raise
        finally:
            busy.dec()
        kit_metrics.PRICING_DURATION.labels(outcome).observe(elapsed)
        metrics.PRICING_JOBS_FINISHED.labels(outcome).inc()
        if outcome == "failed" and failure is not None:
            metrics.PRICING_FAILURES.labels(failure["code"][:40]).inc()
        log.info("pricing_job_done", order_id=str(job.order_id), job_id=str(job.job_id), outcome=outcome,
                 attempt=job.attempt, duration_ms=int(round(elapsed * 1000)), worker=self.name,
                 failure=failure["code"] if failure else None)
        return outcome

    async def _price(self, job: jobs.StartedJob) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(quote, None) or (None, failure): a model that cannot be priced is a result, not an error."""
        if job.alloy not in self.pricing.metal_price_per_g:
            return None, {"code": "unknown_alloy",
                          "message": f"We do not cast in {job.alloy!r}; place a new order in another metal."}
        data = await self.storage.get(job.model_key)
        try:
            return await asyncio.to_thread(_priced, data, job, self.pricing, self.limits), None
        except ModelFormatError as error:
            return None, {"code": str(error.code), "message": str(error.message)}
        except PricingRejected as error:
            failure: dict[str, Any] = {"code": str(error.code), "message": str(error.message)}
            if error.details:
                failure["details"] = error.details
            return None, failure


def _priced(data: bytes, job: jobs.StartedJob, pricing: PricingConfig, limits: ModelLimits) -> dict[str, Any]:
    """The quote as a plain JSON object, made in the pricing thread: the event loop meanwhile runs the
    database and broker steps of the other jobs this worker holds."""
    quote = price_model(data, job.filename, job.alloy, pricing, limits, confirm=job.confirm)
    return jobs.jsonable(quote)


# --- the process ----------------------------------------------------------------------------------

async def run_worker(settings: Settings, stop: asyncio.Event | None = None, *, metrics_port: int | None = None,
                     worker_name: str | None = None) -> None:
    """Consume the pricing queue until ``stop`` is set (or SIGTERM/SIGINT when no ``stop`` is given).

    On stop the worker takes no new job and lets the one in hand finish (up to DRAIN_SECONDS);
    an unfinished job stays unacknowledged and returns to the queue for another worker.
    """
    configure_logging("mes", level=settings.obs.log_level, json_output=settings.obs.log_json)
    configure_tracing("mes-worker", settings)
    name = worker_name or default_worker_name()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
    pricing = load_pricing(str(settings.pricing.config_path) if settings.pricing.config_path else None)
    # A connection for each job in hand (an overflow connection would be opened and closed per job).
    db = Database(settings.database_url("mes"), pool_size=max(2, settings.pricing.worker_prefetch),
                  idle_in_transaction_seconds=settings.db.idle_in_transaction_seconds)
    cache = make_cache(settings)  # prices change statuses the dashboard may show
    attach_cache(db, cache)
    storage = LocalStorage(settings.uploads.storage_dir, breaker=breaker_from_settings(
        "storage", settings, timeout=settings.uploads.storage_timeout_seconds))
    worker = PricingWorker(db=db, storage=storage, pricing=pricing, name=name, limits=settings.uploads.limits)
    consumer = Consumer(settings.broker.url, PRICING_QUEUE, worker.handle, prefetch=settings.pricing.worker_prefetch,
                        retry_delays_ms=settings.broker.retry_delays_ms)
    side: SidePortServer | None = None
    try:
        if metrics_port is not None:
            side = SidePortServer(settings.net.host, metrics_port, consumer.ready.is_set)
        try:
            await setup_topology(settings)
        except Exception as error:  # the consumer keeps retrying; readiness tells
            log.warning("topology_setup_failed", error=repr(error)[:300])
        log.info("pricing_worker_started", worker=name, metrics_port=side.port if side else None)
        graphite = asyncio.create_task(run_graphite_push(settings, "mes-worker", stop, instance=name))
        await consumer.run(stop, drain_seconds=DRAIN_SECONDS)
        await graphite
    finally:
        shutdown_tracing()
        for sig in installed:
            loop.remove_signal_handler(sig)
        if side is not None:
            side.close()
        await db.dispose()
        if cache is not None:
            await cache.close()
        log.info("pricing_worker_stopped", worker=name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alexandrite.mes.worker", description="Run one pricing worker.")
    parser.add_argument("--metrics-port", type=int, help="serve /metrics and /health/live on this port")
    parser.add_argument("--name", help="worker name recorded on the jobs it prices (default: host-pid)")
    args = parser.parse_args(argv)
    run_process(run_worker(get_settings(), metrics_port=args.metrics_port, worker_name=args.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

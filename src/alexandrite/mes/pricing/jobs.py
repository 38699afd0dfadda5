"""Pricing jobs: queued with the order's move to PRICE_CALCULATING, begun, released and finished by the
workers. Each step is one unit of work; a job's final state makes every order priced exactly once, however
many times its message is delivered."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from alexandrite.contracts.events import Failure, Progress, StatusChanged, status_envelope, utcnow
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.db import Database, OutgoingMessage, UnitOfWork
from alexandrite.kit.messaging.topology import PRICING_QUEUE
from alexandrite.mes import metrics, progress, repository
from alexandrite.mes.domain import (
    JOB_MESSAGE_TYPE,
    SERVICE,
    SYSTEM_ACTOR,
    JobState,
    PricingJobMessage,
    is_final,
    worker_actor,
)
from alexandrite.mes.tables import order_history, production_orders
from alexandrite.orders.records import Transition, record_transition

log = structlog.get_logger(__name__)
S = OrderStatus


def _emit(uow: UnitOfWork, order_id: uuid.UUID, transition: Transition, change: StatusChanged,
          correlation_id: str | None) -> None:
    uow.emit(status_envelope(producer=SERVICE, order_id=order_id, seq=transition.seq, change=change,
                             correlation_id=correlation_id))


def no_earlier_than(at: datetime | None) -> datetime:
    """Now, but never before the previous step (another host's clock may run a little ahead)."""
    now = utcnow()
    return max(now, at) if at is not None and at.tzinfo is not None else now


async def start_pricing(uow: UnitOfWork, order_id: uuid.UUID, *, submit_seq: int,
                        estimate: progress.QueueEstimate, not_before: datetime | None = None,
                        correlation_id: str | None = None, confirm: list[str] | None = None) -> dict[str, Any]:
    """Queue a pricing job for a SUBMITTED order and move it to PRICE_CALCULATING; returns the progress.

    ``confirm``: what the customer confirmed with this submission (e.g. ``["scale"]``), kept on the job.
    The event and the job message are queued last: nothing reaches the outbox when a step fails.
    """
    job_id = uuid.uuid4()
    now = no_earlier_than(not_before)
    await repository.insert_job(uow.session, job_id=job_id, order_id=order_id, submit_seq=submit_seq,
                                enqueued_at=now, confirm=confirm)
    queue_progress = await progress.new_job_progress(uow.session, job_id, now, estimate)
    transition = await record_transition(
        uow, production_orders, order_history, service=SERVICE, order_id=order_id, target=S.PRICE_CALCULATING,
        by=SYSTEM_ACTOR, requested_by=SERVICE, at=now,
        values={"progress": queue_progress, "quote": None, "failure": None},
    )
    _emit(uow, order_id, transition, StatusChanged(
        status=S.PRICE_CALCULATING, previous_status=transition.previous, actor=SYSTEM_ACTOR, at=now,
        progress=Progress.model_validate(queue_progress),
    ), correlation_id)
    job = PricingJobMessage(job_id=job_id, order_id=order_id, submit_seq=submit_seq, enqueued_at=now)
    uow.send(OutgoingMessage(
        exchange="",
        routing_key=PRICING_QUEUE,
        body=job.model_dump_json().encode(),
        headers={"event_type": JOB_MESSAGE_TYPE, "order_id": str(order_id), "job_id": str(job_id)},
        message_id=job_id,
        order_id=order_id,
    ))
    uow.after_commit(metrics.PRICING_JOBS_CREATED.inc)
    log.info("pricing_job_queued", order_id=str(order_id), job_id=str(job_id), **queue_progress)
    return queue_progress


@dataclass(frozen=True)
class StartedJob:
    job_id: uuid.UUID
    order_id: uuid.UUID
    submit_seq: int
    alloy: str
    model_key: str
    filename: str | None
    enqueued_at: datetime
    started_at: datetime
    attempt: int
    confirm: tuple[str, ...] = ()


async def begin_job(db: Database, job_id: uuid.UUID, *, worker: str) -> StartedJob | str:
    """Mark a job running (one more attempt, by this worker); or the outcome when there is nothing to do:
    "duplicate" (already priced or failed) or "cancelled" (the order was cancelled meanwhile)."""
    async with UnitOfWork(db) as uow:
        job = await repository.get_job(uow.session, job_id, for_update=True)
        if job is None:
            raise LookupError(f"pricing job {job_id} is unknown")
        if is_final(job.state):
            return "cancelled" if job.state == JobState.CANCELLED.value else "duplicate"
        order = await repository.get_order(uow.session, job.order_id)
        now = utcnow()
        if order is None or order.status != S.PRICE_CALCULATING.value:
            await repository.finish_job(uow.session, job_id, state=JobState.CANCELLED, now=now, duration_ms=None)
            await uow.commit()
            return "cancelled"
        model = order.model or {}
        if not model.get("key") or not order.alloy:
            raise ValueError(f"order {order.id} has no model or alloy to price")
        await repository.mark_running(uow.session, job_id, worker=worker, now=now)
        await uow.commit()
    return StartedJob(
        job_id=job_id, order_id=job.order_id, submit_seq=job.submit_seq, alloy=order.alloy,
        model_key=model["key"], filename=model.get("filename"), enqueued_at=job.enqueued_at, started_at=now,
        attempt=job.attempts + 1, confirm=tuple(job.confirm or ()),
    )


async def release_job(db: Database, job_id: uuid.UUID, *, worker: str) -> None:
    """The worker failed on this job before finishing it: it waits in the queue again."""
    async with UnitOfWork(db) as uow:
        await repository.requeue(uow.session, job_id, worker=worker)
        await uow.commit()


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    """A plain JSON object (NumPy scalars and the like become numbers)."""
    def _default(obj: Any) -> Any:
        item = getattr(obj, "item", None)
        if callable(item):
            return item()
        if hasattr(obj, "tolist"):
            return obj.tolist()
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    return json.loads(json.dumps(value, default=_default))


async def finish_job(db: Database, job: StartedJob, *, worker: str, duration_ms: int,
                     quote: dict[str, Any] | None = None, failure: dict[str, Any] | None = None,
                     correlation_id: str | None = None) -> str:
    """Record a job's result once: "priced", "failed", or "cancelled" / "duplicate" with no event.

    The order row is locked first, so a cancel and a (second) completion cannot interleave.
    """
    if (quote is None) == (failure is None):
        raise ValueError("a job finishes with either a quote or a failure")
    async with UnitOfWork(db) as uow:
        order = await repository.get_order(uow.session, job.order_id, for_update=True)
        row = await repository.get_job(uow.session, job.job_id, for_update=True)
        if order is None or row is None:
            raise LookupError(f"pricing job {job.job_id} or its order is unknown")
        if is_final(row.state):
            return "cancelled" if row.state == JobState.CANCELLED.value else "duplicate"
        now = no_earlier_than(order.status_since)
        if order.status != S.PRICE_CALCULATING.value:
            await repository.finish_job(uow.session, job.job_id, state=JobState.CANCELLED, now=now,
                                        duration_ms=None)
            await uow.commit()
            return "cancelled"
        actor = worker_actor(worker)
        if quote is not None:
            quote = _jsonable(quote)
            target, state = S.PRICE_CALCULATED, JobState.PRICED
            values: dict[str, Any] = {"quote": quote, "failure": None, "progress": None}
        else:
            target, state = S.PRICE_CALCULATION_FAILED, JobState.FAILED
            values = {"failure": failure, "quote": None, "progress": None}
        transition = await record_transition(
            uow, production_orders, order_history, service=SERVICE, order_id=job.order_id, target=target,
            by=actor, requested_by=SERVICE, at=now, values=values,
        )
        await repository.finish_job(uow.session, job.job_id, state=state, now=now, duration_ms=duration_ms,
                                    worker=worker)
        _emit(uow, job.order_id, transition, StatusChanged(
            status=target, previous_status=transition.previous, actor=actor, at=now, quote=quote,
            failure=Failure.model_validate(failure) if failure is not None else None,
        ), correlation_id)
        await uow.commit()
    return state.value

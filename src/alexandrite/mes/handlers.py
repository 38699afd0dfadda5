"""MES use cases; each is one unit of work, events and jobs leave through the outbox.

Production owns an order from SUBMITTED to PRICE_CALCULATED/FAILED (pricing) and from
MANUFACTURING_APPROVED to SHIPPED (operators). Everything else about an order reaches MES
as the other services' events (:func:`apply_event`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from alexandrite.contracts.events import Envelope, Failure, Progress, StatusChanged, status_envelope, utcnow
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.db import Database, OutgoingMessage, UnitOfWork
from alexandrite.kit.errors import ApiError, not_found
from alexandrite.kit.messaging.topology import PRICING_QUEUE
from alexandrite.orders.records import Transition, ensure_may_cancel, record_creation, record_transition
from alexandrite.kit.security import Principal
from alexandrite.mes import metrics, progress, repository
from alexandrite.mes.domain import (
    JOB_MESSAGE_TYPE,
    OPERATOR_ACTIONS,
    SERVICE,
    SYSTEM_ACTOR,
    JobState,
    PricingJobMessage,
    creation_values,
    is_final,
    projection_values,
    worker_actor,
)
from alexandrite.mes.tables import order_history, production_orders

log = structlog.get_logger(__name__)
S = OrderStatus


def _emit(uow: UnitOfWork, order_id: uuid.UUID, transition: Transition, change: StatusChanged,
          correlation_id: str | None) -> None:
    uow.emit(status_envelope(producer=SERVICE, order_id=order_id, seq=transition.seq, change=change,
                             correlation_id=correlation_id))


# --- events from the other services --------------------------------------------------------------

async def apply_event(uow: UnitOfWork, envelope: Envelope, change: StatusChanged,
                      estimate: progress.QueueEstimate) -> None:
    """Apply one status event of the shop or CRM (called in order, once, by the consumer).

    A SUBMITTED order becomes production's: in the same transaction a pricing job is created
    and queued, and the order moves on to PRICE_CALCULATING with its queue position and ETA.
    Raises IllegalTransition, LookupError (unknown order) or ValueError: all bugs.
    """
    if change.status is S.INITIATED:
        await record_creation(
            uow, production_orders, order_history, service=SERVICE, order_id=envelope.order_id,
            status=S.INITIATED, by=change.actor, seq=envelope.seq, at=change.at, values=creation_values(change),
        )
        return
    row = await repository.get_order(uow.session, envelope.order_id, for_update=True)
    if row is None:
        raise LookupError(f"order {envelope.order_id} is unknown")
    await record_transition(
        uow, production_orders, order_history, service=SERVICE, order_id=envelope.order_id,
        target=change.status, by=change.actor, requested_by=envelope.producer, seq=envelope.seq, at=change.at,
        values=projection_values(change),
    )
    if change.status is S.SUBMITTED:
        await start_pricing(uow, envelope.order_id, submit_seq=envelope.seq, estimate=estimate,
                            not_before=change.at, correlation_id=envelope.correlation_id,
                            confirm=list(change.confirm or ()))
    elif change.status is S.CANCELLED:
        await repository.cancel_active_jobs(uow.session, envelope.order_id, now=utcnow())


def _not_before(at: datetime | None) -> datetime:
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
    now = _not_before(not_before)
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


# --- operators ------------------------------------------------------------------------------------

async def advance(db: Database, principal: Principal, order_id: uuid.UUID, action: str, *,
                  tracking_number: str | None = None, carrier: str | None = None,
                  correlation_id: str | None = None) -> Transition:
    """An operator moves an order one production step on (take, complete, package, ship).

    The order row is locked while the transition is checked, so of several operators taking
    the same order at once exactly one succeeds; the others get 409 illegal_transition.
    """
    target = OPERATOR_ACTIONS[action]
    values: dict[str, Any] = {}
    if target is S.MANUFACTURING_STARTED:
        values["operator"] = principal.actor
    elif target is S.SHIPPED:
        if not tracking_number:
            raise ApiError(422, "invalid_request", "Shipping needs a tracking number.")
        values.update(tracking_number=tracking_number, carrier=carrier)
    async with UnitOfWork(db) as uow:
        row = await repository.get_order(uow.session, order_id, for_update=True)
        if row is None:
            raise not_found()
        transition = await record_transition(
            uow, production_orders, order_history, service=SERVICE, order_id=order_id, target=target,
            by=principal.actor, requested_by=SERVICE, at=_not_before(row.status_since), values=values,
        )
        _emit(uow, order_id, transition, StatusChanged(
            status=target, previous_status=transition.previous, actor=principal.actor, at=transition.at,
            tracking_number=tracking_number if target is S.SHIPPED else None,
            carrier=carrier if target is S.SHIPPED else None,
        ), correlation_id)
        await uow.commit()
    log.info("order_advanced", order_id=str(order_id), status=target.value, actor=principal.actor)
    return transition


# --- cancel on behalf of the shop or CRM ----------------------------------------------------------

async def cancel(db: Database, order_id: uuid.UUID, *, requested_by: str, actor: str, reason: str | None,
                 correlation_id: str | None = None) -> dict[str, Any]:
    """Cancel an order whose status production owns, with its pricing job.

    404 when unknown (the caller retries: the events may not have arrived yet), 409
    ``illegal_transition`` when manufacturing has started, 409 ``not_owner`` otherwise.
    """
    async with UnitOfWork(db) as uow:
        row = await repository.get_order(uow.session, order_id, for_update=True)
        if row is None:
            raise not_found()
        status = S(row.status)
        ensure_may_cancel(status, SERVICE, requested_by)
        transition = await record_transition(
            uow, production_orders, order_history, service=SERVICE, order_id=order_id, target=S.CANCELLED,
            by=actor, requested_by=requested_by, at=_not_before(row.status_since), values={"progress": None},
        )
        cancelled_jobs = await repository.cancel_active_jobs(uow.session, order_id, now=transition.at)
        _emit(uow, order_id, transition, StatusChanged(
            status=S.CANCELLED, previous_status=transition.previous, actor=actor, at=transition.at, reason=reason,
        ), correlation_id)
        await uow.commit()
    log.info("order_cancelled", order_id=str(order_id), actor=actor, requested_by=requested_by,
             cancelled_jobs=cancelled_jobs)
    return {"id": order_id, "status": S.CANCELLED.value}


# --- pricing worker -------------------------------------------------------------------------------

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
        now = _not_before(order.status_since)
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

"""MES use cases; each is one unit of work, events and jobs leave through the outbox.

Production owns an order from SUBMITTED to PRICE_CALCULATED/FAILED (pricing) and from
MANUFACTURING_APPROVED to SHIPPED (operators). Everything else about an order reaches MES
as the other services' events (:func:`apply_event`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Any

import structlog

from alexandrite.contracts.events import Envelope, StatusChanged, status_envelope, utcnow
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.errors import ApiError, not_found
from alexandrite.kit.security import Principal
from alexandrite.mes import progress, repository
from alexandrite.mes.domain import (
    OPERATOR_ACTIONS,
    SERVICE,
    creation_values,
    projection_values,
)
from alexandrite.mes.pricing.jobs import no_earlier_than, queued_in_turn, start_pricing
from alexandrite.mes.tables import order_history, production_orders
from alexandrite.orders.in_turn import InTurn, InTurnOf
from alexandrite.orders.records import Transition, ensure_may_cancel, record_creation, record_transition

log = structlog.get_logger(__name__)
S = OrderStatus


def _emit(uow: UnitOfWork, order_id: uuid.UUID, transition: Transition, change: StatusChanged,
          correlation_id: str | None) -> None:
    uow.emit(status_envelope(producer=SERVICE, order_id=order_id, seq=transition.seq, change=change,
                             correlation_id=correlation_id))


# --- events from the other services --------------------------------------------------------------

def in_turn(db: Database, estimate: progress.QueueEstimate) -> InTurnOf:
    """How an event in its turn is one statement (orders/in_turn.py): a new order's first event writes its
    row; a SUBMITTED event also queues the pricing job and moves the order on to PRICE_CALCULATING
    (:func:`queued_in_turn`, after reading the queue's figures); a CANCELLED one cancels the order's jobs,
    which only the general path does."""

    def _write(envelope: Envelope, change: StatusChanged) -> InTurn | None | Awaitable[InTurn | None]:
        if change.status is S.SUBMITTED:
            return queued_in_turn(db, envelope, change, estimate)
        if change.status is S.CANCELLED:
            return None
        if change.status is S.INITIATED:
            return InTurn(history=order_history, values=creation_values(change))
        return InTurn(history=order_history, values=projection_values(change))

    return _write


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
    transition = await record_transition(  # locks the order's row; LookupError when the order is unknown
        uow, production_orders, order_history, service=SERVICE, order_id=envelope.order_id,
        target=change.status, by=change.actor, requested_by=envelope.producer, seq=envelope.seq, at=change.at,
        values=projection_values(change),
    )
    if change.status is S.SUBMITTED:
        await start_pricing(uow, transition, estimate=estimate, correlation_id=envelope.correlation_id,
                            confirm=list(change.confirm or ()))
    elif change.status is S.CANCELLED:
        await repository.cancel_active_jobs(uow.session, envelope.order_id, now=utcnow())


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
            by=principal.actor, requested_by=SERVICE, at=no_earlier_than(row.status_since), values=values,
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
            by=actor, requested_by=requested_by, at=no_earlier_than(row.status_since), values={"progress": None},
        )
        cancelled_jobs = await repository.cancel_active_jobs(uow.session, order_id, now=transition.at)
        _emit(uow, order_id, transition, StatusChanged(
            status=S.CANCELLED, previous_status=transition.previous, actor=actor, at=transition.at, reason=reason,
        ), correlation_id)
        await uow.commit()
    log.info("order_cancelled", order_id=str(order_id), actor=actor, requested_by=requested_by,
             cancelled_jobs=cancelled_jobs)
    return {"id": order_id, "status": S.CANCELLED.value}

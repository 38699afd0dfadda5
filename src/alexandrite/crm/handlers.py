"""CRM use cases; each is one unit of work, events leave through the outbox.

CRM writes an order only while it owns the order's current status (PRICE_CALCULATED,
SHIPPED, CLOSED): approving, cancelling before manufacturing, closing. Everything else
about an order reaches CRM as the other services' events (:func:`apply_event`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from pydantic import ValidationError

from alexandrite.contracts.events import Envelope, ModelRef, Party, StatusChanged, status_envelope, utcnow
from alexandrite.contracts.order_status import CANCELLABLE, OrderStatus, check_transition, owner_of
from alexandrite.crm import repository
from alexandrite.crm.domain import (
    DELIVERED,
    SERVICE,
    carrier_actor,
    creation_values,
    delivery_time,
    projection_values,
)
from alexandrite.crm.tables import order_history, orders
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.errors import ApiError, not_found
from alexandrite.kit.peers import Peers
from alexandrite.kit.security import Principal
from alexandrite.orders.in_turn import InTurn
from alexandrite.orders.records import ensure_may_cancel, order_in_transit, record_creation, record_transition

log = structlog.get_logger(__name__)
S = OrderStatus
FORWARD_ATTEMPTS = 3


def _emit(uow: UnitOfWork, order_id: uuid.UUID, seq: int, change: StatusChanged,
          correlation_id: str | None) -> None:
    uow.emit(status_envelope(producer=SERVICE, order_id=order_id, seq=seq, change=change,
                             correlation_id=correlation_id))


def _model_ref(model: dict[str, Any] | None) -> ModelRef | None:
    if not model:
        return None
    try:
        return ModelRef.model_validate(model)
    except ValidationError:
        return None


# --- seller actions ------------------------------------------------------------------------------

async def approve(db: Database, principal: Principal, order_id: uuid.UUID,
                  correlation_id: str | None = None) -> None:
    """PRICE_CALCULATED -> MANUFACTURING_APPROVED (409 illegal_transition from any other status)."""
    async with UnitOfWork(db) as uow:
        row = await repository.get_order(uow.session, order_id, for_update=True)
        if row is None:
            raise not_found()
        transition = await record_transition(
            uow, orders, order_history, service=SERVICE, order_id=order_id, target=S.MANUFACTURING_APPROVED,
            by=principal.actor, requested_by=SERVICE,
        )
        # Self-contained for production: what was approved, at which price, for whom.
        _emit(uow, order_id, transition.seq, StatusChanged(
            status=S.MANUFACTURING_APPROVED, previous_status=transition.previous, actor=principal.actor,
            at=transition.at, alloy=row.alloy, quote=row.quote, model=_model_ref(row.model),
            owner=Party(kind=row.owner_kind, id=row.owner_id, name=row.owner_name),
        ), correlation_id)
        await uow.commit()
    log.info("order_approved", order_id=str(order_id), actor=principal.actor)


async def close(db: Database, principal: Principal, order_id: uuid.UUID, reason: str | None,
                correlation_id: str | None = None) -> None:
    """SHIPPED -> CLOSED by a seller (409 illegal_transition from any other status)."""
    async with UnitOfWork(db) as uow:
        if await repository.get_order(uow.session, order_id, for_update=True) is None:
            raise not_found()
        transition = await record_transition(
            uow, orders, order_history, service=SERVICE, order_id=order_id, target=S.CLOSED,
            by=principal.actor, requested_by=SERVICE, values={"closed_reason": reason},
        )
        _emit(uow, order_id, transition.seq, StatusChanged(
            status=S.CLOSED, previous_status=transition.previous, actor=principal.actor, at=transition.at,
            reason=reason,
        ), correlation_id)
        await uow.commit()


async def cancel_locally(db: Database, order_id: uuid.UUID, *, requested_by: str, actor: str,
                         reason: str | None, correlation_id: str | None = None) -> dict[str, Any]:
    """Cancel an order whose status CRM owns; 409 ``not_owner`` when another service owns it,
    409 ``illegal_transition`` when it is too late, 404 when unknown."""
    async with UnitOfWork(db) as uow:
        row = await repository.get_order(uow.session, order_id, for_update=True)
        if row is None:
            raise not_found()
        status = S(row.status)
        ensure_may_cancel(status, SERVICE, requested_by)
        transition = await record_transition(
            uow, orders, order_history, service=SERVICE, order_id=order_id, target=S.CANCELLED,
            by=actor, requested_by=requested_by, values={"cancel_reason": reason},
        )
        _emit(uow, order_id, transition.seq, StatusChanged(
            status=S.CANCELLED, previous_status=transition.previous, actor=actor, at=transition.at, reason=reason,
        ), correlation_id)
        await uow.commit()
    log.info("order_cancelled", order_id=str(order_id), actor=actor, requested_by=requested_by)
    return {"id": order_id, "status": S.CANCELLED.value}


async def cancel(db: Database, peers: Peers, principal: Principal, order_id: uuid.UUID, reason: str | None,
                 correlation_id: str | None = None) -> dict[str, Any]:
    """Seller cancel: done here while CRM owns the order, otherwise asked of its current owner.

    When the order is owned elsewhere nothing changes locally: the owner cancels it and this
    projection catches up from the owner's event.
    """
    for _ in range(FORWARD_ATTEMPTS):
        async with db.sessions() as session:
            row = await repository.get_order(session, order_id)
        if row is None:
            raise not_found()
        status = S(row.status)
        if status not in CANCELLABLE:
            check_transition(status, S.CANCELLED, SERVICE)  # raises: too late to cancel
        owner = owner_of(status)
        if owner == SERVICE:
            try:
                return await cancel_locally(db, order_id, requested_by=SERVICE, actor=principal.actor,
                                            reason=reason, correlation_id=correlation_id)
            except ApiError as error:
                if error.code == "not_owner":
                    continue  # approved meanwhile: ask the new owner
                raise
        try:
            answer = await peers.post(
                owner,  # type: ignore[arg-type]
                f"/internal/v1/orders/{order_id}/cancel",
                {"requested_by": SERVICE, "actor": principal.actor, "reason": reason},
            )
        except ApiError as error:
            if error.status == 404 or error.code == "not_owner":
                # The owner has not seen the order yet, or it moved on: our view lags behind.
                raise order_in_transit() from error
            raise
        log.info("order_cancel_forwarded", order_id=str(order_id), owner=owner, actor=principal.actor)
        return {"id": order_id, "status": str(answer.get("status") or S.CANCELLED.value)}
    raise order_in_transit()


async def add_note(db: Database, principal: Principal, order_id: uuid.UUID, text: str) -> dict[str, Any]:
    async with UnitOfWork(db) as uow:
        if await repository.get_order(uow.session, order_id) is None:
            raise not_found()
        row = await repository.add_note(uow.session, note_id=uuid.uuid4(), order_id=order_id,
                                        author=principal.actor, text=text, at=utcnow())
        await uow.commit()
    return {"id": row.id, "order_id": row.order_id, "author": row.author, "text": row.text, "at": row.at}


# --- carrier webhook -----------------------------------------------------------------------------

@dataclass(frozen=True)
class CarrierOutcome:
    outcome: str  # "closed" | "already_closed" | "ignored"
    orders: list[dict[str, Any]]


async def carrier_event(db: Database, tracking_number: str, event: str, occurred_at: datetime,
                        correlation_id: str | None = None) -> CarrierOutcome:
    """A carrier's tracking event: "delivered" closes every SHIPPED order in the parcel, once."""
    async with UnitOfWork(db) as uow:
        rows = await repository.orders_by_tracking(uow.session, tracking_number, for_update=True)
        if not rows:
            raise ApiError(404, "not_found", "No order was shipped with this tracking number.")
        if event.lower() != DELIVERED:
            return CarrierOutcome("ignored", [{"id": r.id, "status": r.status} for r in rows])
        pending = [r for r in rows if r.status != S.CLOSED.value]
        if not pending:
            # A repeated webhook (or the seller closed it already): nothing to do, no second event.
            return CarrierOutcome("already_closed", [{"id": r.id, "status": r.status} for r in rows])
        shipped = [r for r in pending if r.status == S.SHIPPED.value]
        if not shipped:
            check_transition(S(pending[0].status), S.CLOSED, SERVICE)  # raises IllegalTransition (409)
        now = utcnow()
        result: dict[uuid.UUID, str] = {r.id: r.status for r in rows}
        for row in shipped:
            actor = carrier_actor(row.carrier)
            transition = await record_transition(
                uow, orders, order_history, service=SERVICE, order_id=row.id, target=S.CLOSED, by=actor,
                requested_by=SERVICE, at=delivery_time(occurred_at, row.status_since, now),
                values={"closed_reason": DELIVERED},
            )
            _emit(uow, row.id, transition.seq, StatusChanged(
                status=S.CLOSED, previous_status=S.SHIPPED, actor=actor, at=transition.at, reason=DELIVERED,
                tracking_number=row.tracking_number, carrier=row.carrier,
            ), correlation_id)
            result[row.id] = S.CLOSED.value
        await uow.commit()
    log.info("orders_delivered", tracking_number=tracking_number, closed=len(shipped))
    return CarrierOutcome("closed", [{"id": oid, "status": status} for oid, status in result.items()])


# --- events from the other services --------------------------------------------------------------

def in_turn(_: Envelope, change: StatusChanged) -> InTurn:
    """An event in its turn as one statement: the projection's columns (orders/in_turn.py), or a new
    order's for its first event."""
    values = creation_values(change) if change.status is S.INITIATED else projection_values(change)
    return InTurn(history=order_history, values=values)


async def apply_event(uow: UnitOfWork, envelope: Envelope, change: StatusChanged) -> None:
    """Apply one status event to the projection (called in order, once, by the consumer).

    Raises IllegalTransition or LookupError (unknown order): both mean a bug. The consumer has already
    checked that the producer owned the order's status.
    """
    if change.status is S.INITIATED:
        await record_creation(
            uow, orders, order_history, service=SERVICE, order_id=envelope.order_id, status=S.INITIATED,
            by=change.actor, seq=envelope.seq, at=change.at, values=creation_values(change),
        )
        return
    await record_transition(  # locks the order's row; LookupError when the order is unknown
        uow, orders, order_history, service=SERVICE, order_id=envelope.order_id, target=change.status,
        by=change.actor, requested_by=envelope.producer, seq=envelope.seq, at=change.at,
        values=projection_values(change),
    )

"""Shared shape of an order's status record in each service: status, seq, history.

Each service has its own ``orders``-like table with at least the columns
``id, status, seq, created_at, status_since`` and an ``order_history`` table from
:func:`define_history`. :func:`record_transition` is the one way a service changes
an order's status: it checks the transition table, bumps ``seq``, writes history and
counts the time the order spent in the status it leaves.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    literal,
    select,
    update,
)

from alexandrite.contracts.events import utcnow
from alexandrite.contracts.order_status import CANCELLABLE, TERMINAL, OrderStatus, check_transition, owner_of
from alexandrite.kit import metrics
from alexandrite.kit.db import UnitOfWork, notify_after_commit
from alexandrite.kit.errors import ApiError


def define_history(metadata: MetaData) -> Table:
    return Table(
        "order_history",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("order_id", Uuid, nullable=False, index=True),
        Column("seq", Integer, nullable=False),
        Column("status", Text, nullable=False),
        Column("previous_status", Text, nullable=True),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("by", Text, nullable=False),
        UniqueConstraint("order_id", "seq", name="uq_order_history_order_seq"),
    )


def define_delays(metadata: MetaData, orders_table: str | None) -> Table:
    """Stage SLA breaches of an order: one row per order and stage (so one notice each).

    ``orders_table`` None: no foreign key (a partitioned orders table has no key on id alone)."""
    order_id = (Column("order_id", Uuid, ForeignKey(f"{orders_table}.id", ondelete="CASCADE"), primary_key=True)
                if orders_table else Column("order_id", Uuid, primary_key=True))
    return Table(
        "order_delays",
        metadata,
        order_id,
        Column("stage", Text, primary_key=True),
        Column("since", DateTime(timezone=True), nullable=False),
        Column("sla_seconds", Float, nullable=False),
        Column("detected_at", DateTime(timezone=True), nullable=False),
        Column("new_eta", DateTime(timezone=True), nullable=False),
    )


@dataclass(frozen=True)
class Transition:
    order_id: uuid.UUID
    previous: OrderStatus | None
    status: OrderStatus
    seq: int
    at: datetime
    by: str


def _notify(uow: UnitOfWork, previous: str | None, status: str, order_id: uuid.UUID, seq: int) -> None:
    """The database's status and order listeners hear of the change once it is committed."""
    notify_after_commit(uow, previous, status, order_id, seq)


async def current_state(uow: UnitOfWork, orders: Table, order_id: uuid.UUID) -> tuple[int, str | None]:
    """(seq, status) of an order; (0, None) when the service has not seen it yet."""
    row = (await uow.session.execute(select(orders.c.seq, orders.c.status).where(orders.c.id == order_id))).first()
    return (int(row.seq), str(row.status)) if row is not None else (0, None)


async def record_transition(
    uow: UnitOfWork,
    orders: Table,
    history: Table,
    *,
    service: str,
    order_id: uuid.UUID,
    target: OrderStatus,
    by: str,
    requested_by: str,
    seq: int | None = None,
    at: datetime | None = None,
    values: dict[str, Any] | None = None,
) -> Transition:
    """Move an existing order to ``target``; raises IllegalTransition, LookupError when unknown.

    ``seq`` is given when applying another service's event (its sequence number);
    otherwise this service is the owner and takes the next number.
    """
    row = (
        await uow.session.execute(
            select(orders.c.status, orders.c.seq, orders.c.status_since, orders.c.created_at)
            .where(orders.c.id == order_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise LookupError(f"order {order_id} is unknown")
    previous = OrderStatus(row.status)
    check_transition(previous, target, requested_by)
    at = at or utcnow()
    new_seq = seq if seq is not None else row.seq + 1
    # The row and its history line in one statement (one round trip).
    updated = (
        update(orders)
        .where(orders.c.id == order_id)
        .values(status=target.value, seq=new_seq, status_since=at, updated_at=utcnow(), **(values or {}))
        .returning(orders.c.id)
        .cte("updated")
    )
    await uow.session.execute(
        history.insert().from_select(
            ["order_id", "seq", "status", "previous_status", "at", "by"],
            select(updated.c.id, literal(new_seq, Integer), literal(target.value, Text),
                   literal(previous.value, Text), literal(at, DateTime(timezone=True)), literal(by, Text)),
        )
    )
    spent = max((at - row.status_since).total_seconds(), 0.0) if row.status_since else None
    lifetime = (max((at - row.created_at).total_seconds(), 0.0)
                if target in TERMINAL and previous not in TERMINAL and row.created_at else None)

    def _observe() -> None:
        metrics.ORDER_TRANSITIONS.labels(service, target.value).inc()
        if spent is not None:
            metrics.TIME_IN_STATUS.labels(service, previous.value).observe(spent)
        if lifetime is not None:
            metrics.ORDER_DURATION.labels(service, target.value).observe(lifetime)

    uow.after_commit(_observe)
    _notify(uow, previous.value, target.value, order_id, new_seq)
    return Transition(order_id, previous, target, new_seq, at, by)


async def record_creation(
    uow: UnitOfWork,
    orders: Table,
    history: Table,
    *,
    service: str,
    order_id: uuid.UUID,
    status: OrderStatus,
    by: str,
    seq: int = 1,
    at: datetime | None = None,
    values: dict[str, Any] | None = None,
) -> Transition:
    at = at or utcnow()
    await uow.session.execute(
        orders.insert().values(
            id=order_id, status=status.value, seq=seq, status_since=at, updated_at=at,
            **{"created_at": at, **(values or {})},
        )
    )
    await uow.session.execute(
        history.insert().values(order_id=order_id, seq=seq, status=status.value, previous_status=None,
                                at=at, by=by)
    )
    uow.after_commit(lambda: metrics.ORDER_TRANSITIONS.labels(service, status.value).inc())
    _notify(uow, None, status.value, order_id, seq)
    return Transition(order_id, None, status, seq, at, by)


async def load_history(uow_or_session: Any, history: Table, order_id: uuid.UUID) -> list[dict[str, Any]]:
    session = getattr(uow_or_session, "session", uow_or_session)
    rows = (
        await session.execute(
            select(history.c.status, history.c.at, history.c.by, history.c.seq)
            .where(history.c.order_id == order_id)
            .order_by(history.c.seq)
        )
    ).all()
    return [{"status": r.status, "at": r.at, "by": r.by, "seq": r.seq} for r in rows]


def ensure_may_cancel(status: OrderStatus, service: str, requested_by: str) -> None:
    """Raise unless ``service`` owns ``status`` and may cancel from it for ``requested_by``.

    Too late → IllegalTransition (409 illegal_transition); owned elsewhere → 409 ``not_owner``
    naming the owner, so the caller can forward the request.
    """
    status = OrderStatus(status)
    if status not in CANCELLABLE:
        check_transition(status, OrderStatus.CANCELLED, requested_by)  # raises: too late to cancel
    owner = owner_of(status)
    if owner != service:
        raise ApiError(409, "not_owner", f"The order is {status} and handled by {owner}.",
                       details={"status": status.value, "owner": owner})


def order_in_transit() -> ApiError:
    """The order's owner has not yet received the event that made it the owner: retry shortly."""
    return ApiError(409, "order_in_transit",
                    "The order is being handed between departments; try again in a few seconds.",
                    headers={"Retry-After": "2"})

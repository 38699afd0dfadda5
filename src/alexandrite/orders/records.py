"""Shared shape of an order's status record in each service: status, seq, history.

Each service has its own ``orders``-like table with at least the columns
``id, status, seq, created_at, status_since`` and an ``order_history`` table from
:func:`define_history`. :func:`record_transition` is the one way a service changes
an order's status: it checks the transition table, bumps ``seq``, writes history and
counts the time the order spent in the status it leaves.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
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
from alexandrite.kit.db import Database, UnitOfWork, notify_after_commit, outbox_args, outbox_rows_sql
from alexandrite.kit.errors import ApiError
from alexandrite.orders.one_statement import relay_wakeup


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


@dataclass
class ConsumedEvent:
    """The event a consumer is applying, with the order's row as its claim locked and read it.

    Kept on the unit (:data:`CONSUMED`) between the claim and the order's first write, which uses the row
    instead of reading it again and marks the event applied in its own statement, counting what else of
    the order waits in the inbox (:attr:`parked`). Only that first write uses it: it is dropped there."""

    orders: str
    order_id: uuid.UUID
    event_id: uuid.UUID
    seq: int | None = None
    status: str | None = None
    status_since: datetime | None = None
    created_at: datetime | None = None
    parked: int | None = None  # set by the write that marked the event


CONSUMED = "orders.consumed_event"


def take_consumed(uow: UnitOfWork, orders: Table, order_id: uuid.UUID) -> ConsumedEvent | None:
    """The consumed event to fold into this write of ``order_id`` (once), or None."""
    consumed: ConsumedEvent | None = getattr(uow, "context", {}).get(CONSUMED)
    if consumed is None or consumed.parked is not None or consumed.order_id != order_id \
            or consumed.orders != orders.name:
        return None
    return consumed


# The inbox mark and the "anything else parked?" count that end every folded write ($m: the event's id,
# $o: the order's id). The count reads the statement's snapshot, where the event is not yet marked.
def _mark_tail(event: str, order: str) -> str:
    return f"""), m AS (
    UPDATE inbox SET applied_at = now(), outcome = 'applied' WHERE event_id = {event}::uuid
)
SELECT (SELECT count(*) FROM w) AS written,
       (SELECT count(*) FROM inbox WHERE order_id = {order}::uuid AND applied_at IS NULL
                                     AND event_id <> {event}::uuid) AS parked
"""


@functools.lru_cache(maxsize=256)
def _transition_sql(orders: str, history: str, columns: tuple[str, ...]) -> str:
    """$1 id, $2 status, $3 seq, $4 at, $5 updated_at, $6 previous, $7 by, $8 event id, then ``columns``."""
    extra = "".join(f', "{name}" = ${9 + i}' for i, name in enumerate(columns))
    return (f"""WITH w AS (
    UPDATE "{orders}" SET status = $2::text, seq = $3::int, status_since = $4, updated_at = $5{extra}
     WHERE id = $1::uuid
    RETURNING id
), h AS (
    INSERT INTO "{history}" (order_id, seq, status, previous_status, at, by)
    SELECT id, $3::int, $2::text, $6::text, $4::timestamptz, $7::text FROM w
""" + _mark_tail("$8", "$1"))


@functools.lru_cache(maxsize=256)
def _creation_sql(orders: str, history: str, columns: tuple[str, ...]) -> str:
    """$1 id, $2 status, $3 seq, $4 at, $5 by, $6 event id, then ``columns`` (with created_at)."""
    names = ", ".join(f'"{name}"' for name in columns)
    params = ", ".join(f"${7 + i}" for i in range(len(columns)))
    return (f"""WITH w AS (
    INSERT INTO "{orders}" (id, status, seq, status_since, updated_at, {names})
    VALUES ($1::uuid, $2::text, $3::int, $4, $4, {params})
    RETURNING id
), h AS (
    INSERT INTO "{history}" (order_id, seq, status, previous_status, at, by)
    SELECT id, $3::int, $2::text, NULL, $4::timestamptz, $5::text FROM w
""" + _mark_tail("$6", "$1"))


def sql_type(db: Database, table: Table, name: str) -> str:
    """A column's type as PostgreSQL spells it (for casting a parameter to it)."""
    if name not in table.c:
        raise RuntimeError(f"{table.name} has no column {name!r}")
    return _compiled_type(db.engine.dialect, table, name)


@functools.lru_cache(maxsize=512)
def _compiled_type(dialect: Any, table: Table, name: str) -> str:
    return str(table.c[name].type.compile(dialect=dialect))


def bound_values(db: Database, table: Table, values: dict[str, Any], *, raw_pool: bool = False) -> list[Any]:
    """``values`` as SQLAlchemy would send them for ``table``'s columns (e.g. JSON as text). ``raw_pool``:
    for :meth:`Database.raw`, whose codec encodes JSON columns itself: those stay Python values (None is
    JSON null there, as SQLAlchemy writes it)."""
    dialect = db.engine.dialect
    out = []
    for name, value in values.items():
        if name not in table.c:  # a bug, not data that "cannot apply" (which a LookupError would say)
            raise RuntimeError(f"{table.name} has no column {name!r}")
        kind = table.c[name].type
        process = None if raw_pool and isinstance(kind, JSON) else kind._cached_bind_processor(dialect)
        out.append(process(value) if process is not None else value)
    return out


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
    When a consumer is applying an event of this order (:class:`ConsumedEvent`), the row it locked is used
    and the row, its history line and the event's inbox mark are one statement.
    """
    consumed = take_consumed(uow, orders, order_id)
    if consumed is not None:
        return await _consumed_transition(uow, orders, history, consumed, service=service, target=target,
                                          by=by, requested_by=requested_by, seq=seq, at=at, values=values)
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
    _observed(uow, service, previous, target, at, row.status_since, row.created_at)
    _notify(uow, previous.value, target.value, order_id, new_seq)
    return Transition(order_id, previous, target, new_seq, at, by)


async def _consumed_transition(
    uow: UnitOfWork, orders: Table, history: Table, consumed: ConsumedEvent, *, service: str,
    target: OrderStatus, by: str, requested_by: str, seq: int | None, at: datetime | None,
    values: dict[str, Any] | None,
) -> Transition:
    """:func:`record_transition` from the row the consumer's claim locked: one statement."""
    order_id = consumed.order_id
    if consumed.status is None or consumed.seq is None:
        raise LookupError(f"order {order_id} is unknown")
    previous = OrderStatus(consumed.status)
    check_transition(previous, target, requested_by)
    at = at or utcnow()
    new_seq = seq if seq is not None else consumed.seq + 1
    values = values or {}
    sql = _transition_sql(orders.name, history.name, tuple(values))
    conn = await uow.driver()
    row = await conn.fetchrow(sql, order_id, target.value, new_seq, at, utcnow(), previous.value, by,
                              consumed.event_id, *bound_values(uow.db, orders, values))
    if row is None or not row["written"]:  # the row was locked by the claim: cannot happen
        raise LookupError(f"order {order_id} is unknown")
    consumed.parked = int(row["parked"])
    uow.context.pop(CONSUMED, None)
    _observed(uow, service, previous, target, at, consumed.status_since, consumed.created_at)
    _notify(uow, previous.value, target.value, order_id, new_seq)
    return Transition(order_id, previous, target, new_seq, at, by)


@functools.lru_cache(maxsize=256)
def _next_transition_sql(orders: str, history: str, columns: tuple[str, ...], outbox: bool) -> str:
    """$1 id, $2 status, $3 seq, $4 at, $5 updated_at, $6 previous, $7 by, then ``columns``, then with
    ``outbox`` the unit's messages (:func:`~alexandrite.kit.db.outbox_args`): the row moves on only from
    ($6, $3 - 1), the messages are written only then; returns the history line's seq, or no row."""
    extra = "".join(f', "{name}" = ${8 + i}' for i, name in enumerate(columns))
    moved = f"""WITH w AS (
    UPDATE "{orders}" SET status = $2::text, seq = $3::int, status_since = $4, updated_at = $5{extra}
     WHERE id = $1::uuid AND seq = $3::int - 1 AND status = $6::text
    RETURNING id
), h AS (
    INSERT INTO "{history}" (order_id, seq, status, previous_status, at, by)
    SELECT id, $3::int, $2::text, $6::text, $4::timestamptz, $7::text FROM w
    RETURNING seq
)"""
    if not outbox:
        return moved + "\nSELECT seq FROM h\n"
    return moved + f""", x AS (
    {outbox_rows_sql(8 + len(columns))}
     WHERE EXISTS (SELECT 1 FROM w)
    RETURNING 1
)
SELECT seq, {relay_wakeup()} AS relay_woken FROM h
"""


async def record_next_transition(
    uow: UnitOfWork,
    orders: Table,
    history: Table,
    *,
    service: str,
    after: Transition,
    target: OrderStatus,
    by: str,
    requested_by: str,
    at: datetime | None = None,
    values: dict[str, Any] | None = None,
    created_at: datetime | None = None,
    with_messages: bool = False,
) -> Transition:
    """:func:`record_transition` right after ``after``, a transition this unit made (so the order's row is
    locked and its status, seq and status_since known): no read, the row and its history line are one
    statement on the unit's connection. LookupError when the row is not where ``after`` left it.
    ``created_at``: the order's, for the lifetime metric of a terminal ``target``. ``with_messages``: the
    messages the unit queued so far are written by this statement (not by the commit)."""
    check_transition(after.status, target, requested_by)
    at = at or utcnow()
    new_seq = after.seq + 1
    values = values or {}
    messages = uow.take_messages() if with_messages else []
    conn = await uow.driver()
    row = await conn.fetchrow(_next_transition_sql(orders.name, history.name, tuple(values), bool(messages)),
                              after.order_id, target.value, new_seq, at, utcnow(), after.status.value, by,
                              *bound_values(uow.db, orders, values), *(outbox_args(messages) if messages else ()))
    if row is None:
        raise LookupError(f"order {after.order_id} is not at seq {after.seq} in {after.status}")
    _observed(uow, service, after.status, target, at, after.at, created_at)
    _notify(uow, after.status.value, target.value, after.order_id, new_seq)
    return Transition(after.order_id, after.status, target, new_seq, at, by)


def _observed(uow: UnitOfWork, service: str, previous: OrderStatus, target: OrderStatus, at: datetime,
              status_since: datetime | None, created_at: datetime | None) -> None:
    """The transition's metrics, counted once the unit committed."""
    uow.after_commit(functools.partial(observe_transition, service, previous, target, at, status_since, created_at))


def observe_transition(service: str, previous: OrderStatus, target: OrderStatus, at: datetime,
                       status_since: datetime | None, created_at: datetime | None) -> None:
    """A committed transition's metrics: the count, the time spent in ``previous`` (when ``status_since``
    is known) and, for a terminal ``target``, the order's lifetime."""
    metrics.ORDER_TRANSITIONS.labels(service, target.value).inc()
    if status_since is not None:
        metrics.TIME_IN_STATUS.labels(service, previous.value).observe(max((at - status_since).total_seconds(), 0.0))
    if target in TERMINAL and previous not in TERMINAL and created_at is not None:
        metrics.ORDER_DURATION.labels(service, target.value).observe(max((at - created_at).total_seconds(), 0.0))


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
    consumed = take_consumed(uow, orders, order_id)
    if consumed is not None:  # the order's row, its history line and the event's inbox mark: one statement
        columns = {"created_at": at, **(values or {})}
        conn = await uow.driver()
        row = await conn.fetchrow(_creation_sql(orders.name, history.name, tuple(columns)), order_id,
                                  status.value, seq, at, by, consumed.event_id, *bound_values(uow.db, orders, columns))
        consumed.parked = int(row["parked"])
        uow.context.pop(CONSUMED, None)
    else:
        await _insert_order(uow, orders, history, order_id=order_id, status=status, by=by, seq=seq, at=at,
                            values=values)
    uow.after_commit(lambda: metrics.ORDER_TRANSITIONS.labels(service, status.value).inc())
    _notify(uow, None, status.value, order_id, seq)
    return Transition(order_id, None, status, seq, at, by)


async def _insert_order(uow: UnitOfWork, orders: Table, history: Table, *, order_id: uuid.UUID,
                        status: OrderStatus, by: str, seq: int, at: datetime, values: dict[str, Any] | None) -> None:
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

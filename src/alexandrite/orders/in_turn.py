"""An order event in its turn, applied in ONE statement: no BEGIN and no COMMIT of its own.

The common case of a consumed event: it is the order's next (``seq`` = the row's + 1), it left the status
the row is in (``previous_status``), its producer owned that status and the move is legal. Then the
order's advisory lock, the row's update, its history line, the event's inbox row (already marked
applied) and what else the service writes for it (a webhook delivery) are one data-modifying statement
on the raw pool, which PostgreSQL runs as its own transaction: one round trip instead of four (BEGIN,
claim, write, COMMIT; :mod:`alexandrite.orders.events`).

The statement writes only when the row is where the event expects it and the inbox has not seen the
event; otherwise it writes nothing and the consumer takes the general path (claim, checks, parking,
dead-lettering), which says why. It takes the order's advisory lock first, as the general path does, so
the two serialise per order in the same way; a row changed while it waited is re-checked by PostgreSQL
on its latest version. A successor *parked* while it waited was committed after the statement's
snapshot: it is counted by ``inbox_parked()``, a VOLATILE function whose query takes a snapshot of its own
once the row is locked. A non-zero count makes the consumer apply the parked events in a unit of its own.

An order's first event (INITIATED, seq 1) is one statement too (:func:`creation_sql`): the row is inserted
only when neither the order nor the event is known, and a row or inbox row committed while it waited for the
lock is caught by ``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table

from alexandrite.contracts.events import Envelope, StatusChanged, utcnow
from alexandrite.contracts.order_status import IllegalTransition, OrderStatus, check_transition, owner_of
from alexandrite.kit import metrics
from alexandrite.kit.db import Database, StatementUnitOfWork, notify_after_commit
from alexandrite.orders.records import Transition, bound_values, observe_transition, sql_type

# Parameters of the statement: $1 lock key, $2 order id, $3 status, $4 seq, $5 at, $6 updated_at,
# $7 status left, $8 event id, $9 by, $10 event type, $11 envelope; with a next move (:class:`MovesOn`) its
# status, at and by as $12, $13, $14; then a service's tail (from :data:`TAIL_FIRST`, or
# :data:`MOVED_TAIL_FIRST` after a next move), then the columns of :attr:`InTurn.values`.
TAIL_FIRST = 12
MOVED_TAIL_FIRST = 15


@dataclass(frozen=True)
class MovesOn:
    """The service's own next move, made by the same statement right after the event's: the order's row
    ends in ``status`` (seq + 1, since ``at``), with a history line for each of the two moves."""

    status: OrderStatus
    at: datetime
    by: str


@dataclass(frozen=True)
class InTurn:
    """What a service writes for an event in its turn: the order row's columns besides the status, and
    optionally more CTEs after ``w`` (the updated row, returning ``id`` and :attr:`returning`), each
    starting with a comma, whose parameters start at ``$12`` (:data:`TAIL_FIRST`), with select-list
    expressions of their own (``selected``, each starting with a comma)."""

    history: Table
    values: dict[str, Any] = field(default_factory=dict)
    returning: str = ""
    tail: str = ""
    tail_args: tuple[Any, ...] = ()
    selected: str = ""
    moves_on: MovesOn | None = None
    after_commit: tuple[Callable[[], None], ...] = ()  # besides the listeners and the transitions' metrics


# A service's way to say how an event in its turn is written (at once, or after reading what it needs);
# None: the general path only.
InTurnOf = Callable[[Envelope, StatusChanged], "InTurn | None | Awaitable[InTurn | None]"]


@functools.lru_cache(maxsize=256)
def in_turn_sql(orders: str, history: str, columns: tuple[str, ...], tail_params: int, returning: str,
                tail: str, selected: str, moves_on: bool = False) -> str:
    first = (MOVED_TAIL_FIRST if moves_on else TAIL_FIRST) + tail_params
    extra = "".join(f', "{name}" = ${first + i}' for i, name in enumerate(columns))
    ends = ("status = $12::text, seq = $4::int + 1, status_since = $13" if moves_on
            else "status = $3::text, seq = $4::int, status_since = $5")
    next_line = ("\n    UNION ALL SELECT id, $4::int + 1, $12::text, $3::text, $13::timestamptz, $14::text FROM w"
                 if moves_on else "")
    return f"""WITH locked AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0)) AS l),
old AS (SELECT seq, status_since, created_at FROM "{orders}" WHERE id = $2::uuid),
w AS (
    UPDATE "{orders}" o SET {ends}, updated_at = $6{extra}
      FROM locked
     WHERE o.id = $2::uuid AND o.seq = $4::int - 1 AND o.status = $7::text
       AND NOT EXISTS (SELECT 1 FROM inbox WHERE event_id = $8::uuid)
    RETURNING o.id{returning}
), h AS (
    INSERT INTO "{history}" (order_id, seq, status, previous_status, at, by)
    SELECT id, $4::int, $3::text, $7::text, $5::timestamptz, $9::text FROM w{next_line}
), i AS (
    INSERT INTO inbox (event_id, order_id, seq, type, envelope, applied_at, outcome)
    SELECT $8::uuid, id, $4::int, $10::text, $11::jsonb, now(), 'applied' FROM w
    ON CONFLICT (event_id) DO NOTHING
){tail}
SELECT (SELECT count(*) FROM w) AS written, (SELECT inbox_parked(id, $8::uuid) FROM w) AS parked,
       old.seq AS old_seq, old.status_since, old.created_at{selected}
  FROM (VALUES (1)) AS one (x) LEFT JOIN old ON true
"""


@functools.lru_cache(maxsize=256)
def creation_sql(orders: str, history: str, columns: tuple[tuple[str, str], ...]) -> str:
    """An order's first event in one statement: the order's advisory lock, its new row, its history line and
    the event's inbox row (marked applied), written only when neither the order nor the event is known
    (a row or an inbox row committed while the statement waited for the lock is caught by ON CONFLICT).

    $1 lock key, $2 order id, $3 status, $4 seq, $5 at, $6 event id, $7 by, $8 event type, $9 envelope,
    then ``columns`` ((name, SQL type) pairs: a SELECT does not take its parameters' types from the
    columns it fills, as VALUES does, so each is cast)."""
    names = "".join(f', "{name}"' for name, _ in columns)
    params = "".join(f", ${10 + i}::{kind}" for i, (_, kind) in enumerate(columns))
    return f"""WITH locked AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0)) AS l),
w AS (
    INSERT INTO "{orders}" (id, status, seq, status_since, updated_at{names})
    SELECT $2::uuid, $3::text, $4::int, $5::timestamptz, $5::timestamptz{params} FROM locked
     WHERE NOT EXISTS (SELECT 1 FROM "{orders}" WHERE id = $2::uuid)
       AND NOT EXISTS (SELECT 1 FROM inbox WHERE event_id = $6::uuid)
    ON CONFLICT DO NOTHING
    RETURNING id
), h AS (
    INSERT INTO "{history}" (order_id, seq, status, previous_status, at, by)
    SELECT id, $4::int, $3::text, NULL, $5::timestamptz, $7::text FROM w
), i AS (
    INSERT INTO inbox (event_id, order_id, seq, type, envelope, applied_at, outcome)
    SELECT $6::uuid, id, $4::int, $8::text, $9::jsonb, now(), 'applied' FROM w
    ON CONFLICT (event_id) DO NOTHING
)
SELECT (SELECT count(*) FROM w) AS written, (SELECT inbox_parked(id, $6::uuid) FROM w) AS parked
"""


def is_creation(envelope: Envelope, change: StatusChanged) -> bool:
    """The order's first event, which the one creation statement may apply."""
    return change.status is OrderStatus.INITIATED and change.previous_status is None and envelope.seq == 1


def may_apply_in_turn(envelope: Envelope, change: StatusChanged) -> OrderStatus | None:
    """The status the event left, when the one statement may apply it: not a creation, the producer owned
    that status and may make the move. None: the general path decides (and says why not)."""
    previous = change.previous_status
    if previous is None or envelope.seq < 2 or owner_of(previous) != envelope.producer:
        return None
    try:
        check_transition(previous, change.status, envelope.producer)
    except IllegalTransition:
        return None
    return previous


@dataclass(frozen=True)
class Applied:
    """An event applied in its turn: the transition, and how many other events of the order are parked."""

    transition: Transition
    parked: int


async def apply_in_turn(db: Database, orders: Table, envelope: Envelope, change: StatusChanged, write: InTurn,
                        *, service: str) -> Applied | None:
    """Apply the event in one statement; None when it wrote nothing (take the general path)."""
    if is_creation(envelope, change):
        return await _create_in_turn(db, orders, envelope, change, write, service=service)
    previous = may_apply_in_turn(envelope, change)
    if previous is None:
        return None
    uow = StatementUnitOfWork(db)
    target, at, then = change.status, change.at, write.moves_on
    notify_after_commit(uow, previous.value, target.value, envelope.order_id, envelope.seq)
    moved: tuple[Any, ...] = ()
    if then is not None:
        check_transition(target, then.status, service)
        notify_after_commit(uow, target.value, then.status.value, envelope.order_id, envelope.seq + 1)
        moved = (then.status.value, then.at, then.by)
    for callback in write.after_commit:
        uow.after_commit(callback)
    sql = in_turn_sql(orders.name, write.history.name, tuple(write.values), len(write.tail_args), write.returning,
                      write.tail, write.selected, then is not None)
    row = await uow.commit(
        sql, str(envelope.order_id), envelope.order_id, target.value, envelope.seq, at, utcnow(), previous.value,
        envelope.event_id, change.actor, envelope.type, envelope.model_dump(mode="json"), *moved, *write.tail_args,
        *bound_values(db, orders, write.values, raw_pool=True), applied=lambda found: bool(found["written"]))
    if not row["written"]:
        return None
    # The time in the status left, from status_since as the statement's snapshot saw it: only when the row
    # had not moved on meanwhile (then the statement updated a later version than it read).
    since = row["status_since"] if row["old_seq"] == envelope.seq - 1 else None
    observe_transition(service, previous, target, at, since, row["created_at"])
    if then is not None:
        observe_transition(service, target, then.status, then.at, at, row["created_at"])
    return Applied(Transition(envelope.order_id, previous, target, envelope.seq, at, change.actor),
                   int(row["parked"]))


async def _create_in_turn(db: Database, orders: Table, envelope: Envelope, change: StatusChanged, write: InTurn,
                          *, service: str) -> Applied | None:
    """The order's first event in one statement (:func:`creation_sql`); None when it wrote nothing. A write
    with more than the order's columns (a tail, a next move, after-commit work) takes the general path."""
    if write.tail or write.returning or write.selected or write.moves_on is not None or write.after_commit:
        return None
    uow = StatementUnitOfWork(db)
    target, at = change.status, change.at
    notify_after_commit(uow, None, target.value, envelope.order_id, envelope.seq)
    columns = {"created_at": at, **write.values}
    kinds = tuple((name, sql_type(db, orders, name)) for name in columns)
    row = await uow.commit(
        creation_sql(orders.name, write.history.name, kinds), str(envelope.order_id), envelope.order_id,
        target.value, envelope.seq, at, envelope.event_id, change.actor, envelope.type,
        envelope.model_dump(mode="json"), *bound_values(db, orders, columns, raw_pool=True),
        applied=lambda found: bool(found["written"]))
    if not row["written"]:
        return None
    metrics.ORDER_TRANSITIONS.labels(service, target.value).inc()
    return Applied(Transition(envelope.order_id, None, target, envelope.seq, at, change.actor), int(row["parked"]))

"""Idempotent, in-order application of order events.

Every order event carries a per-order ``seq``. The inbox records each ``event_id``
once (duplicates are dropped); an event that arrives before its predecessor is parked
in the inbox and applied, in the same transaction, as soon as the gap is filled, inside a span that
continues the parked event's own trace (the envelope carries its ``traceparent``), not the trace of
the predecessor that unblocked it.
The caller's unit of work commits; the message is acknowledged only after that.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext

import structlog
from sqlalchemy import Integer, Table, Text, Uuid, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from alexandrite.contracts.events import Envelope
from alexandrite.kit.db import UnitOfWork
from alexandrite.kit.messaging.tables import INBOX
from alexandrite.kit.tracing import SpanKind, message_span
from alexandrite.orders.records import CONSUMED, ConsumedEvent

log = structlog.get_logger(__name__)

CurrentSeq = Callable[[uuid.UUID], Awaitable[int]]
Apply = Callable[[Envelope], Awaitable[None]]


async def lock_order(session: AsyncSession, order_id: uuid.UUID) -> None:
    """Serialise work on one order across processes, even before its row exists."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": str(order_id)}
    )


# The order's lock, then the inbox row: one round trip. The lock is taken (the materialised CTE runs first)
# before the row is inserted; the conflict check on event_id sees every committed row, whatever the snapshot.
_CLAIM = text("""
WITH locked AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtextextended(:key, 0)))
INSERT INTO inbox (event_id, order_id, seq, type, envelope)
SELECT :event_id, :order_id, :seq, :type, :envelope FROM locked
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
""").bindparams(bindparam("event_id", type_=Uuid), bindparam("order_id", type_=Uuid), bindparam("seq", type_=Integer),
                bindparam("type", type_=Text), bindparam("envelope", type_=JSONB))

# The applied event marked, and whether any other event of the order waits in the inbox: one round trip.
# (The count reads the statement's snapshot, in which the marked row is not yet marked: it is excluded.)
_MARK_AND_COUNT_PARKED = text("""
WITH marked AS (UPDATE inbox SET applied_at = now(), outcome = 'applied' WHERE event_id = :event_id)
SELECT count(*) FROM inbox WHERE order_id = :order_id AND applied_at IS NULL AND event_id <> :event_id
""").bindparams(bindparam("event_id", type_=Uuid), bindparam("order_id", type_=Uuid))


# The delivered event's claim in one round trip: the order's lock, the inbox row, and the order's row locked
# and read (seq, status and what the transition's metrics need). The advisory lock comes first (the
# materialised CTE feeds both the insert and the join). The row is read FOR UPDATE: in READ COMMITTED a row
# changed by a transaction that committed while this one waited for the lock is returned as committed, not
# as this statement's snapshot (taken before the lock) saw it. A row *created* meanwhile is not seen at
# all: the caller reads again when the row is missing and the event is not the order's first.
@functools.lru_cache(maxsize=16)
def claim_sql(orders: str) -> str:
    """$1 lock key, $2 event id, $3 order id, $4 seq, $5 type, $6 envelope (JSON text)."""
    return f"""WITH locked AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0)) AS l),
claimed AS (
    INSERT INTO inbox (event_id, order_id, seq, type, envelope)
    SELECT $2::uuid, $3::uuid, $4::int, $5::text, $6::jsonb FROM locked
    ON CONFLICT (event_id) DO NOTHING
    RETURNING 1
), cur AS (
    SELECT o.seq, o.status, o.status_since, o.created_at FROM locked, "{orders}" o WHERE o.id = $3::uuid
    FOR UPDATE OF o
)
SELECT (SELECT count(*) FROM claimed) AS claimed, cur.seq, cur.status, cur.status_since, cur.created_at,
       (SELECT count(*) FROM inbox WHERE order_id = $3::uuid AND applied_at IS NULL AND event_id <> $2::uuid)
         AS parked
  FROM (VALUES (1)) AS one (x) LEFT JOIN cur ON true
"""


_STATE_SQL = "SELECT seq, status, status_since, created_at FROM \"{orders}\" WHERE id = $1::uuid FOR UPDATE"


async def claim_event(uow: UnitOfWork, orders: Table, envelope: Envelope) -> ConsumedEvent | None:
    """Claim the delivered event for this unit; None when it was claimed before (a duplicate).

    Otherwise the order's row is locked and read into the returned :class:`ConsumedEvent`, which is kept
    on the unit for the order's first write (:func:`~alexandrite.orders.records.take_consumed`)."""
    return (await claim(uow, orders, envelope))[0]


async def claim(uow: UnitOfWork, orders: Table, envelope: Envelope) -> tuple[ConsumedEvent | None, int]:
    """:func:`claim_event`, and how many other events of the order waited in the inbox (as the statement's
    snapshot saw them: for a duplicate, whether a successor may be left to apply)."""
    conn = await uow.driver()
    row = await conn.fetchrow(claim_sql(orders.name), str(envelope.order_id), envelope.event_id,
                              envelope.order_id, envelope.seq, envelope.type, envelope.model_dump_json())
    parked = int(row["parked"])
    if not row["claimed"]:
        return None, parked
    if row["seq"] is None and envelope.seq > 1:  # created after the statement's snapshot? read it afresh
        row = await conn.fetchrow(_STATE_SQL.format(orders=orders.name), envelope.order_id)
    consumed = ConsumedEvent(orders=orders.name, order_id=envelope.order_id, event_id=envelope.event_id)
    if row is not None and row["seq"] is not None:
        consumed.seq, consumed.status = int(row["seq"]), str(row["status"])
        consumed.status_since, consumed.created_at = row["status_since"], row["created_at"]
    uow.context[CONSUMED] = consumed
    return consumed, parked


async def accept_claimed(
    uow: UnitOfWork, envelope: Envelope, consumed: ConsumedEvent, *, current_seq: CurrentSeq, apply: Apply
) -> str:
    """:func:`accept_in_order` for an event claimed with :func:`claim_event`: "stale", "deferred" or "ok".

    In order and with nothing parked, ``apply``'s write of the order also marks the event (no statement of
    its own here); otherwise the event is marked here and parked successors are applied as before.
    """
    seq = consumed.seq or 0
    if envelope.seq <= seq:
        uow.context.pop(CONSUMED, None)
        log.warning("stale_event", order_id=str(envelope.order_id), seq=envelope.seq, current=seq,
                    type=envelope.type)
        await _mark(uow.session, envelope.event_id, "stale")
        return "stale"
    if envelope.seq > seq + 1:
        uow.context.pop(CONSUMED, None)
        log.info("event_parked", order_id=str(envelope.order_id), seq=envelope.seq, current=seq)
        return "deferred"
    await apply(envelope)
    if consumed.parked is None:  # apply wrote no order row through the records: mark it here
        uow.context.pop(CONSUMED, None)
        parked = (
            await uow.session.execute(_MARK_AND_COUNT_PARKED, {"event_id": envelope.event_id,
                                                               "order_id": envelope.order_id})
        ).scalar_one()
    else:
        parked = consumed.parked
    if parked:
        await apply_parked(uow.session, envelope.order_id, current_seq=current_seq, apply=apply)
    return "ok"


async def accept_in_order(
    session: AsyncSession, envelope: Envelope, *, current_seq: CurrentSeq, apply: Apply
) -> str:
    """Returns "duplicate", "stale", "deferred" or "ok" (applied, with any parked successors).

    In the common case (in order, nothing parked) that is three round trips besides ``apply``: claim
    (lock + inbox row), the order's current seq, mark (+ is anything parked).
    """
    inserted = (
        await session.execute(_CLAIM, {
            "key": str(envelope.order_id), "event_id": envelope.event_id, "order_id": envelope.order_id,
            "seq": envelope.seq, "type": envelope.type, "envelope": envelope.model_dump(mode="json"),
        })
    ).scalar_one_or_none()
    if inserted is None:
        return "duplicate"
    seq = await current_seq(envelope.order_id)
    if envelope.seq <= seq:
        log.warning("stale_event", order_id=str(envelope.order_id), seq=envelope.seq, current=seq,
                    type=envelope.type)
        await _mark(session, envelope.event_id, "stale")
        return "stale"
    if envelope.seq > seq + 1:
        log.info("event_parked", order_id=str(envelope.order_id), seq=envelope.seq, current=seq)
        return "deferred"
    await apply(envelope)
    parked = (
        await session.execute(_MARK_AND_COUNT_PARKED, {"event_id": envelope.event_id,
                                                       "order_id": envelope.order_id})
    ).scalar_one()
    if parked:
        await apply_parked(session, envelope.order_id, current_seq=current_seq, apply=apply)
    return "ok"


async def apply_parked(session: AsyncSession, order_id: uuid.UUID, *, current_seq: CurrentSeq,
                       apply: Apply) -> None:
    """Apply the order's parked events that are now in turn, each in its own trace, and mark them."""
    while True:
        seq = await current_seq(order_id)
        row = (
            await session.execute(
                select(INBOX.c.event_id, INBOX.c.envelope)
                .where(INBOX.c.order_id == order_id, INBOX.c.seq == seq + 1,
                       INBOX.c.applied_at.is_(None))
                .limit(1)
            )
        ).first()
        if row is None:
            return
        parked_envelope = Envelope.model_validate(row.envelope)
        with _in_own_trace(parked_envelope):
            await apply(parked_envelope)
        await _mark(session, row.event_id, "applied")


def _in_own_trace(envelope: Envelope) -> AbstractContextManager[object]:
    """A span in the trace the parked event was emitted in (what it does belongs to that trace)."""
    if not envelope.traceparent:
        return nullcontext()
    return message_span(f"{envelope.type} apply parked", SpanKind.INTERNAL, {"traceparent": envelope.traceparent},
                        **{"alexandrite.order_id": str(envelope.order_id), "alexandrite.message_type": envelope.type,
                           "alexandrite.seq": envelope.seq})


async def _mark(session: AsyncSession, event_id: uuid.UUID, outcome: str) -> None:
    await session.execute(
        update(INBOX).where(INBOX.c.event_id == event_id).values(applied_at=func.now(), outcome=outcome)
    )


async def parked_count(session: AsyncSession) -> int:
    return int(
        (await session.execute(select(func.count()).select_from(INBOX).where(INBOX.c.applied_at.is_(None))))
        .scalar_one()
    )

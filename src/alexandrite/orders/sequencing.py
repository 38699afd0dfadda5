"""Idempotent, in-order application of order events.

Every order event carries a per-order ``seq``. The inbox records each ``event_id``
once (duplicates are dropped); an event that arrives before its predecessor is parked
in the inbox and applied, in the same transaction, as soon as the gap is filled, inside a span that
continues the parked event's own trace (the envelope carries its ``traceparent``), not the trace of
the predecessor that unblocked it.
The caller's unit of work commits; the message is acknowledged only after that.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext

import structlog
from sqlalchemy import Integer, Text, Uuid, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from alexandrite.contracts.events import Envelope
from alexandrite.kit.messaging.tables import INBOX
from alexandrite.kit.tracing import SpanKind, message_span

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
    if not parked:
        return "ok"
    while True:
        seq = await current_seq(envelope.order_id)
        row = (
            await session.execute(
                select(INBOX.c.event_id, INBOX.c.envelope)
                .where(INBOX.c.order_id == envelope.order_id, INBOX.c.seq == seq + 1,
                       INBOX.c.applied_at.is_(None))
                .limit(1)
            )
        ).first()
        if row is None:
            return "ok"
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

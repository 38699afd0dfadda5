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
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
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


async def accept_in_order(
    session: AsyncSession, envelope: Envelope, *, current_seq: CurrentSeq, apply: Apply
) -> str:
    """Returns "duplicate", "stale", "deferred" or "ok" (applied, with any parked successors)."""
    await lock_order(session, envelope.order_id)
    inserted = (
        await session.execute(
            insert(INBOX)
            .values(
                event_id=envelope.event_id,
                order_id=envelope.order_id,
                seq=envelope.seq,
                type=envelope.type,
                envelope=envelope.model_dump(mode="json"),
            )
            .on_conflict_do_nothing(index_elements=[INBOX.c.event_id])
            .returning(INBOX.c.event_id)
        )
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
    await _mark(session, envelope.event_id, "applied")
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
        parked = Envelope.model_validate(row.envelope)
        with _in_own_trace(parked):
            await apply(parked)
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

"""Applies the shop's and CRM's order events to the production projection: in order, once.

A SUBMITTED event hands the order to production: applying it also queues the pricing job
and emits ``mes.order.price_calculating``, all in the unit of work that records the event.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import delete

from alexandrite.contracts.events import STATUS_EVENT_VERSION, Envelope, parse_status_change, status_event_type
from alexandrite.contracts.order_status import IllegalTransition
from alexandrite.kit.db import Database, OutgoingMessage, UnitOfWork
from alexandrite.kit.messaging.consumer import Delivery, PermanentError
from alexandrite.kit.messaging.sequencing import accept_in_order
from alexandrite.kit.messaging.topology import dead_letter_queue, events_queue
from alexandrite.kit.order_records import current_seq
from alexandrite.mes import handlers
from alexandrite.mes.domain import PRODUCERS, SERVICE, WrongProducer
from alexandrite.mes.progress import QueueEstimate, QueueProbe
from alexandrite.mes.tables import inbox, production_orders

log = structlog.get_logger(__name__)

# An event that fails with one of these can never apply: the services disagree about the order.
CANNOT_APPLY = (IllegalTransition, LookupError, WrongProducer, ValueError)


def parse_delivery(delivery: Delivery) -> Envelope:
    """The envelope of a delivery; PermanentError for anything that can never be applied."""
    try:
        envelope = Envelope.model_validate_json(delivery.body)
        change = parse_status_change(envelope)
    except ValidationError as error:
        raise PermanentError(f"invalid event: {error.errors(include_url=False)[:3]}") from error
    if envelope.version != STATUS_EVENT_VERSION:
        raise PermanentError(f"unsupported event version {envelope.version} of {envelope.type}")
    if envelope.producer not in PRODUCERS:
        raise PermanentError(f"unexpected producer {envelope.producer!r} of {envelope.type}")
    if envelope.type != status_event_type(envelope.producer, change.status):
        raise PermanentError(f"event type {envelope.type!r} does not match its payload ({change.status})")
    return envelope


def _dead_letter(envelope: Envelope, error: str) -> OutgoingMessage:
    """A parked event that failed when its turn came, sent to the DLQ through the outbox."""
    queue = events_queue(SERVICE)
    return OutgoingMessage(
        exchange="",
        routing_key=dead_letter_queue(queue),
        body=envelope.model_dump_json().encode(),
        headers={"event_type": envelope.type, "order_id": str(envelope.order_id), "seq": envelope.seq,
                 "x-original-queue": queue, "x-error": error[:1000], "x-dead-lettered-at": time.time()},
        message_id=envelope.event_id,
        order_id=envelope.order_id,
    )


async def handle_event(db: Database, delivery: Delivery, estimate: QueueEstimate | None = None) -> str:
    """Returns the inbox outcome: "ok", "duplicate", "stale" or "deferred" (parked until its turn).

    An event that cannot apply raises PermanentError (dead-lettered, nothing kept). A *parked*
    event that fails when its predecessor arrives must not take that innocent predecessor down
    with it: its savepoint is rolled back, its inbox row removed (so a replay is processed
    afresh) and it goes to the dead-letter queue through the outbox, in the same transaction.
    """
    envelope = parse_delivery(delivery)
    estimate = estimate or QueueEstimate()
    async with UnitOfWork(db) as uow:
        broken: list[tuple[Envelope, str]] = []

        async def _apply(env: Envelope) -> None:
            try:
                async with uow.session.begin_nested():
                    await handlers.apply_event(uow, env, parse_status_change(env), estimate)
            except CANNOT_APPLY as error:
                reason = f"{env.type} seq {env.seq} of order {env.order_id} cannot apply: {error}"
                if env.event_id == envelope.event_id:
                    raise PermanentError(reason) from error
                broken.append((env, reason))

        outcome = await accept_in_order(
            uow.session, envelope, current_seq=lambda oid: current_seq(uow, production_orders, oid), apply=_apply
        )
        for env, reason in broken:
            await uow.session.execute(delete(inbox).where(inbox.c.event_id == env.event_id))
            uow.send(_dead_letter(env, reason))
            log.error("parked_event_dead_lettered", order_id=str(env.order_id), seq=env.seq, type=env.type,
                      error=reason[:300])
        await uow.commit()
    return outcome


def event_handler(app: FastAPI) -> Callable[[Delivery], Awaitable[str]]:
    async def _handler(delivery: Delivery) -> str:
        settings = app.state.settings
        probe: QueueProbe | None = getattr(app.state, "pricing_probe", None)
        consumers = await probe.consumers() if probe is not None else 1
        estimate = QueueEstimate(consumers=consumers, default_seconds=settings.pricing_seconds_estimate)
        return await handle_event(app.state.db, delivery, estimate)

    return _handler

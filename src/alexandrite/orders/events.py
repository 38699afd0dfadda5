"""The one way a service consumes the other services' order events: validate, then apply in order, once,
and only from the service that owns the order's current status (the single-writer rule, checked here for
every service so no projection can be moved by a service that did not own the step).

An event in its turn whose whole write the service can state in advance (``in_turn``) is one statement
(:mod:`alexandrite.orders.in_turn`). Otherwise, or when that statement finds the order elsewhere, an event
costs four statements: BEGIN, the claim (the order's lock, the inbox row and the order's row locked and
read), the service's write of the order (row, history line and the event's inbox mark with a count of what
else is parked; see :func:`~alexandrite.orders.records.record_transition`), COMMIT, plus whatever else the
service's handler writes (a webhook delivery, a pricing job, the outbox).

An event that cannot apply raises PermanentError (dead-lettered, nothing kept). A *parked*
event that fails when its predecessor arrives must not take that innocent predecessor down
with it: its savepoint is rolled back, its inbox row removed (so a replay is processed
afresh) and it goes to the dead-letter queue through the outbox, in the same transaction.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Awaitable, Callable, Collection

import structlog
from pydantic import ValidationError
from sqlalchemy import Table, delete

from alexandrite.contracts.events import (
    STATUS_EVENT_VERSION,
    Envelope,
    StatusChanged,
    parse_status_change,
    status_event_type,
)
from alexandrite.contracts.order_status import IllegalTransition, OrderStatus, owner_of
from alexandrite.kit.db import Database, OutgoingMessage, UnitOfWork
from alexandrite.kit.messaging.consumer import Delivery, PermanentError
from alexandrite.kit.messaging.tables import INBOX
from alexandrite.kit.messaging.topology import dead_letter_queue, events_queue
from alexandrite.orders.in_turn import InTurnOf, apply_in_turn
from alexandrite.orders.records import current_state
from alexandrite.orders.sequencing import accept_claimed, apply_parked, claim, lock_order

log = structlog.get_logger(__name__)

ApplyEvent = Callable[[UnitOfWork, Envelope, StatusChanged], Awaitable[None]]


class WrongProducer(Exception):
    """An event from a service that did not own the order's status: the single-writer rule broke."""


def check_single_writer(envelope: Envelope, current: str | None) -> None:
    """Only the owner of the order's current status may make its next transition (creation has no owner)."""
    if current is None:
        return
    owner = owner_of(OrderStatus(current))
    if owner != envelope.producer:
        raise WrongProducer(f"{envelope.producer} moved an order in {current}, which {owner} owns")


def parse_order_event(delivery: Delivery, producers: Collection[str]) -> Envelope:
    """The envelope of a delivery; PermanentError for anything that can never be applied."""
    try:
        envelope = Envelope.model_validate_json(delivery.body)
        change = parse_status_change(envelope)
    except ValidationError as error:
        raise PermanentError(f"invalid event: {error.errors(include_url=False)[:3]}") from error
    if envelope.version != STATUS_EVENT_VERSION:
        raise PermanentError(f"unsupported event version {envelope.version} of {envelope.type}")
    if envelope.producer not in producers:
        raise PermanentError(f"unexpected producer {envelope.producer!r} of {envelope.type}")
    if envelope.type != status_event_type(envelope.producer, change.status):
        raise PermanentError(f"event type {envelope.type!r} does not match its payload ({change.status})")
    return envelope


def dead_letter_message(service: str, envelope: Envelope, error: str) -> OutgoingMessage:
    """A parked event that failed when its turn came, sent to the DLQ through the outbox."""
    queue = events_queue(service)
    return OutgoingMessage(
        exchange="",
        routing_key=dead_letter_queue(queue),
        body=envelope.model_dump_json().encode(),
        headers={"event_type": envelope.type, "order_id": str(envelope.order_id), "seq": envelope.seq,
                 "x-original-queue": queue, "x-error": error[:1000], "x-dead-lettered-at": time.time()},
        message_id=envelope.event_id,
        order_id=envelope.order_id,
    )


async def consume_order_event(
    db: Database,
    delivery: Delivery,
    *,
    service: str,
    producers: Collection[str],
    orders: Table,
    apply: ApplyEvent,
    cannot_apply: tuple[type[BaseException], ...] = (IllegalTransition, LookupError, ValueError),
    in_turn: InTurnOf | None = None,
) -> str:
    """Returns the inbox outcome: "ok", "duplicate", "stale" or "deferred" (parked until its turn).

    With ``in_turn`` (how the service writes an event in its turn in one statement), an event in its turn
    is applied by one statement (:mod:`alexandrite.orders.in_turn`); anything else, or an event that
    statement did not apply, takes the general path below."""
    envelope = parse_order_event(delivery, producers)
    if in_turn is not None:
        change = parse_status_change(envelope)
        try:
            write = in_turn(envelope, change)
            if inspect.isawaitable(write):
                write = await write
        except cannot_apply:  # the general path refuses the event and says why
            write = None
        if write is not None:
            applied = await apply_in_turn(db, orders, envelope, change, write, service=service)
            if applied is not None:
                if applied.parked:  # successors waited for this one: they apply now, in a unit of their own
                    await _in_unit(db, envelope, service=service, orders=orders, apply=apply,
                                   cannot_apply=cannot_apply, catch_up=True)
                return "ok"
    return await _in_unit(db, envelope, service=service, orders=orders, apply=apply, cannot_apply=cannot_apply)


async def _in_unit(db: Database, envelope: Envelope, *, service: str, orders: Table, apply: ApplyEvent,
                   cannot_apply: tuple[type[BaseException], ...], catch_up: bool = False) -> str:
    """The general path: the event claimed, checked and applied (or parked) in a transaction.

    ``catch_up``: the event is applied already; only its parked successors now in turn are applied. A
    duplicate does the same, so successors left parked by a delivery that stopped between applying its
    event and catching up are applied when the event is delivered again."""
    cannot_apply = (*cannot_apply, WrongProducer)
    async with UnitOfWork(db) as uow:
        broken: list[tuple[Envelope, str]] = []
        status: dict[uuid.UUID, str | None] = {}

        async def _current_seq(order_id: uuid.UUID) -> int:
            seq, status[order_id] = await current_state(uow, orders, order_id)
            return seq

        async def _apply(env: Envelope) -> None:
            try:
                check_single_writer(env, status.get(env.order_id))
                if env.event_id == envelope.event_id:  # failing, it takes the whole transaction back
                    await apply(uow, env, parse_status_change(env))
                else:  # a parked event must not take its innocent predecessor down with it
                    async with uow.session.begin_nested():
                        await apply(uow, env, parse_status_change(env))
            except cannot_apply as error:
                reason = f"{env.type} seq {env.seq} of order {env.order_id} cannot apply: {error}"
                if env.event_id == envelope.event_id:
                    raise PermanentError(reason) from error
                broken.append((env, reason))

        if catch_up:
            await lock_order(uow.session, envelope.order_id)
            consumed, parked = None, 1
        else:  # the order's lock, the inbox row and the order's row, read
            consumed, parked = await claim(uow, orders, envelope)
        if consumed is None:
            outcome = "ok" if catch_up else "duplicate"
            if parked:
                await apply_parked(uow.session, envelope.order_id, current_seq=_current_seq, apply=_apply)
        else:
            status[envelope.order_id] = consumed.status
            outcome = await accept_claimed(uow, envelope, consumed, current_seq=_current_seq, apply=_apply)
        for env, reason in broken:
            await uow.session.execute(delete(INBOX).where(INBOX.c.event_id == env.event_id))
            uow.send(dead_letter_message(service, env, reason))
            log.error("parked_event_dead_lettered", order_id=str(env.order_id), seq=env.seq, type=env.type,
                      error=reason[:300])
        await uow.commit()
    return outcome

"""Applies the shop's and CRM's order events to the production projection: in order, once.

A SUBMITTED event hands the order to production: applying it also queues the pricing job
and emits ``mes.order.price_calculating``, all in the unit of work that records the event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from alexandrite.contracts.events import Envelope, StatusChanged
from alexandrite.contracts.order_status import IllegalTransition
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.messaging.consumer import Delivery
from alexandrite.mes import handlers
from alexandrite.mes.domain import PRODUCERS, SERVICE
from alexandrite.mes.progress import QueueEstimate, QueueProbe
from alexandrite.mes.tables import production_orders
from alexandrite.orders.events import consume_order_event

# An event that fails with one of these (or breaks the single-writer rule) can never apply.
CANNOT_APPLY = (IllegalTransition, LookupError, ValueError)


async def handle_event(db: Database, delivery: Delivery, estimate: QueueEstimate | None = None) -> str:
    """Returns the inbox outcome: "ok", "duplicate", "stale" or "deferred" (parked until its turn)."""
    estimate = estimate or QueueEstimate()

    async def _apply(uow: UnitOfWork, env: Envelope, change: StatusChanged) -> None:
        await handlers.apply_event(uow, env, change, estimate)

    return await consume_order_event(db, delivery, service=SERVICE, producers=PRODUCERS,
                                     orders=production_orders, apply=_apply, cannot_apply=CANNOT_APPLY,
                                     in_turn=handlers.in_turn(db, estimate))


def event_handler(app: FastAPI) -> Callable[[Delivery], Awaitable[str]]:
    async def _handler(delivery: Delivery) -> str:
        settings = app.state.settings
        probe: QueueProbe | None = getattr(app.state, "pricing_probe", None)
        consumers = await probe.consumers() if probe is not None else 1
        estimate = QueueEstimate(consumers=consumers, default_seconds=settings.pricing.seconds_estimate)
        return await handle_event(app.state.db, delivery, estimate)

    return _handler

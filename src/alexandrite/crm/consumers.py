"""Builds the CRM projection from the shop's and production's order events: in order, once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from alexandrite.contracts.events import is_order_delayed
from alexandrite.contracts.order_status import IllegalTransition
from alexandrite.crm import handlers
from alexandrite.crm.domain import SERVICE
from alexandrite.crm.tables import orders
from alexandrite.kit.db import Database
from alexandrite.kit.messaging.consumer import Delivery
from alexandrite.orders.events import consume_order_event

PRODUCERS = frozenset({"shop", "mes"})
# An event that fails with one of these (or breaks the single-writer rule) can never apply.
CANNOT_APPLY = (IllegalTransition, LookupError, ValueError)


async def handle_event(db: Database, delivery: Delivery) -> str:
    """Returns the inbox outcome: "ok", "duplicate", "stale" or "deferred" (parked until its turn)."""
    if is_order_delayed(delivery.routing_key, delivery.headers):
        return "ignored"  # delay notices are the shop's to send; the seller sees delays on the dashboards
    return await consume_order_event(db, delivery, service=SERVICE, producers=PRODUCERS, orders=orders,
                                     apply=handlers.apply_event, cannot_apply=CANNOT_APPLY,
                                     in_turn=handlers.in_turn)


def event_handler(app: FastAPI) -> Callable[[Delivery], Awaitable[str]]:
    async def _handler(delivery: Delivery) -> str:
        return await handle_event(app.state.db, delivery)

    return _handler

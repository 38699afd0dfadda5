"""Applies the other services' order events to the shop's orders, in order, once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from alexandrite.contracts.events import is_order_delayed
from alexandrite.kit.db import Database
from alexandrite.kit.messaging.consumer import Delivery
from alexandrite.orders.events import consume_order_event
from alexandrite.shop import delays, handlers
from alexandrite.shop.tables import orders

PRODUCERS = frozenset({"mes", "crm"})


async def handle_event(db: Database, delivery: Delivery) -> str:
    if is_order_delayed(delivery.routing_key, delivery.headers):
        return await delays.record_delay(db, delivery)
    return await consume_order_event(db, delivery, service=handlers.SERVICE, producers=PRODUCERS, orders=orders,
                                     apply=handlers.apply_event, in_turn=handlers.in_turn)


def event_handler(app: FastAPI) -> Callable[[Delivery], Awaitable[str]]:
    async def _handler(delivery: Delivery) -> str:
        return await handle_event(app.state.db, delivery)

    return _handler

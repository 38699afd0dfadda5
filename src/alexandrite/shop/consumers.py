"""Applies the other services' order events to the shop's orders, in order, once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from pydantic import ValidationError

from alexandrite.contracts.events import Envelope, parse_status_change
from alexandrite.contracts.order_status import IllegalTransition
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.messaging.consumer import Delivery, PermanentError
from alexandrite.kit.messaging.sequencing import accept_in_order
from alexandrite.kit.order_records import current_seq
from alexandrite.shop import handlers
from alexandrite.shop.tables import orders


async def handle_event(db: Database, delivery: Delivery) -> str:
    try:
        envelope = Envelope.model_validate_json(delivery.body)
        parse_status_change(envelope)
    except ValidationError as error:
        raise PermanentError(f"invalid event: {error.errors()[:3]}") from error

    async with UnitOfWork(db) as uow:
        async def _apply(env: Envelope) -> None:
            try:
                await handlers.apply_event(uow, env, parse_status_change(env))
            except (IllegalTransition, LookupError) as error:
                raise PermanentError(f"{env.type} seq {env.seq} cannot apply: {error}") from error

        outcome = await accept_in_order(
            uow.session, envelope, current_seq=lambda oid: current_seq(uow, orders, oid), apply=_apply
        )
        await uow.commit()
    return outcome


def event_handler(app: FastAPI) -> Callable[[Delivery], Awaitable[str]]:
    async def _handler(delivery: Delivery) -> str:
        return await handle_event(app.state.db, delivery)

    return _handler

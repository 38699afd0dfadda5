"""Live order pages: a customer's order page and a partner's ``GET /api/v1/orders/{id}/events``.

Both are server-sent event streams fed by the shop's own committed changes (kit/live): the status
changes the shop makes or applies from production's and the CRM's events, and delay notices. Nothing
polls the database on a timer; the page fetches its changed panel when told, and a stream that cannot
be opened leaves the page on its old polling.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from alexandrite.kit.errors import ApiError
from alexandrite.kit.live.announce import QUEUE_STATUS, QUEUE_TOPIC
from alexandrite.kit.live.hub import Entry, LiveHub, Subscriber
from alexandrite.kit.live.sse import Frame, client_of, event_response, last_event_id
from alexandrite.kit.security import Principal
from alexandrite.shop import order_reads
from alexandrite.shop.api import Buyer
from alexandrite.shop.domain import Owner
from alexandrite.shop.page_base import Customer

page_router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api/v1", tags=["shop"])
STATUS = "status"


def _hub(request: Request) -> LiveHub:
    live = getattr(request.app.state, "live", None)
    if live is None:
        raise ApiError(503, "live_disabled", "Live updates are switched off here; poll the order instead.")
    hub: LiveHub = live.hub
    return hub


async def _owned_row(request: Request, order_id: uuid.UUID, principal: Principal) -> dict[str, Any]:
    row = await order_reads.fetch_order(request.app.state.db, order_id, Owner.of(principal))
    if row is None:
        raise ApiError(404, "not_found", "There is no such order in your account.")
    return row


def _change(entry: Entry) -> dict[str, Any]:
    return {k: entry.data[k] for k in ("order_id", "status", "previous", "seq") if k in entry.data}


async def _page_render(entry: Entry, subscriber: Subscriber) -> Sequence[Frame]:
    """The page's own order: its status or delay; another order's price settled while this one waits
    in the pricing queue: "queue" (the page asks for its new place)."""
    own = subscriber.extra["order_id"]
    if entry.data.get("order_id") == own:
        if entry.data.get("kind") == STATUS:
            subscriber.extra["status"] = entry.data.get("status")
            return [(STATUS, _change(entry))]
        return [(str(entry.data.get("kind", "notice")), _change(entry))]
    if subscriber.extra.get("status") == QUEUE_STATUS and entry.data.get("previous") == QUEUE_STATUS:
        return [(QUEUE_TOPIC, {})]
    return []


@page_router.get("/orders/{order_id}/stream")
async def order_page_stream(request: Request, order_id: uuid.UUID, principal: Customer) -> Response:
    """The customer's order page listens here (static/live.js) and fetches ``/orders/{id}/live`` when told."""
    row = await _owned_row(request, order_id, principal)
    key = str(order_id)
    response = event_response(request, _hub(request), topics=(key, QUEUE_TOPIC), client=client_of(request, principal),
                              render=_page_render, state={"order_id": key, "status": row["status"]})
    return response


def _partner_render(request: Request, owner: Owner) -> Any:
    async def render(entry: Entry, subscriber: Subscriber) -> Sequence[Frame]:
        if entry.data.get("order_id") != subscriber.extra["order_id"]:
            return []
        row = await order_reads.fetch_order(request.app.state.db, uuid.UUID(subscriber.extra["order_id"]), owner)
        order = order_reads.order_json(order_reads.view_of(row)) if row is not None else None
        kind = str(entry.data.get("kind", STATUS))
        return [(kind if kind != STATUS else "order", order or {"change": _change(entry)})]
    return render


_EVENT_STREAM = {200: {"description": "A `text/event-stream`: `order` events (the order as `GET /orders/{id}` "
                                       "answers it, JSON in `data`), `delay`, `reset`, `bye`; each with an `id` "
                                       "to resume from with `Last-Event-ID`",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


@api_router.get("/orders/{order_id}/events", response_class=Response, responses=_EVENT_STREAM)  # type: ignore[arg-type]
async def order_events(request: Request, order_id: uuid.UUID, principal: Buyer) -> Response:
    """Server-sent events of one order: ``order`` (the order as ``GET /orders/{id}`` shows it) on
    opening and after every status change, ``delay`` when a stage runs late. Reconnect with
    ``Last-Event-ID`` to receive what happened meanwhile; ``reset`` means: read the order again."""
    owner = Owner.of(principal)
    row = await _owned_row(request, order_id, principal)
    key = str(order_id)

    async def opening() -> Sequence[Frame]:
        return [("order", order_reads.order_json(order_reads.view_of(row)))]

    response = event_response(request, _hub(request), topics=(key,), client=client_of(request, principal),
                              render=_partner_render(request, owner),
                              opening=None if last_event_id(request) else opening,
                              state={"order_id": key, "status": row["status"]})
    return response


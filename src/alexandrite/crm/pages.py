"""CRM pages for sellers: order list with search and filters, order detail with timeline and actions.

They call the same views and handlers as the CRM API (no HTTP round trip to itself).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Form, Query, Request
from starlette.responses import RedirectResponse, Response

from alexandrite.contracts.events import utcnow
from alexandrite.contracts.order_status import CANCELLABLE, IllegalTransition, OrderStatus
from alexandrite.crm import handlers, views
from alexandrite.crm.api import order_filter
from alexandrite.kit.errors import ApiError
from alexandrite.kit.security import Principal
from alexandrite.kit.web.staff import staff_pages
from alexandrite.orders.stage_clock import duration_words, parse_bool
from alexandrite.orders.words import order_pages, page_messages, plain_error, redirect_with, timeline

SERVICE = "crm"
S = OrderStatus
PAGE_SIZE = 25
pages = order_pages(SERVICE, Path(__file__).parent / "templates")
router, _seller, Csrf = staff_pages(pages, frozenset({"seller"}), "/orders", "CRM")
Seller = Annotated[Principal, Depends(_seller)]


def _render(request: Request, template: str, principal: Principal, status: int = 200, **context: Any) -> Response:
    return pages.render(request, template, {"principal": principal, "brand": "CRM", **context}, status=status)


@router.get("/orders")
async def order_list(
    request: Request, principal: Seller,
    status: Annotated[list[str] | None, Query()] = None,
    q: Annotated[str, Query(max_length=200)] = "",
    customer: Annotated[str, Query(max_length=200)] = "",
    created_from: Annotated[str, Query(max_length=64)] = "",
    created_to: Annotated[str, Query(max_length=64)] = "",
    cursor: Annotated[str, Query(max_length=500)] = "",
) -> Response:
    chosen = [s for s in status or () if s]
    filters = {"q": q, "customer": customer, "created_from": created_from, "created_to": created_to}
    context: dict[str, Any] = {"title": "Orders", "chosen": chosen, "filters": filters, "items": [],
                               "next_url": None}
    try:
        statuses = [S(s) for s in chosen]
    except ValueError:
        return _render(request, "orders.html", principal, 422, **context, error="Pick statuses from the list.")
    try:
        flt = order_filter(statuses, q or None, customer or None, created_from or None, created_to or None,
                           cursor or None)
        async with request.app.state.db.read_sessions() as session:
            found = await views.order_page(session, flt, PAGE_SIZE)
    except ApiError as error:
        return _render(request, "orders.html", principal, error.status, **context, error=plain_error(error))
    if found["next_cursor"]:
        query = [("status", s) for s in chosen] + [(k, v) for k, v in filters.items() if v]
        context["next_url"] = "/orders?" + urlencode([*query, ("cursor", found["next_cursor"])])
    context["items"] = found["items"]
    return _render(request, "orders.html", principal, **context)


LATE_WORDS = {"": "All waiting", "true": "Late only", "false": "On time"}


@router.get("/orders/waiting")
async def waiting(request: Request, principal: Seller, late: Annotated[str, Query(max_length=10)] = "",
                  cursor: Annotated[str, Query(max_length=500)] = "") -> Response:
    """Orders waiting for approval, longest waiting first: since when, the SLA, late ones marked."""
    context: dict[str, Any] = {"title": "Waiting for approval", "late": late, "late_words": LATE_WORDS,
                               "page": {"items": [], "counts": {"waiting": 0, "late": 0}, "sla_seconds": None},
                               "next_url": None, "sla_words": "—"}
    try:
        only = parse_bool(late or None, "late")
    except ValueError:
        return _render(request, "waiting.html", principal, 422, **context, error="Pick all, late or on time.")
    try:
        async with request.app.state.db.read_sessions() as session:
            found = await views.waiting_page(session, request.app.state.settings.sla.seconds, late=only,
                                             cursor=cursor or None, limit=PAGE_SIZE, now=utcnow())
    except ApiError as error:
        return _render(request, "waiting.html", principal, error.status, **context, error=plain_error(error))
    if found["next_cursor"]:
        context["next_url"] = "/orders/waiting?" + urlencode([*([("late", late)] if late else []),
                                                               ("cursor", found["next_cursor"])])
    found["items"] = [{**i, "waiting_words": duration_words(i["time_in_stage_seconds"]),
                       "late_words": f"late by {duration_words(i['late_by_seconds'])}" if i["late"] else ""}
                      for i in found["items"]]
    context["page"] = found
    context["sla_words"] = duration_words(found["sla_seconds"]) if found["sla_seconds"] else "—"
    return _render(request, "waiting.html", principal, **context)


@router.get("/orders/{order_id}")
async def order_detail(request: Request, order_id: uuid.UUID, principal: Seller, error: str = "",
                       notice: str = "", now: str = "") -> Response:
    async with request.app.state.db.sessions() as session:
        view = await views.order_view(session, order_id)
    if view is None:
        return _render(request, "message.html", principal, 404, title="Order not found",
                       error="There is no such order.")
    status = S(view["status"])
    return _render(request, "order.html", principal, title=f"Order {str(order_id)[:8]}", order=view,
                   timeline=timeline(view["history"]), **page_messages(error, notice, now),  # type: ignore[arg-type]
                   can_approve=status is S.PRICE_CALCULATED, can_cancel=status in CANCELLABLE,
                   can_close=status is S.SHIPPED)


def _back(order_id: uuid.UUID, *, error: Exception | None = None, notice: str = "") -> RedirectResponse:
    return redirect_with(f"/orders/{order_id}", error=error, notice=notice)


def _reason(text: str) -> str | None:
    return text.strip()[:500] or None


async def _settled(request: Request, order_id: uuid.UUID, wanted: str) -> None:
    """A cancel carried out by production reaches this projection through its event: wait briefly."""
    for _ in range(30):
        async with request.app.state.db.sessions() as session:
            view = await views.order_view(session, order_id)
        if view is None or view["status"] == wanted:
            return
        await asyncio.sleep(0.1)


@router.post("/orders/{order_id}/approve", dependencies=[Csrf])
async def approve(request: Request, order_id: uuid.UUID, principal: Seller) -> Response:
    try:
        await handlers.approve(request.app.state.db, principal, order_id, request.headers.get("x-request-id"))
    except (ApiError, IllegalTransition) as error:
        return _back(order_id, error=error)
    return _back(order_id, notice="approved")


@router.post("/orders/{order_id}/cancel", dependencies=[Csrf])
async def cancel(request: Request, order_id: uuid.UUID, principal: Seller,
                 reason: Annotated[str, Form(max_length=500)] = "") -> Response:
    try:
        answer = await handlers.cancel(request.app.state.db, request.app.state.peers, principal, order_id,
                                       _reason(reason), request.headers.get("x-request-id"))
    except (ApiError, IllegalTransition) as error:
        return _back(order_id, error=error)
    await _settled(request, order_id, str(answer["status"]))
    return _back(order_id, notice="order_cancelled")


@router.post("/orders/{order_id}/close", dependencies=[Csrf])
async def close(request: Request, order_id: uuid.UUID, principal: Seller,
                reason: Annotated[str, Form(max_length=500)] = "") -> Response:
    try:
        await handlers.close(request.app.state.db, principal, order_id, _reason(reason) or "closed by a seller",
                             request.headers.get("x-request-id"))
    except (ApiError, IllegalTransition) as error:
        return _back(order_id, error=error)
    return _back(order_id, notice="closed")


@router.post("/orders/{order_id}/notes", dependencies=[Csrf])
async def add_note(request: Request, order_id: uuid.UUID, principal: Seller,
                   text: Annotated[str, Form(max_length=2000)] = "") -> Response:
    if not text.strip():
        return _back(order_id, error=ApiError(422, "empty_note", "The note is empty."))
    try:
        await handlers.add_note(request.app.state.db, principal, order_id, text.strip())
    except ApiError as error:
        return _back(order_id, error=error)
    return _back(order_id, notice="note_added")


def install(app: Any) -> None:
    pages.install(app, router)

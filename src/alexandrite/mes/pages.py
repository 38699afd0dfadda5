"""MES pages for operators: the production dashboard and an order page with the stage actions.

The dashboard renders ``dashboard.dashboard_page``, the JSON endpoint's own view (no second query), and
the actions call the same ``handlers.advance`` as the API.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Form, Query, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from alexandrite.contracts.order_status import IN_WORK, IllegalTransition, OrderStatus
from alexandrite.kit.errors import ApiError
from alexandrite.kit.security import Principal
from alexandrite.kit.web.preview import model_stl, stl_response
from alexandrite.kit.web.staff import staff_pages
from alexandrite.mes import handlers, views
from alexandrite.mes.dashboard import Board, dashboard_page
from alexandrite.mes.schemas import ShipIn
from alexandrite.orders.stage_clock import duration_words, parse_bool
from alexandrite.orders.words import order_pages, page_messages, plain_error, redirect_with, timeline

SERVICE = "mes"
S = OrderStatus
PAGE_SIZE = 50
REFRESH_SECONDS = 5
DASHBOARD = "/production/dashboard"
# The one action an operator can take from each status.
NEXT_ACTION = {
    S.MANUFACTURING_APPROVED: ("take", "Take into work"),
    S.MANUFACTURING_STARTED: ("complete", "Mark as made"),
    S.MANUFACTURING_COMPLETED: ("package", "Mark as packed"),
    S.PACKAGING: ("ship", "Ship"),
}
pages = order_pages(SERVICE, Path(__file__).parent / "templates")
router, _operator, Csrf = staff_pages(pages, frozenset({"operator"}), DASHBOARD, "MES")
Operator = Annotated[Principal, Depends(_operator)]


def _render(request: Request, template: str, principal: Principal, status: int = 200, **context: Any) -> Response:
    return pages.render(request, template, {"principal": principal, "brand": "MES", **context}, status=status)


SORT_WORDS = {"newest": "Newest first", "late": "Most overdue first", "stage": "By stage"}
LATE_WORDS = {"": "All", "true": "Late only", "false": "On time"}


def board_url(**query: str) -> str:
    """The board's address for these choices (empty ones left out)."""
    kept = [(k, v) for k, v in query.items() if v]
    return f"{DASHBOARD}?{urlencode(kept)}" if kept else DASHBOARD


def _with_words(item: dict[str, Any]) -> dict[str, Any]:
    """A row's stage clock in words: "3 h 20 min" in stage, SLA "2 d", "late by 3 h 20 min"."""
    return {**item, "in_stage_words": duration_words(item["time_in_stage_seconds"]),
            "sla_words": duration_words(item["sla_seconds"]) if item["sla_seconds"] else "—",
            "late_words": f"late by {duration_words(item['late_by_seconds'])}" if item["late"] else ""}


@router.get(DASHBOARD)
async def dashboard(request: Request, principal: Operator, status: Annotated[str, Query(max_length=40)] = "",
                    cursor: Annotated[str, Query(max_length=500)] = "",
                    sort: Annotated[str, Query(max_length=20)] = "", late: Annotated[str, Query(max_length=10)] = "",
                    error: str = "", notice: str = "", now: str = "") -> Response:
    """In-work orders with their stage clocks (newest first, most overdue first or by stage, all / late /
    on time); an htmx request (the page's poll) gets just the board."""
    choices = {"status": status, "sort": sort, "late": late}
    context: dict[str, Any] = {"title": "Production dashboard", "chosen": status, "cursor": cursor,
                               "sort": sort or ("late" if late else "newest"), "late": late, "sort_words": SORT_WORDS,
                               "late_words": LATE_WORDS, "board_url": board_url(**choices, cursor=cursor),
                               "url": lambda **changes: board_url(**{**choices, **changes}),
                               "refresh_seconds": REFRESH_SECONDS, "actions": NEXT_ACTION, "in_work": IN_WORK,
                               "board": {"items": [], "counts": {}, "late_counts": {}, "next_cursor": None},
                               "next_url": None, **page_messages(error, notice, now)}
    try:
        wanted = (S(status),) if status else ()
        only = parse_bool(late or None, "late")
    except ValueError:
        context["error"] = "Pick a status and a lateness from the lists."
        return _render(request, "dashboard.html", principal, 422, **context)
    settings = request.app.state.settings
    try:
        # The JSON endpoint's own view (cached first pages, replica reads): the same data as the API.
        board = await dashboard_page(request.app.state.db, request.app.state.dashboard_cache, wanted,
                                     cursor or None, PAGE_SIZE,
                                     Board(slas=settings.sla.seconds, sort=sort or "newest", late=only))
    except ApiError as failure:
        context["error"] = plain_error(failure)
        return _render(request, "dashboard.html", principal, failure.status, **context)
    if board["next_cursor"]:
        context["next_url"] = board_url(**choices, cursor=board["next_cursor"])
    board["items"] = [_with_words(i) for i in board["items"]]
    context["board"] = board
    template = "_board.html" if request.headers.get("hx-request") else "dashboard.html"
    return _render(request, template, principal, **context)


@router.get("/production/orders/{order_id}")
async def order_detail(request: Request, order_id: uuid.UUID, principal: Operator, error: str = "",
                       notice: str = "", now: str = "") -> Response:
    async with request.app.state.db.sessions() as session:
        view = await views.order_view(session, order_id)
    if view is None:
        return _render(request, "message.html", principal, 404, title="Order not found",
                       error="There is no such production order.")
    return _render(request, "order.html", principal, title=f"Order {str(order_id)[:8]}", order=view,
                   timeline=timeline(view["history"]), action=NEXT_ACTION.get(S(view["status"])),
                   **page_messages(error, notice, now))  # type: ignore[arg-type]


@router.get("/production/orders/{order_id}/model.stl")
async def order_model(request: Request, order_id: uuid.UUID, _: Operator) -> Response:
    async with request.app.state.db.sessions() as session:
        view = await views.order_view(session, order_id)
    if view is None or not view.get("model"):
        raise ApiError(404, "not_found", "This order has no model.")
    return stl_response(await model_stl(request.app.state.storage, view["model"], request.app.state.settings))


def _to_order(order_id: uuid.UUID, *, error: Exception | None = None, notice: str = "",
              now: str | None = None) -> RedirectResponse:
    return redirect_with(f"/production/orders/{order_id}", error=error, notice=notice, now=now)


async def _advance(request: Request, principal: Principal, order_id: uuid.UUID, action: str,
                   **extra: Any) -> RedirectResponse:
    try:
        transition = await handlers.advance(request.app.state.db, principal, order_id, action,
                                            correlation_id=request.headers.get("x-request-id"), **extra)
    except (ApiError, IllegalTransition) as error:
        return _to_order(order_id, error=error)
    return _to_order(order_id, notice="moved", now=transition.status.value)


@router.post("/production/orders/{order_id}/take", dependencies=[Csrf])
async def take(request: Request, order_id: uuid.UUID, principal: Operator) -> Response:
    return await _advance(request, principal, order_id, "take")


@router.post("/production/orders/{order_id}/complete", dependencies=[Csrf])
async def complete(request: Request, order_id: uuid.UUID, principal: Operator) -> Response:
    return await _advance(request, principal, order_id, "complete")


@router.post("/production/orders/{order_id}/package", dependencies=[Csrf])
async def package(request: Request, order_id: uuid.UUID, principal: Operator) -> Response:
    return await _advance(request, principal, order_id, "package")


@router.post("/production/orders/{order_id}/ship", dependencies=[Csrf])
async def ship(request: Request, order_id: uuid.UUID, principal: Operator,
               tracking_number: Annotated[str, Form()] = "", carrier: Annotated[str, Form()] = "") -> Response:
    try:
        body = ShipIn(tracking_number=tracking_number.strip(), carrier=carrier)
    except ValidationError:
        return _to_order(order_id, error=ApiError(
            422, "invalid_shipment", "Enter the carrier and a tracking number (letters, digits and dashes)."))
    return await _advance(request, principal, order_id, "ship", tracking_number=body.tracking_number,
                          carrier=body.carrier)


def install(app: Any) -> None:
    pages.install(app, router)

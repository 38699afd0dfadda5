"""CRM HTTP API: sellers (``/api/v1/crm``), the carrier webhook and the internal peer API."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from alexandrite.contracts.events import utcnow
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.crm import handlers, views
from alexandrite.crm.domain import BadFilter, created_range, parse_search, verify_carrier_signature
from alexandrite.crm.repository import OrderFilter
from alexandrite.crm.schemas import (
    CarrierAnswer,
    CarrierEvent,
    InternalCancel,
    NoteIn,
    NoteOut,
    OrderOut,
    OrderPage,
    Reason,
    StatusOut,
    WaitingPage,
)
from alexandrite.kit.auth import CurrentService, public, require
from alexandrite.kit.errors import ApiError, not_found
from alexandrite.kit.security import Principal

router = APIRouter(prefix="/api/v1/crm", tags=["crm"])
webhooks = APIRouter(prefix="/api/v1/crm/webhooks", tags=["webhooks"])
# Service-to-service only (the service token): not part of the public API description.
internal = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)

Seller = Annotated[Principal, Depends(require("seller"))]

MAX_WEBHOOK_BYTES = 64 * 1024
SIGNATURE_HEADER = "X-Carrier-Signature"


def _correlation(request: Request) -> str | None:
    return request.headers.get("x-request-id")


async def _order(request: Request, order_id: uuid.UUID) -> dict[str, Any]:
    async with request.app.state.db.sessions() as session:
        view = await views.order_view(session, order_id)
    if view is None:
        raise not_found()
    return OrderOut.model_validate(view).model_dump(mode="json")


def order_filter(status: list[OrderStatus] | None, q: str | None, customer: str | None, created_from: str | None,
                 created_to: str | None, cursor: str | None) -> OrderFilter:
    """The seller's list filter from query values; 422 with the field for a bad date or cursor."""
    try:
        created = created_range(created_from, created_to)
    except BadFilter as error:
        raise ApiError(422, "invalid_request", error.message,
                       details=[{"loc": ["query", error.field], "msg": error.message, "type": "value_error"}]
                       ) from error
    return OrderFilter(
        statuses=tuple(dict.fromkeys(s.value for s in status or ())),
        search=parse_search(q) if q and q.strip() else None,
        customer=customer.strip() if customer and customer.strip() else None,
        created=created,
        after=views.decode_cursor(cursor) if cursor else None,
    )


@router.get("/orders", response_model=OrderPage)
async def list_orders(
    request: Request,
    _: Seller,
    status: Annotated[list[OrderStatus] | None, Query(description="repeat for several statuses")] = None,
    q: Annotated[str | None, Query(max_length=200, description="order id (full or 8+ hex digits), "
                                   "tracking number or part of the customer's name")] = None,
    customer: Annotated[str | None, Query(max_length=200, description="the customer's name "
                                          "(whole name, case-insensitive)")] = None,
    created_from: Annotated[str | None, Query(max_length=64, description="ISO 8601, inclusive")] = None,
    created_to: Annotated[str | None, Query(max_length=64, description="ISO 8601, inclusive "
                                            "(a date means the whole day)")] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    flt = order_filter(status, q, customer, created_from, created_to, cursor)
    async with request.app.state.db.read_sessions() as session:
        return await views.order_page(session, flt, limit)


@router.get("/orders/waiting", response_model=WaitingPage)
async def waiting_for_approval(
    request: Request,
    _: Seller,
    late: Annotated[bool | None, Query(description="only the late (true) or on-time (false) ones")] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Orders waiting for a seller's approval (priced), longest waiting first, with the time waited,
    the approval SLA and how late each is; counts of waiting and late ones."""
    async with request.app.state.db.read_sessions() as session:
        return await views.waiting_page(session, request.app.state.settings.sla.seconds, late=late, cursor=cursor,
                                        limit=limit, now=utcnow())


@router.get("/orders/{order_id}", response_model=OrderOut)
async def get_order(order_id: uuid.UUID, request: Request, _: Seller) -> dict[str, Any]:
    return await _order(request, order_id)


@router.post("/orders/{order_id}/approve", response_model=OrderOut)
async def approve(order_id: uuid.UUID, request: Request, principal: Seller) -> dict[str, Any]:
    await handlers.approve(request.app.state.db, principal, order_id, _correlation(request))
    return await _order(request, order_id)


@router.post("/orders/{order_id}/cancel", response_model=StatusOut)
async def cancel(order_id: uuid.UUID, request: Request, principal: Seller,
                 body: Reason | None = None) -> dict[str, Any]:
    return await handlers.cancel(request.app.state.db, request.app.state.peers, principal, order_id,
                                 body.reason if body else None, _correlation(request))


@router.post("/orders/{order_id}/close", response_model=OrderOut)
async def close(order_id: uuid.UUID, request: Request, principal: Seller,
                body: Reason | None = None) -> dict[str, Any]:
    await handlers.close(request.app.state.db, principal, order_id, body.reason if body else None,
                         _correlation(request))
    return await _order(request, order_id)


@router.post("/orders/{order_id}/notes", response_model=NoteOut, status_code=201)
async def add_note(order_id: uuid.UUID, body: NoteIn, request: Request, principal: Seller) -> dict[str, Any]:
    return await handlers.add_note(request.app.state.db, principal, order_id, body.text)


@webhooks.post("/carrier", response_model=CarrierAnswer, responses={202: {"model": CarrierAnswer}},
               dependencies=[public("carriers authenticate by HMAC signature of the body")])
async def carrier_webhook(request: Request) -> JSONResponse:
    """Carrier tracking events, signed: ``X-Carrier-Signature: sha256=<hex HMAC-SHA256 of the body>``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_WEBHOOK_BYTES:
        raise ApiError(413, "payload_too_large", "The webhook body is too large.")
    body = await request.body()
    if len(body) > MAX_WEBHOOK_BYTES:
        raise ApiError(413, "payload_too_large", "The webhook body is too large.")
    secret = request.app.state.settings.auth.carrier_webhook_secret
    if not verify_carrier_signature(secret, body, request.headers.get(SIGNATURE_HEADER)):
        raise ApiError(401, "invalid_signature",
                       f"Missing or wrong {SIGNATURE_HEADER}: expected sha256=<hex HMAC-SHA256 of the body>.",
                       headers={"WWW-Authenticate": 'Signature realm="carrier-webhook"'})
    try:
        event = CarrierEvent.model_validate_json(body)
    except ValidationError as error:
        details = [{"loc": ["body", *e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
                   for e in error.errors(include_url=False)]
        raise ApiError(422, "invalid_request", "The request is not valid.", details=details) from error
    outcome = await handlers.carrier_event(request.app.state.db, event.tracking_number, event.event,
                                           event.occurred_at, _correlation(request))
    answer = CarrierAnswer.model_validate({
        "tracking_number": event.tracking_number, "event": event.event, "outcome": outcome.outcome,
        "orders": outcome.orders,
    })
    return JSONResponse(answer.model_dump(mode="json"), 202 if outcome.outcome == "ignored" else 200)


@internal.post("/orders/{order_id}/cancel", response_model=StatusOut)
async def internal_cancel(order_id: uuid.UUID, body: InternalCancel, request: Request,
                          _: CurrentService) -> dict[str, Any]:
    return await handlers.cancel_locally(request.app.state.db, order_id, requested_by=body.requested_by,
                                         actor=body.actor, reason=body.reason, correlation_id=_correlation(request))

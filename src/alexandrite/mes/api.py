"""MES HTTP API: operators (``/api/v1/production``) and the internal peer API."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.auth import CurrentService, require
from alexandrite.kit.errors import not_found
from alexandrite.kit.security import Principal
from alexandrite.mes import handlers, progress, views
from alexandrite.mes.dashboard import Board, dashboard_payload
from alexandrite.mes.progress import QueueEstimate, QueueProbe, QueueStats
from alexandrite.mes.schemas import (
    InternalCancel,
    OrderOut,
    OrderPage,
    OrderProgressOut,
    QueueOut,
    ShipIn,
    StatusOut,
)

router = APIRouter(prefix="/api/v1/production", tags=["production"])
# Service-to-service only (the service token): not part of the public API description.
internal = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)

Operator = Annotated[Principal, Depends(require("operator"))]
QueueReader = Annotated[Principal, Depends(require("operator", "service"))]


def _correlation(request: Request) -> str | None:
    return request.headers.get("x-request-id")


async def _queue_stats(request: Request) -> QueueStats:
    probe: QueueProbe | None = getattr(request.app.state, "pricing_probe", None)
    if probe is None:
        return QueueStats(workers=None, messages=None)
    return await probe.stats()


async def _estimate(request: Request) -> QueueEstimate:
    stats = await _queue_stats(request)
    return QueueEstimate(consumers=stats.consumers,
                         default_seconds=request.app.state.settings.pricing.seconds_estimate)


async def _order(request: Request, order_id: uuid.UUID) -> dict[str, Any]:
    estimate = await _estimate(request)
    async with request.app.state.db.sessions() as session:
        view = await views.order_view(session, order_id, estimate)
    if view is None:
        raise not_found()
    return OrderOut.model_validate(view).model_dump(mode="json")


# --- operators -------------------------------------------------------------------------------------

@router.get("/orders", response_model=OrderPage)
async def dashboard(
    request: Request,
    _: Operator,
    status: Annotated[list[OrderStatus] | None, Query(description="repeat for several statuses; "
                                                      "default: the in-work ones")] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    sort: Annotated[Literal["newest", "late", "stage"], Query(
        description="newest first; late: most overdue first (by due_at); stage: by stage, longest in it "
                    "first")] = "newest",
    late: Annotated[bool | None, Query(description="only the late (true) or on-time (false) orders; "
                                       "implies sort=late unless sort=stage")] = None,
) -> Response:
    """Orders in work (or the given statuses), keyset pages, each with its stage clock; first pages come
    from the cache."""
    state = request.app.state
    board = Board(slas=state.settings.sla.seconds, sort=sort, late=late)
    body = await dashboard_payload(state.db, state.dashboard_cache, status or (), cursor, limit, board)
    return Response(body, media_type="application/json")


@router.get("/orders/{order_id}", response_model=OrderOut)
async def get_order(order_id: uuid.UUID, request: Request, _: Operator) -> dict[str, Any]:
    return await _order(request, order_id)


@router.post("/orders/{order_id}/take", response_model=OrderOut)
async def take(order_id: uuid.UUID, request: Request, principal: Operator) -> dict[str, Any]:
    """MANUFACTURING_APPROVED -> MANUFACTURING_STARTED; of operators taking an order at once one wins (409)."""
    await handlers.advance(request.app.state.db, principal, order_id, "take",
                           correlation_id=_correlation(request))
    return await _order(request, order_id)


@router.post("/orders/{order_id}/complete", response_model=OrderOut)
async def complete(order_id: uuid.UUID, request: Request, principal: Operator) -> dict[str, Any]:
    await handlers.advance(request.app.state.db, principal, order_id, "complete",
                           correlation_id=_correlation(request))
    return await _order(request, order_id)


@router.post("/orders/{order_id}/package", response_model=OrderOut)
async def package(order_id: uuid.UUID, request: Request, principal: Operator) -> dict[str, Any]:
    await handlers.advance(request.app.state.db, principal, order_id, "package",
                           correlation_id=_correlation(request))
    return await _order(request, order_id)


@router.post("/orders/{order_id}/ship", response_model=OrderOut)
async def ship(order_id: uuid.UUID, body: ShipIn, request: Request, principal: Operator) -> dict[str, Any]:
    await handlers.advance(request.app.state.db, principal, order_id, "ship",
                           tracking_number=body.tracking_number, carrier=body.carrier,
                           correlation_id=_correlation(request))
    return await _order(request, order_id)


@router.get("/pricing/queue", response_model=QueueOut)
async def pricing_queue(request: Request, _: QueueReader) -> dict[str, Any]:
    stats = await _queue_stats(request)
    async with request.app.state.db.read_sessions() as session:
        return await progress.queue_overview(session, stats, request.app.state.settings.pricing.seconds_estimate)


# --- peers -----------------------------------------------------------------------------------------

@internal.post("/orders/{order_id}/cancel", response_model=StatusOut)
async def internal_cancel(order_id: uuid.UUID, body: InternalCancel, request: Request,
                          _: CurrentService) -> dict[str, Any]:
    return await handlers.cancel(request.app.state.db, order_id, requested_by=body.requested_by, actor=body.actor,
                                 reason=body.reason, correlation_id=_correlation(request))


@internal.get("/orders/{order_id}/progress", response_model=OrderProgressOut)
async def order_progress(order_id: uuid.UUID, request: Request, _: CurrentService) -> dict[str, Any]:
    estimate = await _estimate(request)
    async with request.app.state.db.sessions() as session:
        found = await progress.order_progress(session, order_id, estimate)
    if found is None:
        raise not_found()
    status, live = found
    return {"status": status, "progress": live}

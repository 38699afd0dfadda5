"""The sellers' order list's event stream: every status change of the CRM's orders, as it commits."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from alexandrite.crm.pages import Seller
from alexandrite.kit.live.sse import staff_change_stream

router = APIRouter(include_in_schema=False)


@router.get("/orders/live/stream")
async def order_list_stream(request: Request, principal: Seller) -> Response:
    """The list (static/live.js) refetches its rows on each ``change``."""
    return staff_change_stream(request, principal)

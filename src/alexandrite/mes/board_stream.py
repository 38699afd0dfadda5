"""The production board's event stream: every status change of production's orders, as it commits."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from alexandrite.kit.live.sse import staff_change_stream
from alexandrite.mes.pages import DASHBOARD, Operator

router = APIRouter(include_in_schema=False)


@router.get(f"{DASHBOARD}/stream")
async def board_stream(request: Request, principal: Operator) -> Response:
    """The board (static/live.js) refetches itself on each ``change``; polling only when this cannot open."""
    return staff_change_stream(request, principal)

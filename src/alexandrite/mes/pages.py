"""Server-rendered operator pages (no JS framework): the production dashboard.

Operators authenticate with the same bearer token as the API, or with a ``token`` cookie
(so a plain browser can open the page). The page renders :func:`dashboard.dashboard_page`,
the same view function as the JSON API.
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Query, Request
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse

from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.auth import authenticate
from alexandrite.kit.errors import ApiError
from alexandrite.kit.security import InvalidToken, Principal, read_token
from alexandrite.mes import handlers
from alexandrite.mes.dashboard import IN_WORK_STATUSES, dashboard_page

pages = APIRouter(prefix="/production", tags=["pages"], include_in_schema=False)
COOKIE = "token"


@lru_cache(maxsize=1)
def templates() -> Environment:
    return Environment(loader=PackageLoader("alexandrite.mes", "templates"),
                       autoescape=select_autoescape(["html"]))


async def page_operator(request: Request) -> Principal:
    """The operator from ``Authorization: Bearer`` or, failing that, the ``token`` cookie."""
    cookie = request.cookies.get(COOKIE)
    if request.headers.get("authorization") or not cookie:
        principal = await authenticate(request)
    else:
        try:
            principal = read_token(request.app.state.settings.secret_key, cookie)
        except InvalidToken as error:
            raise ApiError(401, "unauthorized", f"The token cookie is not valid ({error}).") from error
    if principal.role not in ("operator", "admin"):
        raise ApiError(403, "forbidden", "This page is for operators.")
    return principal


page_operator.roles = frozenset({"operator", "admin"})  # type: ignore[attr-defined]  # seen by kit.auth's default deny


PageOperator = Annotated[Principal, Depends(page_operator)]


@pages.get("/dashboard", response_class=HTMLResponse)
async def dashboard_html(
    request: Request,
    principal: PageOperator,
    status: Annotated[list[OrderStatus] | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> HTMLResponse:
    state = request.app.state
    chosen = [s.value for s in status or ()]
    data = await dashboard_page(state.db, state.dashboard_cache, chosen, cursor, limit)
    filters = [("status", s) for s in chosen] + [("limit", str(limit))]
    next_url = (f"?{urlencode([*filters, ('cursor', data['next_cursor'])])}" if data["next_cursor"] else None)
    html = templates().get_template("dashboard.html").render(
        page=data, operator=principal.name or principal.subject, statuses=[s.value for s in OrderStatus],
        chosen=set(chosen or IN_WORK_STATUSES), next_url=next_url, first_url=f"?{urlencode(filters)}",
        take_status=OrderStatus.MANUFACTURING_APPROVED.value,
    )
    return HTMLResponse(html)


@pages.post("/dashboard/orders/{order_id}/take")
async def take_from_page(order_id: uuid.UUID, request: Request, principal: PageOperator) -> RedirectResponse:
    """The page's "take" button: one operator wins (409 for the others), then back to the dashboard."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise ApiError(403, "forbidden", "Forms from other sites are refused.")
    await handlers.advance(request.app.state.db, principal, order_id, "take")
    return RedirectResponse("/production/dashboard", status_code=303)

"""Jinja2 rendering for the services' pages, the shared static files and plain-words errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, FastAPI
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from alexandrite.contracts.order_status import IllegalTransition, OrderStatus
from alexandrite.kit.errors import ApiError
from alexandrite.kit.web import session

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

STATUS_WORDS = {
    "INITIATED": "Order started",
    "FILE_UPLOADED": "Model uploaded",
    "SUBMITTED": "Submitted",
    "PRICE_CALCULATING": "Calculating the price",
    "PRICE_CALCULATED": "Price ready",
    "PRICE_CALCULATION_FAILED": "Could not be priced",
    "MANUFACTURING_APPROVED": "Approved for making",
    "MANUFACTURING_STARTED": "Being made",
    "MANUFACTURING_COMPLETED": "Made",
    "PACKAGING": "Being packed",
    "SHIPPED": "Shipped",
    "CLOSED": "Delivered and closed",
    "CANCELLED": "Cancelled",
}
ALLOY_WORDS = {
    "gold_585": "Gold 585 (14k)",
    "gold_750": "Gold 750 (18k)",
    "silver_925": "Sterling silver 925",
    "platinum_950": "Platinum 950",
}


def status_words(status: str | None) -> str:
    return STATUS_WORDS.get(status or "", status or "")


def when(value: Any) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return ""
    return value.astimezone(UTC).strftime("%d %b %Y, %H:%M:%S UTC")


def duration(seconds: Any) -> str:
    try:
        total = max(float(seconds), 0.0)
    except (TypeError, ValueError):
        return ""
    if total < 60:
        return f"{total:.0f} s"
    if total < 3600:
        return f"{total // 60:.0f} min {total % 60:.0f} s"
    if total < 86400:
        return f"{total // 3600:.0f} h {total % 3600 // 60:.0f} min"
    return f"{total // 86400:.0f} d {total % 86400 // 3600:.0f} h"


def money(value: Any, currency: str | None = None) -> str:
    if value is None or value == "":
        return "—"
    try:
        text = f"{float(value):,.2f}"
    except (TypeError, ValueError):
        return str(value)
    return f"{text} {currency}" if currency else text


def timeline(history: list[dict[str, Any]], now: datetime | None = None) -> list[dict[str, Any]]:
    """History entries with how long the order stayed in each status."""
    now = now or datetime.now(UTC)
    out = []
    for index, entry in enumerate(history):
        at = entry["at"] if isinstance(entry["at"], datetime) else datetime.fromisoformat(str(entry["at"]))
        nxt = history[index + 1]["at"] if index + 1 < len(history) else None
        end = (nxt if isinstance(nxt, datetime) else datetime.fromisoformat(str(nxt))) if nxt else now
        out.append({**entry, "at": at, "stayed_seconds": (end - at).total_seconds(), "current": nxt is None})
    return out


def delay_words(delay: Any) -> str:
    """A delay notice for the customer from the order view's ``delay`` (stage past its SLA, new ETA)."""
    if not isinstance(delay, dict):
        return str(delay)
    stage = str(delay.get("stage") or "")
    what = "Delivery" if stage == "DELIVERY" else f"The step “{status_words(stage)}”"
    text = f"{what} is taking longer than we promised"
    if delay.get("since"):
        text += f" (since {when(delay['since'])})"
    text += "."
    if delay.get("new_eta"):
        eta = delay["new_eta"]
        eta = datetime.fromisoformat(eta) if isinstance(eta, str) else eta
        text += f" We now expect to ship it by {eta.astimezone(UTC).strftime('%d %B %Y')}."
    return text + " We are sorry for the wait."


def plain_error(error: Exception) -> str:
    """What went wrong, in words a customer understands."""
    if isinstance(error, IllegalTransition):
        return (f"That is not possible any more: the order is now “{status_words(error.current.value)}”. "
                "Reload the page to see its latest state.")
    if isinstance(error, ApiError):
        if error.code == "illegal_transition" and isinstance(error.details, dict):
            return (f"That is not possible any more: the order is now "
                    f"“{status_words(str(error.details.get('status')))}”.")
        if error.status >= 500 or error.code in ("unavailable", "peer_unavailable"):
            return "The service is busy or unreachable right now; please try again in a minute."
        return error.message
    return "Something went wrong on our side; please try again."


class Pages:
    """Templates of one service (its own folder first, then the shared ones)."""

    def __init__(self, service: str, template_dir: Path) -> None:
        self.service = service
        self.env = Environment(
            loader=ChoiceLoader([FileSystemLoader(template_dir), FileSystemLoader(HERE / "templates")]),
            autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True,
        )
        self.env.filters.update(status_words=status_words, when=when, duration=duration, money=money,
                                alloy=lambda a: ALLOY_WORDS.get(a or "", a or ""), who=str,
                                delay_words=delay_words)
        self.env.globals.update(STATUS_WORDS=STATUS_WORDS, ALLOY_WORDS=ALLOY_WORDS, statuses=list(OrderStatus),
                                import_map=json.dumps({"imports": {
                                    "three": "/static/vendor/three/three.module.js",
                                    "three/addons/": "/static/vendor/three/addons/"}}))

    def render(self, request: Request, name: str, context: dict[str, Any] | None = None, *,
               status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
        settings = request.app.state.settings
        token = session.session_token(request, self.service)
        ctx = {
            "request": request, "service": self.service,
            "csrf_token": session.csrf_token(settings, self.service, token),
            "signed_in": token is not None, "principal": None, "error": None, "notice": None,
        }
        ctx.update(context or {})
        html = self.env.get_template(name).render(ctx)
        return HTMLResponse(html, status_code=status, headers=headers)

    def install(self, app: FastAPI, router: APIRouter) -> None:
        """Add the pages, the static files and the redirects for signed-out visitors to ``app``."""
        app.include_router(router)
        if not any(getattr(r, "path", None) == "/static" for r in app.routes):
            app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

        @app.exception_handler(session.SignInRequired)
        async def _sign_in(request: Request, exc: session.SignInRequired) -> Response:
            target = "/signin?next=" + quote(request.url.path)
            if exc.message:
                target += "&why=" + quote(exc.message)
            if request.headers.get("hx-request"):
                return Response(status_code=204, headers={"HX-Redirect": target})
            return RedirectResponse(target, status_code=303)

        @app.exception_handler(session.CsrfRejected)
        async def _csrf(request: Request, exc: session.CsrfRejected) -> Response:
            return self.render(request, "message.html", {
                "title": "Request refused",
                "error": "This form was sent from another site or has expired. Go back, reload the page "
                         "and try again.",
            }, status=403)


def redirect_with(url: str, *, error: Exception | None = None, notice: str = "") -> RedirectResponse:
    """303 to ``url`` carrying a plain-words error or a notice for the next page to show."""
    query = {"error": plain_error(error)} if error else {"notice": notice}
    return RedirectResponse(f"{url}?{urlencode(query)}", status_code=303)


def safe_next(target: str | None, default: str) -> str:
    """Only local paths may be redirect targets after sign-in."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default

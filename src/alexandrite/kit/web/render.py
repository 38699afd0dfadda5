"""Jinja2 rendering for the services' pages, the shared static files and plain-words errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from alexandrite.kit.web import session
from alexandrite.kit.web.csp import HTMX_CONFIG, IMPORT_MAP, PAGE_POLICY

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

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


class Pages:
    """Templates of one service (its own folder first, then the shared ones)."""

    def __init__(self, service: str, template_dir: Path, *, filters: dict[str, Any] | None = None,
                 globals_: dict[str, Any] | None = None) -> None:
        self.service = service
        self.env = Environment(
            loader=ChoiceLoader([FileSystemLoader(template_dir), FileSystemLoader(HERE / "templates")]),
            autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True,
        )
        self.env.filters.update(when=when, duration=duration, money=money, who=str, **(filters or {}))
        self.env.globals.update(import_map=IMPORT_MAP, htmx_config=HTMX_CONFIG, **(globals_ or {}))

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
        return HTMLResponse(html, status_code=status,
                            headers={"Content-Security-Policy": PAGE_POLICY, **(headers or {})})

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


def safe_next(target: str | None, default: str) -> str:
    """Only local paths may be redirect targets after sign-in."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default

"""Sign-in for staff pages (CRM sellers, MES operators): paste a token from ``alexandrite token``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import RedirectResponse, Response

from alexandrite.kit import auth_failures
from alexandrite.kit.auth import client_address, public
from alexandrite.kit.errors import ApiError
from alexandrite.kit.security import Principal
from alexandrite.kit.web import session
from alexandrite.kit.web.render import Pages, safe_next


def staff_pages(pages: Pages, roles: frozenset[str], home: str, brand: str
                ) -> tuple[APIRouter, Callable[..., Awaitable[Principal]], Any]:
    """A router with /, /signin and /signout, the page dependency for signed-in staff and a CSRF dependency."""
    service = pages.service
    router = APIRouter(include_in_schema=False)
    role_words = " or ".join(sorted(roles))
    sign_in_page = public("the staff sign-in pages come before any session")

    async def staff(request: Request) -> Principal:
        return await session.current_principal(request, service, roles)

    staff.roles = roles | {"admin"}  # type: ignore[attr-defined]  # seen by kit.auth's default deny

    async def csrf_checked(request: Request) -> None:
        await session.check_csrf(request, service)

    def render_signin(request: Request, next_url: str, error: str | None, status: int = 200,
                      headers: dict[str, str] | None = None) -> Response:
        return pages.render(request, "staff_signin.html", {
            "title": f"Sign in ({role_words})", "brand": brand, "role": sorted(roles)[0],
            "next": safe_next(next_url, home), "error": error,
        }, status=status, headers=headers)

    @router.get("/", dependencies=[sign_in_page])
    async def start(request: Request) -> Response:
        return RedirectResponse(home if session.session_token(request, service) else "/signin", status_code=303)

    @router.get("/signin", dependencies=[sign_in_page])
    async def signin_form(request: Request, next: str = home, why: str = "") -> Response:  # noqa: A002
        return render_signin(request, next, session.sign_in_reason(why))

    @router.post("/signin", dependencies=[sign_in_page, Depends(csrf_checked)])
    async def signin(request: Request, token: Annotated[str, Form(max_length=4000)] = "",
                     next: Annotated[str, Form()] = home) -> Response:  # noqa: A002
        settings, state = request.app.state.settings, request.app.state
        where = (state.redis, settings.redis.prefix, service, "staff_signin", client_address(request), "staff")
        try:
            await auth_failures.refuse_if_locked(*where, limits=auth_failures.limits_of(settings))
        except ApiError as error:
            return render_signin(request, next, error.message, status=429, headers=error.headers)
        try:
            principal = await session.staff_token(request, service, token, roles)
        except ValueError as error:
            await auth_failures.record_failure(*where, limits=auth_failures.limits_of(settings))
            return render_signin(request, next, str(error), status=401)
        response = RedirectResponse(safe_next(next, home), status_code=303)
        # A fresh token for the cookie: the pasted one may be long-lived or shared.
        session.set_session(response, settings, service, session.new_token(settings, principal))
        return response

    @router.post("/signout", dependencies=[sign_in_page, Depends(csrf_checked)])
    async def signout(request: Request) -> Response:
        await session.end_session(request, service)
        response = RedirectResponse("/signin", status_code=303)
        session.clear_session(response, service)
        return response

    return router, staff, Depends(csrf_checked)


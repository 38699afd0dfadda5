"""Page sign-in: the signed bearer token (JWT) in an HttpOnly, SameSite=Lax cookie; CSRF for form posts.

- The cookie holds the same signed token the API accepts; it is named per service (cookies are
  shared between ports of one host), HttpOnly, SameSite=Lax and Secure in production.
- Every state-changing POST carries a CSRF token: an HMAC of the session token (double submit
  without a second cookie), sent as the form field ``csrf_token`` or the ``X-CSRF-Token`` header
  (htmx). Posts with an ``Origin`` (or, lacking it, a ``Referer``) from another site are refused too,
  which also covers the sign-in forms that come before any session.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from alexandrite.kit.revocation import is_revoked
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import InvalidToken, issue_token, principal_of, read_claims

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


# Why a visitor was sent to the sign-in page: the redirect carries the code (``?why=``), the page shows
# these words; a code it does not know shows nothing (the address is anyone's to write).
SIGN_IN_REASONS = {
    "session_ended": "Your session has ended; please sign in again.",
    "other_account": "This page is for another kind of account; sign in with the right one.",
    "customer_account": "Sign in with a customer account.",
}


def sign_in_reason(code: str) -> str | None:
    return SIGN_IN_REASONS.get(code)


class SignInRequired(Exception):
    """No valid session for a page that needs one: the app redirects to the sign-in page.

    ``message`` is a key of :data:`SIGN_IN_REASONS` (or empty)."""

    def __init__(self, service: str, message: str = "") -> None:
        super().__init__(message)
        self.service = service
        self.message = message


class CsrfRejected(Exception):
    pass


def cookie_name(service: str) -> str:
    return f"alex_{service}_session"


def set_session(response: Response, settings: Settings, service: str, token: str) -> None:
    response.set_cookie(
        cookie_name(service), token, max_age=settings.auth.token_ttl_seconds, httponly=True, samesite="lax",
        secure=settings.environment == "production", path="/",
    )


def clear_session(response: Response, service: str) -> None:
    response.delete_cookie(cookie_name(service), path="/", httponly=True, samesite="lax")


def session_token(request: Request, service: str) -> str | None:
    return request.cookies.get(cookie_name(service)) or None


async def current_principal(request: Request, service: str, roles: frozenset[str]) -> Principal:
    """The signed-in principal with one of ``roles`` (admin always passes), else SignInRequired."""
    token = session_token(request, service)
    if not token:
        raise SignInRequired(service)
    state = request.app.state
    try:
        claims = read_claims(state.settings, token, service)
    except InvalidToken as error:
        raise SignInRequired(service, "session_ended") from error
    if await is_revoked(state.redis, state.settings.redis.prefix, claims, service):
        raise SignInRequired(service, "session_ended")
    principal = principal_of(claims)
    if principal.role not in roles | {"admin"}:
        raise SignInRequired(service, "other_account")
    return principal


async def staff_token(request: Request, service: str, pasted: str, roles: frozenset[str]) -> Principal:
    """Check a staff token pasted into a sign-in form; ValueError with a plain message if unusable."""
    state = request.app.state
    try:
        claims = read_claims(state.settings, pasted.strip(), service)
    except InvalidToken as error:
        raise ValueError(f"That token is not valid ({error}). Ask for a new one.") from error
    if await is_revoked(state.redis, state.settings.redis.prefix, claims, service):
        raise ValueError("That token has been revoked. Ask for a new one.")
    principal = principal_of(claims)
    if principal.role not in roles | {"admin"}:
        raise ValueError(f"That token is for the role '{principal.role}'; this page needs "
                         f"{' or '.join(sorted(roles))}.")
    return principal


def new_token(settings: Settings, principal: Principal) -> str:
    return issue_token(settings, principal, settings.auth.token_ttl_seconds)


async def end_session(request: Request, service: str) -> None:
    """Revoke the page session's token (sign-out), whatever state it is in."""
    token = session_token(request, service)
    if token:
        await revoke_bearer(request, token, service)


async def revoke_bearer(request: Request, token: str, service: str | None) -> None:
    from alexandrite.kit.revocation import revoke_token

    state = request.app.state
    try:
        claims = read_claims(state.settings, token, service)
    except InvalidToken:
        return  # nothing valid to revoke
    await revoke_token(state.redis, state.settings.redis.prefix, str(claims["jti"]), float(claims["exp"]))


def csrf_token(settings: Settings, service: str, token: str | None) -> str:
    if not token:
        return ""
    message = f"csrf|{service}|{token}".encode()
    return hmac.new(settings.auth.secret_key.encode(), message, hashlib.sha256).hexdigest()


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return source is None
    host = request.headers.get("host", "")
    return urlsplit(source).netloc == host


async def check_csrf(request: Request, service: str) -> None:
    """Refuse a cross-site post, or a signed-in post without the session's CSRF token."""
    if not same_origin(request):
        raise CsrfRejected("cross-site request")
    token = session_token(request, service)
    if token is None:
        return  # sign-in forms: nothing to steal yet; the origin check above still applies
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    expected = csrf_token(request.app.state.settings, service, token)
    if not sent or not hmac.compare_digest(sent, expected):
        raise CsrfRejected("missing or wrong CSRF token")

"""Authentication dependencies: bearer tokens (people), service token (peers). Default deny.

A bearer token must verify (kit/tokens.py), name this service in its audience and not be revoked
(kit/revocation.py: one Redis round trip, none when the rate limiter read the entries for this request).
Every forged or unreadable bearer token, wrong service token and unknown ``X-API-Key`` counts in the
failed-authentication limit (kit/auth_failures.py); past it the answer is
``429`` instead of ``401``. Tokens we signed that are expired, revoked or for another service are ordinary
clients, not guesses: they answer ``401`` and are not counted.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request

from alexandrite.kit import auth_failures
from alexandrite.kit.errors import ApiError
from alexandrite.kit.revocation import READ_WITH_LIMITS, is_revoked, revoked_by
from alexandrite.kit.security import Principal
from alexandrite.kit.tokens import InvalidToken, principal_of, read_claims

# A service may register an extra authenticator (shop: partner API keys).
ExtraAuth = Callable[[Request], Awaitable[Principal | None]]


def _unauthorized(message: str = "Sign in first: send 'Authorization: Bearer <token>'.") -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _failed(request: Request, kind: str, account: str, error: ApiError) -> ApiError:
    """Count a failed credential; the error to answer (429 once over the limit)."""
    state = request.app.state
    over = await auth_failures.count_failure(state.redis, state.settings.redis.prefix,
                                             getattr(state, "service", ""), kind, client_address(request), account,
                                             limits=auth_failures.limits_of(state.settings))
    return over or error


async def bearer_principal(request: Request, token: str) -> Principal:
    """The principal of a bearer token for this service, or 401 (429 after too many failures)."""
    state = request.app.state
    service = getattr(state, "service", None)
    try:
        claims = read_claims(state.settings, token, service)
    except InvalidToken as error:
        refusal = _unauthorized(f"The token is not valid ({error}); sign in again.")
        if str(error) in NOT_GUESSES:
            raise refusal from error
        raise await _failed(request, "bearer", "bearer:" + claimed_subject(token), refusal) from error
    read = request.scope.get(READ_WITH_LIMITS)
    if read is not None and read[0] == token:  # read for this request by the rate limiter
        revoked = revoked_by(claims, *read[1])
    else:
        revoked = await is_revoked(state.redis, state.settings.redis.prefix, claims, service or "")
    if revoked:
        raise _unauthorized("The token has been revoked; sign in again.")  # ours: not a guess, not counted
    return principal_of(claims)


# Tokens we signed ourselves (expired, or for another service): ordinary clients, not guesses; never counted.
NOT_GUESSES = frozenset({"token expired", "token not for this service"})


def claimed_subject(token: str) -> str:
    """The subject a (failed) token claims, unverified: the per-account bucket of forgery attempts."""
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return "unreadable"
    return f"{payload.get('role', '')}:{payload.get('sub', '')}"[:200]


# Scope key: a failure already counted earlier in this request (the shop's hot paths) is answered again as is.
AUTH_FAILED = "alexandrite.auth_failed"


async def authenticate(request: Request) -> Principal:
    counted = request.scope.get(AUTH_FAILED)
    if isinstance(counted, ApiError):
        raise counted
    settings = request.app.state.settings
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return await bearer_principal(request, credentials.strip())
    if scheme.lower() == "service" and credentials:
        if hmac.compare_digest(credentials.strip().encode(), settings.auth.service_token.encode()):
            return Principal(role="service", subject="service", name="service")
        raise await _failed(request, "service", "service", _unauthorized("Bad service token."))
    extra: ExtraAuth | None = getattr(request.app.state, "extra_auth", None)
    if extra is not None:
        try:
            principal = await extra(request)
        except ApiError as error:
            if error.status != 401:
                raise
            key = request.headers.get("x-api-key", "")
            raise await _failed(request, "api_key", "key:" + key[:10], error) from error
        if principal is not None:
            return principal
    raise _unauthorized()


def require(*roles: str) -> Callable[..., Awaitable[Principal]]:
    allowed = frozenset(roles) | {"admin"}

    async def _dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in allowed:
            raise ApiError(403, "forbidden", f"This action needs one of the roles: {', '.join(sorted(roles))}.")
        return principal

    _dependency.roles = allowed  # type: ignore[attr-defined]  # read by guarded_by()
    return _dependency


def public(reason: str) -> Any:
    """Mark a route as deliberately open to anyone (it must say why); see :func:`unguarded_routes`."""

    async def _open() -> None:
        return None

    _open.public = reason  # type: ignore[attr-defined]
    return Depends(_open)


# Framework and probe paths that are open by design.
PUBLIC_PATHS = frozenset({"/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs",
                          "/docs/oauth2-redirect", "/redoc"})


def _marker(call: Any) -> frozenset[str] | str | None:
    if hasattr(call, "roles"):
        return call.roles
    if hasattr(call, "public"):
        return str(call.public)
    return None


def guarded_by(route: Any, extra: Sequence[Any] = ()) -> frozenset[str] | str | None:
    """The roles a route requires, its public reason, or None when it declares neither."""
    for depends in extra:  # dependencies given to include_router
        found = _marker(getattr(depends, "dependency", None))
        if found is not None:
            return found
    dependant = getattr(route, "dependant", None)
    stack = [dependant] if dependant is not None else []
    while stack:
        current = stack.pop()
        found = _marker(getattr(current, "call", None))
        if found is not None:
            return found
        stack.extend(current.dependencies)
    return None


def api_routes(routes: Sequence[Any], prefix: str = "", extra: tuple[Any, ...] = ()
               ) -> Iterator[tuple[str, Any, tuple[Any, ...]]]:
    """(full path, route, router-level dependencies) of every endpoint, included routers expanded."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:  # FastAPI >= 0.16x keeps included routers as branches
            context = route.include_context
            yield from api_routes(original.routes, prefix + context.prefix,
                                  extra + tuple(context.dependencies) + tuple(original.dependencies))
        elif hasattr(route, "routes") and hasattr(route, "prefix") and not hasattr(route, "dependant"):
            yield from api_routes(route.routes, prefix + route.prefix, extra)
        else:
            yield prefix + getattr(route, "path", ""), route, extra


def unguarded_routes(routes: Sequence[Any]) -> list[str]:
    """Every endpoint that neither requires a role nor is declared public: default deny means none."""
    found = []
    for path, route, extra in api_routes(routes):
        if path in PUBLIC_PATHS or path.startswith(("/static", "/assets")) or not hasattr(route, "dependant"):
            continue
        if guarded_by(route, extra) is None:
            found.append(f"{','.join(sorted(getattr(route, 'methods', None) or []))} {path}")
    return found


CurrentService = Annotated[Principal, Depends(require("service"))]

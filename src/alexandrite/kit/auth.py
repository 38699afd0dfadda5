"""Authentication dependencies: bearer tokens (people), service token (peers). Default deny."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Annotated, Any

from fastapi import Depends, Request

from alexandrite.kit.errors import ApiError
from alexandrite.kit.security import InvalidToken, Principal, read_token

# A service may register an extra authenticator (shop: partner API keys).
ExtraAuth = Callable[[Request], Awaitable[Principal | None]]


def _unauthorized(message: str = "Sign in first: send 'Authorization: Bearer <token>'.") -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request) -> Principal:
    settings = request.app.state.settings
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        try:
            return read_token(settings.auth.secret_key, credentials.strip())
        except InvalidToken as error:
            raise _unauthorized(f"The token is not valid ({error}); sign in again.") from error
    if scheme.lower() == "service" and credentials:
        if hmac.compare_digest(credentials.strip(), settings.auth.service_token):
            return Principal(role="service", subject="service", name="service")
        raise _unauthorized("Bad service token.")
    extra: ExtraAuth | None = getattr(request.app.state, "extra_auth", None)
    if extra is not None:
        principal = await extra(request)
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

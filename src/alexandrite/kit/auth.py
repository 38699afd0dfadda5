"""Authentication dependencies: bearer tokens (people), service token (peers). Default deny."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

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
            return read_token(settings.secret_key, credentials.strip())
        except InvalidToken as error:
            raise _unauthorized(f"The token is not valid ({error}); sign in again.") from error
    if scheme.lower() == "service" and credentials:
        if hmac.compare_digest(credentials.strip(), settings.service_token):
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

    return _dependency


CurrentService = Annotated[Principal, Depends(require("service"))]

"""Request size limits enforced while the request arrives, before authentication or parsing reads it.

:class:`BodyLimitMiddleware` (pure ASGI) answers before the application runs when the request head is
too large (431) or the declared ``Content-Length`` is over the route's limit (413), and counts the
bytes of a body sent without a length (chunked) as they stream in, stopping at the limit with 413.
Every answer carries the machine-readable error body.

Limits per route: a route that takes an uploaded file (a FastAPI ``File`` parameter) may receive the
upload limit (``ALEX_MAX_UPLOAD_BYTES`` plus room for the multipart envelope), but only from a request
that carries a credential (a bearer/service token, a partner key or a session cookie); every other
request is held to ``ALEX_MAX_BODY_BYTES`` (JSON and forms). The credential is not verified here —
that is the route's job, after the body — so this bounds what an anonymous client can make the server
spool, not what a signed-in one can.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.params import File
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import compile_path

from alexandrite.kit.errors import error_body

# Room for the multipart envelope (boundaries, part headers, the other small fields) around an upload.
MULTIPART_ENVELOPE_BYTES = 64 * 1024
_CREDENTIAL_HEADERS = (b"authorization", b"x-api-key", b"cookie")


@dataclass(frozen=True)
class RouteLimit:
    """The body limit of the routes matching ``pattern`` with one of ``methods``."""

    methods: frozenset[str]
    pattern: re.Pattern[str]
    max_bytes: int
    code: str = "payload_too_large"
    message: str = ""
    needs_credential: bool = True


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes its limit (FastAPI re-raises HTTP exceptions)."""

    def __init__(self, limit: int, code: str, message: str) -> None:
        super().__init__(413, message)
        self.limit = limit
        self.code = code
        self.message = message


def _too_large_message(limit: int) -> str:
    return f"The request body is larger than the {limit:,} bytes this endpoint accepts."


async def _answer(send: Any, status: int, code: str, message: str, details: Any = None) -> None:
    body = json.dumps(error_body(code, message, details), separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app: Any, *, default_bytes: int, max_header_bytes: int,
                 routes: Iterable[RouteLimit] = ()) -> None:
        self.app = app
        self.default_bytes = default_bytes
        self.max_header_bytes = max_header_bytes
        self.routes = tuple(routes)

    def limit_for(self, scope: dict[str, Any]) -> tuple[int, str, str]:
        method, path = scope.get("method", "GET"), scope.get("path", "")
        credential = any(name in _CREDENTIAL_HEADERS for name, _ in scope.get("headers", ()))
        for route in self.routes:
            if method in route.methods and route.pattern.match(path):
                if route.needs_credential and not credential:
                    break
                return route.max_bytes, route.code, route.message or _too_large_message(route.max_bytes)
        return self.default_bytes, "payload_too_large", _too_large_message(self.default_bytes)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        head += sum(len(name) + len(value) + 4 for name, value in headers)
        if head > self.max_header_bytes:
            await _answer(send, 431, "headers_too_large",
                          f"The request line and headers are larger than {self.max_header_bytes:,} bytes.")
            return
        limit, code, message = self.limit_for(scope)
        lengths = [value for name, value in headers if name == b"content-length"]
        if lengths:
            if len(set(lengths)) > 1 or not lengths[0].isdigit():
                await _answer(send, 400, "bad_request", "The Content-Length header is not a single number.")
                return
            if int(lengths[0]) > limit:
                await _answer(send, 413, code, message, {"max_bytes": limit})
                return
        received = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message_in = await receive()
            if message_in["type"] == "http.request":
                received += len(message_in.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, code, message)
            return message_in

        started = False

        async def tracking_send(message_out: dict[str, Any]) -> None:
            nonlocal started
            if message_out["type"] == "http.response.start":
                started = True
            await send(message_out)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as error:  # raised where no handler turned it into the answer
            if started:
                raise
            await _answer(send, 413, error.code, error.message, {"max_bytes": error.limit})


async def _body_too_large(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyTooLarge)
    return JSONResponse(error_body(exc.code, exc.message, {"max_bytes": exc.limit}), 413,
                        headers={"Connection": "close"})


def _takes_file(dependant: Any) -> bool:
    stack = [dependant]
    while stack:
        current = stack.pop()
        if any(isinstance(param.field_info, File) for param in current.body_params):
            return True
        stack.extend(current.dependencies)
    return False


def upload_routes(app: FastAPI, max_bytes: int) -> list[RouteLimit]:
    """A limit for every route of ``app`` that takes an uploaded file."""
    from alexandrite.kit.auth import api_routes

    found = []
    for path, route, _ in api_routes(app.routes):
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        if _takes_file(dependant):
            pattern, _, _ = compile_path(path)
            megabytes = max_bytes // 2**20
            found.append(RouteLimit(frozenset(route.methods or ()), pattern, max_bytes + MULTIPART_ENVELOPE_BYTES,
                                    code="file_too_large",
                                    message=f"The file is larger than {megabytes} MB." if megabytes
                                    else f"The file is larger than {max_bytes:,} bytes."))
    return found


class _AppBodyLimit(BodyLimitMiddleware):
    """The limits of one service's app: its upload routes are found at the first request (all included)."""

    def __init__(self, app: Any, *, fastapi_app: FastAPI, default_bytes: int, max_header_bytes: int,
                 upload_bytes: int) -> None:
        super().__init__(app, default_bytes=default_bytes, max_header_bytes=max_header_bytes)
        self._fastapi_app: FastAPI | None = fastapi_app
        self._upload_bytes = upload_bytes

    def limit_for(self, scope: dict[str, Any]) -> tuple[int, str, str]:
        if self._fastapi_app is not None:
            self.routes = tuple(upload_routes(self._fastapi_app, self._upload_bytes))
            self._fastapi_app = None
        return super().limit_for(scope)


def install_body_limit(app: FastAPI, settings: Any) -> None:
    """Add the size limits to a service's app (upload routes found from the app's own routes)."""
    app.add_exception_handler(BodyTooLarge, _body_too_large)
    app.add_middleware(_AppBodyLimit, fastapi_app=app, default_bytes=settings.limits.max_body_bytes,
                       max_header_bytes=settings.limits.max_header_bytes, upload_bytes=settings.uploads.max_bytes)

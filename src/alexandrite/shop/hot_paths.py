"""The three hottest order requests answered straight from ASGI, beside FastAPI's routes for them.

``POST /api/v1/orders``, ``POST /api/v1/orders/{id}/submit`` and ``GET /api/v1/orders/{id}`` carry most of
the partner traffic. Once each became one database statement, FastAPI's own machinery was the larger
part of their cost (routing through every included router, dependency solving, the request and
response objects: ~40 % of a create's CPU in the py-spy profile). This innermost middleware answers
the well-formed, common case of those three itself, with the same use cases, the same authentication
(:func:`alexandrite.kit.auth.authenticate`), the same error handlers and the same JSON; the routes stay
declared in FastAPI (OpenAPI, default-deny check) and serve everything else:

- a request it does not take exactly as FastAPI would (another content type, a body other than
  ``{"alloy": ...}`` with a known alloy, a submit with a body, an id not in the canonical form, a
  principal who owns no orders, no credentials or bad ones) passes on to FastAPI unchanged (a body
  already read is handed on as it came);
- the throttle, load shedding and metrics middlewares are outside it, so they see every request; it
  sets ``scope["route"]`` to the FastAPI route so metrics keep their route template label.

``ALEX_API_FAST_PATHS=false`` turns it off (every request through FastAPI); the tests compare both.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, get_args

import orjson
from starlette.requests import Request

from alexandrite.contracts.alloys import AlloyName
from alexandrite.kit.auth import AUTH_FAILED, api_routes, authenticate
from alexandrite.kit.errors import ApiError, not_found
from alexandrite.shop import order_reads, order_writes
from alexandrite.shop.domain import Owner

ALLOYS = frozenset(get_args(AlloyName))
OWNER_ROLES = frozenset({"customer", "partner"})
MAX_CREATE_BODY = 1024
PREFIX = "/api/v1/orders"
_ONE = re.compile(r"/api/v1/orders/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(/submit)?")
JSON = b"application/json"

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class _PassOn(Exception):
    """The request is not one the fast path takes: FastAPI serves it."""


class _Gone(Exception):
    """The client went away while its body was being read."""


class OrderHotPaths:
    def __init__(self, app: Any) -> None:
        self.app = app
        self._routes: dict[tuple[str, str], Any] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if path == PREFIX:
            if method != "POST":
                await self.app(scope, receive, send)
                return
            try:
                await self._create(scope, receive, send)
            except _Gone:
                return
            return
        match = _ONE.fullmatch(path)
        if match is None or (method, bool(match.group(2))) not in (("GET", False), ("POST", True)):
            await self.app(scope, receive, send)
            return
        try:
            await self._one(scope, receive, send, uuid.UUID(match.group(1)), submit=bool(match.group(2)))
        except _Gone:
            return

    # --- the three requests ------------------------------------------------------------------

    async def _create(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        body, more = await _read_body(receive, MAX_CREATE_BODY)
        replay = _replay(body, more, receive)
        key = headers.get(b"idempotency-key")
        alloy = _alloy(headers, body) if not more else None
        if alloy is None or (key is not None and len(key) > 200):
            await self.app(scope, replay, send)
            return
        request = Request(scope, replay)
        try:
            principal = await self._owner(request)
            self._select(scope, "POST", PREFIX)
            view, created = await order_writes.create_order(
                scope["app"].state.db, principal, alloy, key.decode("latin-1") if key is not None else None,
                request.headers.get("x-request-id"))
        except _PassOn:
            await self.app(scope, replay, send)
            return
        except Exception as error:
            await _error(request, error, send)
            return
        await _answer(send, 201, order_reads.order_json(view),
                      () if created else ((b"idempotent-replayed", b"true"),))

    async def _one(self, scope: dict[str, Any], receive: Receive, send: Send, order_id: uuid.UUID, *,
                   submit: bool) -> None:
        replay = receive
        if submit:  # only a submit without a body (a body confirms measurements: FastAPI validates it)
            body, more = await _read_body(receive, 0)
            replay = _replay(body, more, receive)
            if body or more:
                await self.app(scope, replay, send)
                return
        request = Request(scope, replay)
        state = scope["app"].state
        try:
            principal = await self._owner(request)
            extra: tuple[tuple[bytes, bytes], ...] = ()
            if submit:
                self._select(scope, "POST", PREFIX + "/{order_id}/submit")
                eta = await state.backlog.admit()
                view: dict[str, Any] | None = await order_writes.submit(state.db, principal, order_id)
                status = 202
                if eta is not None:
                    extra = ((b"pricing-eta-seconds", str(round(eta)).encode()),)
            else:
                self._select(scope, "GET", PREFIX + "/{order_id}")
                view = await order_reads.order_view(state.db, state.peers, order_id, Owner.of(principal), live=True)
                status = 200
            if view is None:
                raise not_found()
        except _PassOn:
            await self.app(scope, replay, send)
            return
        except Exception as error:
            await _error(request, error, send)
            return
        await _answer(send, status, order_reads.order_json(view), extra)

    # --- helpers ------------------------------------------------------------------------------

    async def _owner(self, request: Request) -> Any:
        """The caller if it is a customer or a partner; anyone else (or no one) is FastAPI's to answer."""
        try:
            principal = await authenticate(request)
        except ApiError as error:
            request.scope[AUTH_FAILED] = error  # FastAPI answers it without counting the failure twice
            raise _PassOn from error
        if principal.role not in OWNER_ROLES:
            raise _PassOn
        return principal

    def _select(self, scope: dict[str, Any], method: str, template: str) -> None:
        """Mark the request as served by FastAPI's route for it (metrics label by its template)."""
        if self._routes is None:
            self._routes = {(m, path): route for path, route, _ in api_routes(scope["app"].routes)
                            for m in (getattr(route, "methods", None) or ())}
        route = self._routes.get((method, template))
        if route is not None:
            scope["route"] = route


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    """Request headers by (lower-case) name; the first of repeated ones, as Starlette's ``get``."""
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers") or ():
        found.setdefault(name, value)
    return found


def _alloy(headers: dict[bytes, bytes], body: bytes) -> str | None:
    """The alloy of a create body exactly ``{"alloy": <known alloy>}`` sent as JSON; None otherwise."""
    content_type = headers.get(b"content-type", b"")
    if content_type.split(b";", 1)[0].strip().lower() != JSON:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or len(data) != 1:
        return None
    alloy = data.get("alloy")
    return alloy if type(alloy) is str and alloy in ALLOYS else None


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The body up to ``limit`` bytes; (what was read, whether more is left unread)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: nobody to answer
            raise _Gone
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False
        if size > limit:
            return b"".join(chunks), True


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """``receive`` that first hands on what was already read."""
    pending = [{"type": "http.request", "body": body, "more_body": more}]

    async def _receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        return await receive()

    return _receive


async def _answer(send: Send, status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", JSON), *extra]})
    await send({"type": "http.response.body", "body": body})


async def _error(request: Request, error: Exception, send: Send) -> None:
    """Answer as the app's exception handlers would (what ExceptionMiddleware does for FastAPI's routes)."""
    handlers = request.app.exception_handlers
    for kind in type(error).__mro__:
        handler = handlers.get(kind)
        if handler is not None:
            response = await handler(request, error)
            await response(request.scope, request.receive, send)
            return
    raise error

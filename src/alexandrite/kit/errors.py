"""One error shape for every API: ``{"error": {"code", "message", "details"?}}``."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, EmulatedDBAPIException
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from alexandrite.contracts.order_status import IllegalTransition


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return {"error": body}


def not_found(what: str = "order") -> ApiError:
    return ApiError(404, "not_found", f"No such {what}.")


_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
    422: "invalid_request", 429: "rate_limited", 503: "unavailable",
}


_UNSTORABLE_TEXT = frozenset({"22021", "22P05"})  # character_not_in_repertoire, untranslatable_character
# connection exception, insufficient resources (too many connections), operator intervention (shutdown)
_UNAVAILABLE_CLASSES = ("08", "53", "57P")
# read-only transaction: during a failover a write reached a server that is not (or no longer) the primary
_UNAVAILABLE_STATES = ("25006",)


def _unavailable_state(error: object) -> bool:
    """Its SQLSTATE says the server is away, full, shutting down or no longer the primary."""
    state = str(getattr(error, "sqlstate", None) or "")
    return state.startswith(_UNAVAILABLE_CLASSES) or state in _UNAVAILABLE_STATES


def _lost_connection_message(text: str) -> bool:
    """asyncpg's words for a connection that died under a statement: "connection is closed", or the
    protocol's state machine after the socket went mid-statement ("cannot switch to state 15; another
    operation (2) is in progress"), seen on leader kills in the failover drill. "another operation is in
    progress" alone (two statements on one connection) is a bug and stays one."""
    return "connection is closed" in text or "connection was closed" in text or "cannot switch to state" in text


def infrastructure_unavailable(error: BaseException) -> bool:
    """A database or network outage (retrying later helps), not a fault of the request or the data."""
    if isinstance(error, (PoolTimeout, ConnectionError, TimeoutError)):
        return True
    if isinstance(error, DBAPIError):
        return (bool(error.connection_invalidated) or _unavailable_state(error.orig)
                or isinstance(error.orig, OSError) or _lost_connection_message(str(error.orig)))
    if isinstance(error, EmulatedDBAPIException):
        # SQLAlchemy's asyncpg adapter's own DBAPI errors, which some paths raise unwrapped (seen in the
        # failover drill: "connection is closed" from a unit's first statement after the leader died)
        cause = error.__cause__
        if cause is not None and cause is not error and infrastructure_unavailable(cause):
            return True
        return _unavailable_state(error) or _lost_connection_message(str(error))
    if isinstance(error, asyncpg.PostgresError):  # raw asyncpg (the hot paths' pool)
        return _unavailable_state(error)
    if isinstance(error, asyncpg.exceptions.ConnectionDoesNotExistError):
        return True
    if isinstance(error, (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)):
        return _lost_connection_message(str(error))
    return isinstance(error, OSError) and not isinstance(error, FileNotFoundError)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status, headers=exc.headers)

    @app.exception_handler(IllegalTransition)
    async def _illegal(_: Request, exc: IllegalTransition) -> JSONResponse:
        return JSONResponse(
            error_body("illegal_transition", str(exc), {"status": exc.current.value, "requested": exc.target.value}),
            409,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse(error_body("invalid_request", "The request is not valid.", details), 422)

    @app.exception_handler(DBAPIError)
    async def _database(_: Request, exc: DBAPIError) -> JSONResponse:
        # Text PostgreSQL cannot store (NUL characters, broken encodings) is the client's error.
        return _database_answer(str(getattr(exc.orig, "sqlstate", None) or ""), exc)

    @app.exception_handler(asyncpg.PostgresError)
    @app.exception_handler(asyncpg.exceptions.ConnectionDoesNotExistError)
    async def _raw_database(_: Request, exc: Exception) -> JSONResponse:
        # The same answers for statements sent on the raw asyncpg pool (not wrapped by SQLAlchemy).
        return _database_answer(str(getattr(exc, "sqlstate", None) or ""), exc)

    @app.exception_handler(PoolTimeout)
    async def _pool(_: Request, exc: PoolTimeout) -> JSONResponse:
        return JSONResponse(error_body("database_busy", "The database is busy; retry shortly."), 503,
                            headers={"Retry-After": "2"})

    @app.exception_handler(ConnectionError)
    async def _connection_lost(_: Request, exc: ConnectionError) -> JSONResponse:
        # A connection dropped under the request before the driver could wrap the error (asyncpg checking a
        # pooled connection while the database fails over): an outage, retried shortly, not a server bug.
        return JSONResponse(error_body("unavailable", "A connection to a backing service was lost; retry shortly."),
                            503, headers={"Retry-After": "2"})

    @app.exception_handler(asyncpg.InterfaceError)
    @app.exception_handler(asyncpg.exceptions.InternalClientError)
    @app.exception_handler(EmulatedDBAPIException)
    @app.exception_handler(OSError)
    async def _outage(_: Request, exc: Exception) -> JSONResponse:
        # A connection closed by a failover (raw pool or SQLAlchemy's adapter), or a timeout reaching a backing service.
        if not infrastructure_unavailable(exc):
            raise exc
        return JSONResponse(error_body("unavailable", "A backing service is not available; retry shortly."),
                            503, headers={"Retry-After": "2"})

    @app.exception_handler(UnicodeEncodeError)
    async def _encoding(_: Request, exc: UnicodeEncodeError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", "The request contains text that is not valid Unicode."), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        return JSONResponse(error_body(code, message), exc.status_code, headers=getattr(exc, "headers", None))


def _database_answer(sqlstate: str, exc: Exception) -> JSONResponse:
    """422 for text PostgreSQL cannot store, 503 while the database is unreachable; anything else re-raised."""
    if sqlstate in _UNSTORABLE_TEXT:
        return JSONResponse(error_body("invalid_request", "The request contains characters that cannot be "
                                       "stored (for example NUL)."), 422)
    if infrastructure_unavailable(exc):
        return JSONResponse(error_body("database_unavailable", "The database is not available; retry shortly."),
                            503, headers={"Retry-After": "2"})
    raise exc

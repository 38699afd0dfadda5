"""A connection lost under a request (a database failing over) answers 503 with Retry-After, not 500."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from alexandrite.kit.errors import install_error_handlers


async def test_a_connection_lost_under_a_request_is_503_with_retry_after() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/lost")
    async def lost() -> None:
        raise ConnectionError("unexpected connection_lost() call")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        response = await client.get("/lost")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"]["code"] == "unavailable"


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def test_a_write_that_reached_a_former_primary_is_an_outage_not_a_bug() -> None:
    from sqlalchemy.exc import DBAPIError

    from alexandrite.kit.errors import infrastructure_unavailable

    read_only = DBAPIError("INSERT ...", None, _DriverError("25006"))  # read_only_sql_transaction
    assert infrastructure_unavailable(read_only)
    assert not infrastructure_unavailable(DBAPIError("INSERT ...", None, _DriverError("23505")))  # unique violation


async def test_a_raw_pool_connection_closed_or_timed_out_is_503_and_a_bug_stays_500() -> None:
    import asyncpg

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/closed")
    async def closed() -> None:
        raise asyncpg.InterfaceError("connection is closed")

    @app.get("/slow")
    async def slow() -> None:
        raise TimeoutError

    @app.get("/broken")
    async def broken() -> None:
        raise asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation (2) is in progress")

    @app.get("/adapter-closed")
    async def adapter_closed() -> None:  # SQLAlchemy's asyncpg adapter, unwrapped
        from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

        raise AsyncAdapt_asyncpg_dbapi(asyncpg).InterfaceError("connection is closed")

    @app.get("/busy")
    async def busy() -> None:  # a programming error: two statements on one connection at once
        raise asyncpg.InterfaceError("cannot perform operation: another operation is in progress")

    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for path in ("/closed", "/slow", "/broken", "/adapter-closed"):
            response = await client.get(path)
            assert response.status_code == 503, path
            assert response.headers["retry-after"] == "2"
            assert response.json()["error"]["code"] == "unavailable"
        assert (await client.get("/busy")).status_code == 500


def test_a_connection_dying_under_sqlalchemy_is_an_outage() -> None:
    from sqlalchemy.exc import InternalError

    from alexandrite.kit.errors import infrastructure_unavailable

    died = InternalError("SELECT ...", None, Exception("cannot switch to state 15; another operation (2) is in progress"))
    assert infrastructure_unavailable(died)
    assert not infrastructure_unavailable(InternalError("SELECT ...", None, Exception("division by zero")))


def test_the_sqlalchemy_adapters_own_errors_for_a_lost_connection_are_an_outage() -> None:
    """Raised unwrapped on some paths while a database leader dies; taken for a bug, they used up a
    consumer's attempts in seconds and dead-lettered events the order's next ones then waited behind."""
    import asyncpg
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

    from alexandrite.kit.errors import infrastructure_unavailable

    dbapi = AsyncAdapt_asyncpg_dbapi(asyncpg)
    assert infrastructure_unavailable(dbapi.InterfaceError("connection is closed"))
    assert infrastructure_unavailable(
        dbapi.InternalError("cannot switch to state 15; another operation (2) is in progress"))
    translated = dbapi.OperationalError("terminating connection due to administrator command")
    translated.__cause__ = asyncpg.exceptions.AdminShutdownError("terminating connection")
    assert infrastructure_unavailable(translated)
    assert not infrastructure_unavailable(dbapi.InterfaceError("cannot perform operation: another operation is in progress"))
    assert not infrastructure_unavailable(dbapi.IntegrityError("duplicate key value violates unique constraint"))

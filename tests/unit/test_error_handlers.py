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

"""The simulator's polling of another service's view: an order that view has not learnt of yet (404) is
waited for until the deadline, not reported as a failure at once; after the deadline the 404 is the error."""

from __future__ import annotations

import httpx
import pytest

from alexandrite.devtools.simulate import _poll


def _client(answers: list[httpx.Response]) -> httpx.AsyncClient:
    calls = iter(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        return next(calls)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://crm.test")


async def test_an_order_not_yet_known_is_waited_for() -> None:
    answers = [httpx.Response(404, json={"error": {"code": "not_found"}})] * 2 + [
        httpx.Response(200, json={"status": "PRICE_CALCULATING"}),
        httpx.Response(200, json={"status": "PRICE_CALCULATED"}),
    ]
    async with _client(answers) as client:
        body = await _poll(client, "/api/v1/crm/orders/x", {}, {"PRICE_CALCULATED"}, timeout=10)
    assert body == {"status": "PRICE_CALCULATED"}


async def test_an_order_never_known_fails_after_the_deadline() -> None:
    async with _client([httpx.Response(404, json={"error": {"code": "not_found"}})] * 100) as client:
        with pytest.raises(httpx.HTTPStatusError, match="404"):
            await _poll(client, "/api/v1/crm/orders/x", {}, {"PRICE_CALCULATED"}, timeout=0.2)

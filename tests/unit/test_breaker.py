"""Circuit breaker rules (a fake clock; no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from alexandrite.kit.breaker import BREAKER_STATE, BreakerOpen, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _fail() -> None:
    raise ConnectionError("down")


async def _ok() -> str:
    return "ok"


async def test_opens_after_threshold_fails_fast_then_half_open_trial_closes_it() -> None:
    clock = Clock()
    breaker = CircuitBreaker("test-dep", failure_threshold=3, reset_seconds=10, clock=clock)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await breaker.call(_fail)
    assert breaker.state == "open"
    assert BREAKER_STATE.labels("test-dep")._value.get() == 2
    with pytest.raises(BreakerOpen) as refused:
        await breaker.call(_ok)
    assert 0 < refused.value.retry_after <= 10
    clock.now += 10.5
    assert breaker.state == "half_open"
    assert await breaker.call(_ok) == "ok"
    assert breaker.state == "closed" and BREAKER_STATE.labels("test-dep")._value.get() == 0


async def test_failed_trial_reopens_and_only_one_trial_at_a_time() -> None:
    clock = Clock()
    breaker = CircuitBreaker("test-dep-2", failure_threshold=1, reset_seconds=5, clock=clock)
    with pytest.raises(ConnectionError):
        await breaker.call(_fail)
    clock.now += 6
    breaker.before_call()  # the trial is out...
    with pytest.raises(BreakerOpen):
        breaker.before_call()  # ...so a second caller is refused meanwhile
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now += 4
    with pytest.raises(BreakerOpen):
        breaker.before_call()


async def test_timeout_counts_as_failure_and_successes_reset_the_count() -> None:
    breaker = CircuitBreaker("test-dep-3", failure_threshold=2, reset_seconds=5, timeout=0.01)
    with pytest.raises(TimeoutError):
        await breaker.call(lambda: asyncio.sleep(1))
    await breaker.call(_ok)
    with pytest.raises(ConnectionError):
        await breaker.call(_fail)
    assert breaker.state == "closed"  # 1 failure since the last success


async def test_load_shedding_answers_503_at_once_beyond_the_in_flight_limit() -> None:
    import httpx

    from alexandrite.kit.throttle import LoadShedMiddleware

    release = asyncio.Event()

    async def slow_app(scope: dict, receive: object, send: object) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    app = LoadShedMiddleware(slow_app, service="test", max_in_flight=2)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        held = [asyncio.create_task(client.get("/work")) for _ in range(2)]
        while app.in_flight < 2:
            await asyncio.sleep(0.01)
        shed = await client.get("/work")
        assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
        assert shed.json()["error"]["code"] == "overloaded"
        release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        assert app.in_flight == 0


async def test_peer_calls_open_the_peer_breaker_and_then_fail_fast() -> None:
    from alexandrite.kit.errors import ApiError
    from alexandrite.kit.peers import Peers
    from alexandrite.kit.settings import Settings

    peers = Peers(Settings(_env_file=None, mes_url="http://127.0.0.1:1", breaker_failure_threshold=2,  # type: ignore[call-arg]
                           breaker_reset_seconds=30))
    try:
        for _ in range(2):
            with pytest.raises(ApiError) as refused:
                await peers.post("mes", "/internal/v1/orders/x/cancel", {})
            assert refused.value.status == 503
        assert peers.breakers["mes"].state == "open"
        assert BREAKER_STATE.labels("peer:mes")._value.get() == 2
        with pytest.raises(ApiError) as fast:
            await peers.post("mes", "/internal/v1/orders/x/cancel", {})
        assert fast.value.status == 503 and 1 <= int(fast.value.headers["Retry-After"]) <= 30
        assert await peers.get_quick("mes", "/anything") is None  # enrichment just goes without
        assert peers.breakers["crm"].state == "closed"  # one breaker per peer
    finally:
        await peers.close()

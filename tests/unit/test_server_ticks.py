"""The API server's own loop (kit/shutdown.py): it wakes once a second, not ten times, refreshes the Date
header on every wake, and stops at once when told to from another thread (a signal, the drain timer)."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest
import uvicorn

from alexandrite.kit import shutdown
from alexandrite.kit.shutdown import TICK_SECONDS, DrainingServer


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def _started(ticks: list[int]) -> tuple[DrainingServer, threading.Thread]:
    server = DrainingServer(uvicorn.Config(_app, host="127.0.0.1", port=0, log_level="warning"), drain_seconds=0)
    on_tick = server.on_tick

    async def counted(counter: int) -> bool:
        ticks.append(counter)
        return await on_tick(counter)

    server.on_tick = counted  # type: ignore[method-assign]
    running = threading.Thread(target=server.run, daemon=True)  # its own loop, as a process's main thread has
    running.start()
    for _ in range(3000):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started
    return server, running


def test_the_idle_server_wakes_once_a_second_and_refreshes_the_date_header() -> None:
    ticks: list[int] = []
    server, running = _started(ticks)
    time.sleep(3 * TICK_SECONDS)
    # Three seconds idle: at most a wake a second (uvicorn's own loop wakes thirty times); fewer on a busy machine.
    assert 1 <= len(ticks) <= 5, ticks
    assert all(counter % 10 == 0 for counter in ticks)  # each wake refreshes the Date header
    assert any(name == b"date" for name, _ in server.server_state.default_headers)
    server.handle_exit(signal.SIGTERM, None)
    running.join(30)
    assert not running.is_alive()


def test_a_stop_wakes_the_loop_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a tick of a minute, only the wake the stop sends can end the server within the join's 30 s."""
    monkeypatch.setattr(shutdown, "TICK_SECONDS", 60.0)
    ticks: list[int] = []
    server, running = _started(ticks)
    time.sleep(0.5)
    server.handle_exit(signal.SIGTERM, None)  # from this thread, as the drain timer's thread calls it
    running.join(30)
    assert not running.is_alive() and server.should_exit and len(ticks) == 2  # the first, then the stop's

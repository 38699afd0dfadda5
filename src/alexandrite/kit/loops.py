"""The background-loop shape shared by the outbox relay and the webhook dispatcher, and the event loop a
long-running process outside uvicorn runs on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import structlog
import uvloop

log = structlog.get_logger(__name__)

T = TypeVar("T")


def run_process(main: Coroutine[Any, Any, T]) -> T:
    """Run a long-lived process's main coroutine on uvloop, the loop uvicorn gives the APIs: its socket
    and timer work costs a fraction of asyncio's default loop (the pricing worker's broker and database
    traffic, its thread hand-offs)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def poll_until_stopped(
    stop: asyncio.Event,
    step: Callable[[], Awaitable[int]],
    *,
    idle_seconds: float,
    busy_seconds: float = 0.0,
    error_event: str,
    gauges: Callable[[], Awaitable[None]] | None = None,
    gauge_every: float = 5.0,
    on_error: Callable[[], Awaitable[None]] | None = None,
    wake: asyncio.Event | None = None,
    idle_for: Callable[[], float] | None = None,
    gather_seconds: float = 0.0,
) -> None:
    """Run ``step`` until ``stop``: again at once (``busy_seconds``) while it finds work, after
    ``idle_seconds`` when it does not (or as soon as ``wake`` is set), with backoff from 0.5 s to 10 s
    while it fails; refresh ``gauges`` every ``gauge_every`` seconds. ``idle_for``, when given, says the
    idle pause after each step instead of ``idle_seconds`` (e.g. shorter while wake-ups cannot arrive).

    ``wake`` is cleared before each step, so a wake-up that arrives while the step runs makes the next
    one start at once: none is lost between a step that found nothing and the wait that follows it.
    ``gather_seconds``: after a step that found work, the pause before the next one, whatever wakes
    arrive meanwhile (work that comes in during it is taken together by one step).
    """
    backoff = 0.5
    last_gauge = 0.0
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        if wake is not None:
            wake.clear()
        done: int | None = None
        try:
            done = await step()
            backoff = 0.5
            delay = (max(busy_seconds, gather_seconds) if done
                     else (idle_for() if idle_for is not None else idle_seconds))
        except Exception as error:  # dependency away: the work stays where it is, retried later
            log.warning(error_event, error=repr(error)[:300], retry_in=backoff)
            delay, backoff = backoff, min(backoff * 2, 10.0)
            if on_error is not None:
                await on_error()
        if gauges is not None and loop.time() - last_gauge > gauge_every:  # also while failing
            last_gauge = loop.time()
            try:
                await gauges()
            except Exception as error:
                log.debug("gauges_unavailable", error=repr(error)[:200])
        if delay <= 0:
            continue
        if wake is None or done is None or (done and gather_seconds > 0):
            # failing: the backoff is waited out, wake-ups or not; gathering: so is the pause
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            continue
        await _wait_either(stop, wake, delay)


async def _wait_either(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    if stop.is_set() or wake.is_set():
        return
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()

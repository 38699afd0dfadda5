"""Graceful shutdown of an API process: readiness turns false first, then the listener closes.

On SIGTERM (or SIGINT) the process keeps serving for ``drain_seconds`` while ``/health/ready``
answers 503, so load balancers stop sending new requests; then uvicorn stops accepting, lets
in-flight requests finish (up to its graceful timeout) and runs the lifespan shutdown, which
stops the relay and the consumer (in-flight messages finish or, unacknowledged, go back to
the queue). A second signal skips the drain. Server-sent event streams (kit/live) end as soon as the
drain starts (their clients reconnect to another replica, resuming with ``Last-Event-ID``), so they
never hold the shutdown up.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import FrameType
from typing import Any

import structlog
import uvicorn

log = structlog.get_logger(__name__)
_DRAINING = threading.Event()


def draining() -> bool:
    return _DRAINING.is_set()


# uvicorn's own loop wakes every 0.1 s to see whether it should stop and, every tenth time, to refresh the
# Date header. Here it wakes once a second (the header's own precision) or at once when told to stop: an
# idle process is woken nine times a second less.
TICK_SECONDS = 1.0


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_seconds: float) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self._timer: threading.Timer | None = None
        self._tick: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop, self._tick = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # a multiple of 10: every tick refreshes the Date header
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tick.wait(), TICK_SECONDS)
            self._tick.clear()
            should_exit = await self.on_tick(counter)

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        loop, tick = self._loop, self._tick
        if loop is not None and tick is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing left to wake
                loop.call_soon_threadsafe(tick.set)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if _DRAINING.is_set() or self.drain_seconds <= 0:
            _DRAINING.set()  # long-lived responses (kit/live event streams) end on it, or uvicorn waits for them
            self._stop(sig, frame)
            return
        _DRAINING.set()
        log.info("shutdown_draining", seconds=self.drain_seconds)
        self._timer = threading.Timer(self.drain_seconds, self._stop, args=(sig, frame))
        self._timer.daemon = True
        self._timer.start()


def serve(app: str, *, drain_seconds: float, **config: Any) -> None:
    """Run one uvicorn process with the drain-first shutdown."""
    DrainingServer(uvicorn.Config(app, **config), drain_seconds).run()

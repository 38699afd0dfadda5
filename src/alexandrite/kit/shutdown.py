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

import threading
from types import FrameType
from typing import Any

import structlog
import uvicorn

log = structlog.get_logger(__name__)
_DRAINING = threading.Event()


def draining() -> bool:
    return _DRAINING.is_set()


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_seconds: float) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self._timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if _DRAINING.is_set() or self.drain_seconds <= 0:
            _DRAINING.set()  # long-lived responses (kit/live event streams) end on it, or uvicorn waits for them
            super().handle_exit(sig, frame)
            return
        _DRAINING.set()
        log.info("shutdown_draining", seconds=self.drain_seconds)
        self._timer = threading.Timer(self.drain_seconds, super().handle_exit, args=(sig, frame))
        self._timer.daemon = True
        self._timer.start()


def serve(app: str, *, drain_seconds: float, **config: Any) -> None:
    """Run one uvicorn process with the drain-first shutdown."""
    DrainingServer(uvicorn.Config(app, **config), drain_seconds).run()

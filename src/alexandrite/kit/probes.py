"""What the probe endpoints of an API answer, and to whom.

``/metrics`` answers only a scraper presenting ``Authorization: Bearer <ALEX_METRICS_TOKEN>`` (series
carry partner names and route-level traffic). ``/health/ready`` stays open for load balancers and
orchestrators but says only "ok" or "unavailable"; the per-dependency checks are added for the metrics
token's holder. The dependency checks run at most once per ``READY_CACHE_SECONDS`` whatever the request
rate, so the endpoint cannot be used to load the database.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alexandrite.kit import shutdown
from alexandrite.kit.errors import error_body

READY_CACHE_SECONDS = 1.0


def holds_metrics_token(request: Request) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    token = request.app.state.settings.obs.metrics_token
    return scheme.lower() == "bearer" and bool(token) and hmac.compare_digest(credentials.strip().encode(),
                                                                               token.encode())


def metrics_response(request: Request) -> Response:
    if not holds_metrics_token(request):
        return JSONResponse(error_body("unauthorized", "Metrics need 'Authorization: Bearer <ALEX_METRICS_TOKEN>'."),
                            401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class Readiness:
    """The dependency checks of one app, computed at most once per ``ttl`` seconds (one caller runs them)."""

    def __init__(self, ttl: float = READY_CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._checked_at = float("-inf")
        self._checks: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self.runs = 0  # how many times the checks really ran (tests read it)

    async def checks(self, state: Any) -> dict[str, str]:
        if time.monotonic() - self._checked_at < self.ttl:
            return self._checks
        async with self._lock:
            if time.monotonic() - self._checked_at >= self.ttl:
                self._checks = await self._run(state)
                self._checked_at = time.monotonic()
                self.runs += 1
        return self._checks

    @staticmethod
    async def _run(state: Any) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            async with state.db.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout=2)
            checks["postgres"] = "ok"
        except Exception as error:
            checks["postgres"] = f"failed: {type(error).__name__}"
        consumer = getattr(state, "consumer", None)
        if consumer is not None:
            checks["rabbitmq"] = "ok" if consumer.ready.is_set() else "not connected"
        return checks


async def ready_response(request: Request) -> JSONResponse:
    state = request.app.state
    readiness = getattr(state, "readiness", None)
    if readiness is None:
        readiness = state.readiness = Readiness()
    checks = dict(await readiness.checks(state))
    if shutdown.draining():  # never cached: a draining process leaves the pool at once
        checks["shutdown"] = "draining"
    ok = bool(getattr(state, "ready", False)) and all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable"}
    if holds_metrics_token(request):
        body["checks"] = checks
    return JSONResponse(body, 200 if ok else 503)

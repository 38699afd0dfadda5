"""ASGI middleware: RED metrics labelled by route template, request ids, security headers."""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog

from alexandrite.kit import metrics

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on form posts,
    # which the pages' CSRF origin check must refuse.
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy", b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
]
NO_STORE = (b"cache-control", b"no-store")
# Pinned, versioned assets under /static may be cached by browsers; everything else may not.
STATIC_CACHE = (b"cache-control", b"public, max-age=3600")


class ObservabilityMiddleware:
    def __init__(self, app: Any, service: str) -> None:
        self.app = app
        self.service = service
        self._in_flight = metrics.HTTP_IN_FLIGHT.labels(service)
        # Labelled children by (method, route template[, status]): label look-ups cost more than the
        # observation itself. Bounded: templates and statuses are few (raw paths never become labels).
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._durations: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = {"status": 500}
        request_id = None
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                request_id = value.decode("latin-1")[:64]
                break
        request_id = request_id or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def _send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", ()))
                headers.extend(SECURITY_HEADERS)
                headers.append(STATIC_CACHE if scope.get("path", "").startswith("/static/") else NO_STORE)
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        gauge = self._in_flight
        gauge.inc()
        try:
            await self.app(scope, receive, _send)
        finally:
            gauge.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            elapsed = time.perf_counter() - started
            status = status_holder["status"]
            counter = self._counters.get((method, template, status))
            if counter is None:
                counter = self._child(self._counters, (method, template, status),
                                      lambda: metrics.HTTP_REQUESTS.labels(self.service, method, template, str(status)))
            duration = self._durations.get((method, template))
            if duration is None:
                duration = self._child(self._durations, (method, template),
                                       lambda: metrics.HTTP_DURATION.labels(self.service, method, template))
            counter.inc()
            duration.observe(elapsed)
            structlog.contextvars.unbind_contextvars("request_id")

    @staticmethod
    def _child(cache: dict, key: tuple, make: Any) -> Any:
        child = make()
        if len(cache) < 10_000:  # unmatched paths share one template; methods could still be invented
            cache[key] = child
        return child

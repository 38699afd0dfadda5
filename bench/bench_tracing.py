"""What tracing costs per request: no tracing code at all, tracing off (the default), tracing on.

Run: .venv/bin/python bench/bench_tracing.py [--requests 500] [--rounds 31] [--smoke]

One FastAPI app of the kit's shape (ObservabilityMiddleware, a JSON route that logs one line and
queues one outbox event, as a state-changing request does) is called in-process through ASGI,
no network, so the figures are the framework's and our code's cost alone:

- none: the request path with the tracing hooks taken out (no ``trace_headers`` on emit, no
  trace-id log processor) — the code as it was before tracing;
- off:  the shipped code with ``ALEX_TRACING=off``: hooks present, no SDK, nothing instrumented;
- on:   SDK installed, FastAPI instrumented, every span recorded and handed to an exporter that
  drops it (the cost of tracing itself, without the network).

Rounds alternate the variants; each round's CPU time of the calling thread (so the load of other
processes on a shared machine counts less) gives a per-request cost; the minimum and median over
the rounds are reported with their ratio to ``none``. ``on`` runs last because installing the SDK is process-wide.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import structlog  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from alexandrite.contracts.events import (
    StatusChanged,  # noqa: E402
    status_envelope,  # noqa: E402
)
from alexandrite.kit import logs, tracing  # noqa: E402
from alexandrite.kit.http import ObservabilityMiddleware  # noqa: E402

CHANGE = StatusChanged(status="SUBMITTED", actor="customer:bench", alloy="gold_585",  # type: ignore[arg-type]
                       model={"key": "k", "format": "stl_binary", "triangles": 1, "bytes": 84, "sha256": "0" * 64})


def build_app(hooks: bool) -> FastAPI:
    """The route does what a state change does besides SQL: build an event, queue it, log a line."""
    app = FastAPI()
    log = structlog.get_logger("bench")
    queued: list[dict[str, Any]] = []

    @app.post("/api/v1/orders/{order_id}/submit")
    async def submit(order_id: uuid.UUID) -> dict[str, str]:
        envelope = status_envelope(producer="shop", order_id=order_id, seq=3, change=CHANGE)
        headers = {"event_type": envelope.type, "order_id": str(order_id), "seq": envelope.seq}
        if hooks:
            headers.update(tracing.trace_headers())  # what UnitOfWork.emit adds
        queued.append(headers)
        if len(queued) > 1000:
            queued.clear()
        log.info("order_submitted", order_id=str(order_id))
        return {"id": str(order_id), "status": "SUBMITTED"}

    app.add_middleware(ObservabilityMiddleware, service="shop")
    tracing.instrument_app(app)
    return app


def configure_logs(hooks: bool) -> None:
    logs.configure_logging("shop")
    if not hooks:  # the processor chain without the trace-id step
        config = structlog.get_config()
        structlog.configure(processors=[p for p in config["processors"] if p is not logs._trace_ids])


async def call(app: FastAPI, path: str) -> None:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"bench"), (b"content-length", b"0")], "client": ("127.0.0.1", 1),
             "server": ("bench", 80)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message

    await app(scope, receive, send)


async def per_request_us(app: FastAPI, hooks: bool, requests: int) -> float:
    configure_logs(hooks)
    paths = [f"/api/v1/orders/{uuid.uuid4()}/submit" for _ in range(requests)]
    with redirect_stdout(io.StringIO()):
        for path in paths[:50]:
            await call(app, path)
        started = time.thread_time()  # CPU time of this thread: other processes' load does not count
        for path in paths:
            await call(app, path)
        elapsed = time.thread_time() - started
    return elapsed / requests * 1e6


def enable_tracing() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    tracing.install_provider(provider)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--smoke", action="store_true", help="20 requests x 3 rounds (for the test suite)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.requests, args.rounds = 20, 3

    apps = {"none": (build_app(False), False), "off": (build_app(True), True)}
    results: dict[str, list[float]] = {name: [] for name in ("none", "off", "on")}
    for round_ in range(args.rounds):
        order = list(apps.items()) if round_ % 2 == 0 else list(apps.items())[::-1]  # no order bias
        for name, (app, hooks) in order:
            results[name].append(await per_request_us(app, hooks, args.requests))
    enable_tracing()
    traced = build_app(True)
    for _ in range(args.rounds):
        results["on"].append(await per_request_us(traced, True, args.requests))

    base = {"min": min(results["none"]), "median": statistics.median(results["none"])}
    print(f"{args.requests} requests x {args.rounds} rounds, in-process ASGI, CPU microseconds per request")
    print(f"{'variant':8} {'min':>8} {'median':>8} {'min/none':>9} {'median/none':>12}")
    for name, values in results.items():
        low, mid = min(values), statistics.median(values)
        print(f"{name:8} {low:8.1f} {mid:8.1f} {low / base['min']:9.3f} {mid / base['median']:12.3f}")


if __name__ == "__main__":
    asyncio.run(main())

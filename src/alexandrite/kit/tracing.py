"""OpenTelemetry tracing: HTTP, SQL, Redis, peer calls and RabbitMQ, off unless configured.

With ``ALEX_TRACING=off`` (the default) no SDK and no instrumentation is installed: the only
code left on the hot path is the API's no-op tracer in :func:`message_span` and the empty
:func:`trace_headers`, which costs nothing measurable per request (``bench/bench_tracing.py``). The
relay, which opens a span per message, skips both then (:func:`spans_possible`): about a sixth of its
CPU per message in a profile, for headers that come out as they went in.

Context crosses RabbitMQ in message headers (W3C ``traceparent``/``tracestate``): the unit of
work stores the *emitting* context in the outbox row, the relay publishes the message as a
child of it, and the consumer processes it as a child of the publish span, so one order's
trace runs shop → mes → pricing worker → crm.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from alexandrite.kit.settings import Settings

TRACER_NAME = "alexandrite"
_installed: dict[str, Any] = {}
_DEFAULT_TRACER = trace.get_tracer(TRACER_NAME)  # the global one (a no-op until a provider is set)
_state: dict[str, Any] = {"tracer": _DEFAULT_TRACER}


def tracing_enabled() -> bool:
    return bool(_installed)


def spans_possible() -> bool:
    """Whether a message span could be recorded: an SDK installed here, a provider given for a block
    (:func:`use_provider`) or any global provider set. When not, a producer span is the parent's context
    handed back unchanged, so a caller may skip :func:`message_span` and :func:`trace_headers`."""
    return (bool(_installed) or _state["tracer"] is not _DEFAULT_TRACER
            or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider))


def configure_tracing(service_name: str, settings: Settings) -> None:
    """Install the SDK with the configured exporter (once per process); nothing when tracing is off."""
    if settings.obs.tracing == "off" or _installed:
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if settings.obs.tracing == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.obs.otlp_endpoint)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(file_exporter(settings.obs.trace_dir, service_name)))
    install_provider(provider)


def file_exporter(directory: Path, service_name: str) -> Any:
    """Spans as JSON lines in ``<directory>/<service>-<pid>.jsonl`` (one file per process)."""
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    directory.mkdir(parents=True, exist_ok=True)
    out = open(directory / f"{service_name}-{os.getpid()}.jsonl", "a", encoding="utf-8")  # noqa: SIM115
    return ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")


def install_provider(provider: Any) -> None:
    """Make ``provider`` the process's tracer provider and instrument the libraries we use."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    trace.set_tracer_provider(provider)
    _installed["provider"] = provider
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    # Every engine created from now on (kit/db.py calls create_async_engine through its module).
    # The instrumentation declares "sqlalchemy < 2.1"; its event hooks work with 2.1 (tested end to end).
    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    # The plain pools' one-statement hot paths (Database.raw): asyncpg's Connection methods. SQLAlchemy's
    # statements run through prepared statements, which this leaves alone: no statement gets two spans.
    AsyncPGInstrumentor().instrument(tracer_provider=provider)


@contextlib.contextmanager
def use_provider(provider: Any) -> Iterator[None]:
    """Message spans go to ``provider`` inside the block (tests: an in-memory exporter), with no
    global instrumentation installed and the process's tracer restored afterwards."""
    previous = _state["tracer"]
    _state["tracer"] = provider.get_tracer(TRACER_NAME)
    try:
        yield
    finally:
        _state["tracer"] = previous


def instrument_app(app: Any) -> None:
    if tracing_enabled():
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=_installed["provider"],
                                           excluded_urls="/metrics,/health/live,/health/ready",
                                           exclude_spans=["receive", "send"])


def shutdown_tracing() -> None:
    provider = _installed.get("provider")
    if provider is not None:
        with contextlib.suppress(Exception):
            provider.force_flush()


def trace_headers() -> dict[str, str]:
    """The current trace context as message headers (empty when no span is recording)."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(carrier)
    return carrier


@contextlib.contextmanager
def message_span(name: str, kind: SpanKind, headers: Mapping[str, Any], **attributes: Any) -> Iterator[Any]:
    """A producer/consumer span, child of the context carried in ``headers``; yields it."""
    parent = propagate.extract({k: str(v) for k, v in headers.items() if k in ("traceparent", "tracestate")})
    token = otel_context.attach(parent)
    try:
        with _state["tracer"].start_as_current_span(name, kind=kind, attributes=attributes) as span:
            yield span
    finally:
        otel_context.detach(token)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, if any."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")

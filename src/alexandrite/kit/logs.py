"""Structured logs: one JSON object per line on stdout with Elastic Common Schema field names."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_REDACT = ("password", "token", "api_key", "authorization", "email", "secret", "address")


def _ecs(_: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "@timestamp": event.pop("timestamp", None),
        "log.level": event.pop("level", method),
        "message": event.pop("event", ""),
        "ecs.version": "8.11.0",
    }
    service = event.pop("service", None)
    if service:
        out["service.name"] = service
    logger = event.pop("logger", None)
    if logger:
        out["log.logger"] = logger
    for key in ("trace_id", "span_id"):
        if key in event:
            out[key.replace("_", ".", 1)] = event.pop(key)
    if "order_id" in event:
        out["labels.order_id"] = event.pop("order_id")
    exc = event.pop("exception", None)
    if exc:
        out["error.stack_trace"] = exc
    for key, value in event.items():
        lowered = key.lower()
        out[key] = "[redacted]" if any(word in lowered for word in _REDACT) else value
    return out


def configure_logging(service: str, *, level: str = "INFO", json_output: bool = True) -> None:
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if json_output:
        processors += [_ecs, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer()]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

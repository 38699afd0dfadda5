"""Structured logs: one JSON object per line on stdout with Elastic Common Schema field names."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from alexandrite.kit.tracing import current_ids

_REDACT = ("password", "token", "api_key", "authorization", "email", "secret", "address", "cookie")
# Values that must never reach a log line, whatever field (or error message) carries them.
_SCRUB = re.compile(
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"  # e-mail addresses
    r"|(?i:bearer|service)\s+[A-Za-z0-9._~+/=-]{16,}"  # Authorization header values
    r"|\b(?:alx|ak)_[A-Za-z0-9_-]{16,}"  # API keys
    r"|\beyJ[A-Za-z0-9_-]{10,}(?:\.[A-Za-z0-9_-]{10,})+"  # signed tokens (base64 JSON + signature)
)


def scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _SCRUB.sub("[redacted]", value)
    return value


def _trace_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    ids = current_ids()
    if ids is not None:
        event.setdefault("trace_id", ids[0])
        event.setdefault("span_id", ids[1])
    return event


def _ecs(_: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "@timestamp": event.pop("timestamp", None),
        "log.level": event.pop("level", method),
        "message": scrub(event.pop("event", "")),
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
    if "request_id" in event:
        out["http.request.id"] = event.pop("request_id")
    exc = event.pop("exception", None)
    if exc:
        out["error.stack_trace"] = scrub(exc)
    for key, value in event.items():
        lowered = key.lower()
        out[key] = "[redacted]" if any(word in lowered for word in _REDACT) else scrub(value)
    return out


def configure_logging(service: str, *, level: str = "INFO", json_output: bool = True) -> None:
    def _service(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("service", service)  # every task's lines, not only those of the configuring task
        return event

    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _service,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _trace_ids,
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
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

"""Optional push of every Prometheus metric to Graphite (carbon plaintext protocol).

Enabled by ``ALEX_GRAPHITE_ADDRESS=host:port``. Series are named
``<prefix>.<service>.<instance>.<metric>.<label>.<value>…`` so replicas do not overwrite
each other. A push that fails is logged and retried at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket

import structlog
from prometheus_client.bridge.graphite import GraphiteBridge

from alexandrite.kit.settings import Settings

log = structlog.get_logger(__name__)


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"graphite address must be host:port, not {address!r}")
    return host, int(port)


def series_prefix(settings: Settings, service: str, instance: str | None = None) -> str:
    instance = instance or socket.gethostname()
    parts = (settings.obs.graphite_prefix, service, instance)
    return ".".join(re.sub(r"[^a-zA-Z0-9_-]", "_", part) for part in parts if part)


async def run_graphite_push(settings: Settings, service: str, stop: asyncio.Event,
                            instance: str | None = None) -> None:
    if not settings.obs.graphite_address:
        return
    bridge = GraphiteBridge(parse_address(settings.obs.graphite_address), timeout_seconds=5)
    prefix = series_prefix(settings, service, instance)
    while not stop.is_set():
        try:
            await asyncio.to_thread(bridge.push, prefix)
        except OSError as error:
            log.warning("graphite_push_failed", error=repr(error)[:300])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.obs.graphite_interval_seconds)

"""RabbitMQ definitions (exchanges, queues, bindings) generated from the code's own topology.

``declare_topology`` runs against a recording channel instead of a broker, so the exported
file is exactly what the services declare (``deploy/rabbitmq/definitions.json``; regenerate
with ``alexandrite rabbitmq definitions --output deploy/rabbitmq/definitions.json``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from alexandrite.kit.messaging.topology import declare_topology
from alexandrite.kit.settings import Settings


class _Exchange:
    def __init__(self, name: str) -> None:
        self.name = name


class _Queue:
    def __init__(self, recorder: "RecordingChannel", name: str) -> None:
        self.recorder = recorder
        self.name = name

    async def bind(self, exchange: Any, routing_key: str = "", **_: Any) -> None:
        source = exchange if isinstance(exchange, str) else exchange.name
        self.recorder.bindings.append({"source": source, "destination": self.name, "destination_type": "queue",
                                       "routing_key": routing_key, "arguments": {}})


class RecordingChannel:
    """Just enough of an aio-pika channel for ``declare_topology``; remembers every declaration."""

    def __init__(self) -> None:
        self.exchanges: list[dict[str, Any]] = []
        self.queues: list[dict[str, Any]] = []
        self.bindings: list[dict[str, Any]] = []

    async def declare_exchange(self, name: str, type: Any = "direct", *, durable: bool = False,
                               auto_delete: bool = False, arguments: dict[str, Any] | None = None,
                               **_: Any) -> _Exchange:
        kind = getattr(type, "value", type)
        self.exchanges.append({"name": name, "type": kind, "durable": durable, "auto_delete": auto_delete,
                               "internal": False, "arguments": dict(arguments or {})})
        return _Exchange(name)

    async def declare_queue(self, name: str, *, durable: bool = False, auto_delete: bool = False,
                            arguments: dict[str, Any] | None = None, **_: Any) -> _Queue:
        self.queues.append({"name": name, "durable": durable, "auto_delete": auto_delete,
                            "arguments": dict(arguments or {})})
        return _Queue(self, name)


def record_topology(settings: Settings) -> RecordingChannel:
    channel = RecordingChannel()
    asyncio.run(declare_topology(channel, settings))  # type: ignore[arg-type]
    return channel


def definitions(settings: Settings, vhost: str = "/") -> dict[str, Any]:
    channel = record_topology(settings)
    return {
        "vhosts": [{"name": vhost}],
        "exchanges": sorted(({**e, "vhost": vhost} for e in channel.exchanges), key=lambda e: e["name"]),
        "queues": sorted(({**q, "vhost": vhost} for q in channel.queues), key=lambda q: q["name"]),
        "bindings": sorted(({**b, "vhost": vhost} for b in channel.bindings),
                           key=lambda b: (b["destination"], b["routing_key"])),
        "policies": [],
    }


def definitions_json(settings: Settings, vhost: str = "/") -> str:
    return json.dumps(definitions(settings, vhost), indent=2, sort_keys=True) + "\n"

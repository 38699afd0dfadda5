"""Serving an app on a real socket in the test's loop, and reading server-sent events from it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """``app`` under uvicorn on a free local port (lifespan included); its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        live = getattr(app.state, "live", None)
        if live is not None:  # what the drain on SIGTERM does: streams end, so the server can stop
            live.hub.close_all("shutting_down")
        server.should_exit = True
        await task


@dataclass
class Event:
    id: str | None
    event: str
    data: Any


class EventReader:
    """Events of one open ``text/event-stream`` response, one at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def next(self, timeout: float = 10.0) -> Event | None:
        """The next event (heartbeats skipped); None when the stream ended."""
        fields: dict[str, str] = {}
        while True:
            try:
                line = await asyncio.wait_for(anext(self.lines), timeout)
            except StopAsyncIteration:
                return None
            if line == "":
                if "event" in fields or "data" in fields:
                    data = fields.get("data")
                    return Event(fields.get("id"), fields.get("event", "message"),
                                 json.loads(data) if data else None)
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
            if name == "retry":
                fields.pop("retry")

    async def until(self, wanted: str, timeout: float = 10.0) -> Event:
        while True:
            event = await self.next(timeout)
            assert event is not None, f"the stream ended before a {wanted!r} event"
            if event.event == wanted:
                return event

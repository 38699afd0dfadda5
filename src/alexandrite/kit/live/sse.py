"""The ``text/event-stream`` response of a subscriber: resume, heartbeats, clean end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import StreamingResponse

from alexandrite.kit.errors import ApiError
from alexandrite.kit.live.hub import Entry, LiveHub, Subscriber, id_key

Frame = tuple[str, Any]  # (event name, data): one SSE event
# What a subscriber's page is told of an entry (nothing when it does not concern it); may read state.
Render = Callable[[Entry, Subscriber], Awaitable[Sequence[Frame]]]
HEADERS = {"X-Accel-Buffering": "no"}  # proxies (nginx) pass each event on at once


def frame(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One event; ``data`` is JSON-serialised unless it is already bytes of JSON (one line)."""
    head = f"id: {event_id}\n" if event_id else ""
    body = data if isinstance(data, bytes) else orjson.dumps(data)
    return f"{head}event: {event}\n".encode() + b"data: " + body + b"\n\n"


def last_event_id(request: Request) -> str | None:
    """The id a reconnecting browser sends (``Last-Event-ID``), or ``?last_event_id=`` for clients that cannot."""
    value = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    return value.strip()[:64] or None if value else None


def client_of(request: Request, principal: Any = None) -> str:
    """Whose streams count against the per-client limit: the signed-in party, else the address."""
    actor = getattr(principal, "actor", None)
    if actor:
        return str(actor)
    return request.client.host if request.client else "unknown"


async def _events(hub: LiveHub, subscriber: Subscriber, render: Render, after: str | None,
                  heartbeat_seconds: float, retry_ms: int,
                  opening: Callable[[], Awaitable[Sequence[Frame]]] | None) -> AsyncIterator[bytes]:
    try:
        yield f"retry: {retry_ms}\n\n".encode()
        if opening is not None:
            for event, data in await opening():
                yield frame(event, data)
        last = after
        if after is not None:
            backlog = await hub.since(after, subscriber.topics)
            if backlog is None:  # what was missed is no longer kept: the page starts over
                yield frame("reset", {"reason": "too_old"})
                return
            for missed in backlog:
                for event, data in await render(missed, subscriber):
                    yield frame(event, data, missed.id)
                last = missed.id
        last_key = id_key(last) if last else None
        while True:
            try:
                entry: Entry | None = await asyncio.wait_for(subscriber.queue.get(), heartbeat_seconds)
            except TimeoutError:
                yield b": ping\n\n"
                continue
            if entry is None:  # closed by the hub: shutting down, or fell behind
                yield frame("bye", {"reason": subscriber.reason}, last)
                return
            key = id_key(entry.id)
            if last_key is not None and key <= last_key:
                continue  # already sent from the backlog
            last_key = key
            last = entry.id
            for event, data in await render(entry, subscriber):
                yield frame(event, data, entry.id)
    finally:
        hub.unsubscribe(subscriber)


def event_response(request: Request, hub: LiveHub, *, topics: Iterable[str], client: str, render: Render,
                   opening: Callable[[], Awaitable[Sequence[Frame]]] | None = None,
                   state: dict[str, Any] | None = None) -> StreamingResponse:
    """Subscribes at once (raising 429/503 before any byte is sent) and streams the subscriber's events.

    Entries after ``Last-Event-ID`` are read from the stream first; live ones already sent are skipped,
    so nothing is missed and nothing repeats across a reconnect. ``state`` starts the subscriber's
    :attr:`~Subscriber.extra` (what ``render`` keeps between entries)."""
    settings = request.app.state.settings.live
    subscriber = hub.subscribe(topics, client)
    subscriber.extra.update(state or {})
    body = _events(hub, subscriber, render, last_event_id(request), settings.heartbeat_seconds,
                   settings.retry_ms, opening)
    return StreamingResponse(body, media_type="text/event-stream", headers=HEADERS)


async def _change_render(entry: Entry, subscriber: Subscriber) -> Sequence[Frame]:
    if entry.data.get("kind") != "status":
        return []
    return [("change", {k: entry.data[k] for k in ("order_id", "status", "previous") if k in entry.data})]


def staff_change_stream(request: Request, principal: Any) -> StreamingResponse:
    """Every status change of the service's orders as a ``change`` event (``order_id``, ``status``,
    ``previous``): what a staff list or board needs to know that its rows or counts moved."""
    live = getattr(request.app.state, "live", None)
    if live is None:
        raise ApiError(503, "live_disabled", "Live updates are switched off here; the page polls instead.")
    return event_response(request, live.hub, topics=("*",), client=client_of(request, principal),
                          render=_change_render)

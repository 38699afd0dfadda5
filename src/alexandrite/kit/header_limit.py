"""uvicorn's HTTP protocol held to ``ALEX_MAX_HEADER_BYTES`` for the request head, answering in one send.

uvicorn's httptools parser accepts request heads of any size (megabytes of headers are buffered before
the application sees one); its h11 parser has ``h11_max_incomplete_event_size``. :func:`server_options`
gives ``serve`` the httptools protocol below, which counts the bytes of a request head as they arrive and
answers 431 past the limit, or h11 with that option when httptools is not installed. Its transport joins
the writes of one loop turn (kit/joined_writes.py): a response's head and body leave in one ``send``.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from alexandrite.kit.joined_writes import TurnJoinedTransport
from alexandrite.kit.settings import Settings, get_settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn without the "standard" extra
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

_BODY = b'{"error":{"code":"headers_too_large","message":"The request line and headers are too large."}}'


if HttpToolsProtocol is not None:

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        """Counts the bytes fed while a request head is incomplete; 431 and close past the limit."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._max_head = get_settings().limits.max_header_bytes
            self._head_bytes = 0
            self._in_head = True
            self._completed_in_chunk = False

        def connection_made(self, transport: Any) -> None:
            super().connection_made(cast(asyncio.Transport, TurnJoinedTransport(transport, asyncio.get_running_loop())))

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0
            self._in_head = True

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True  # whatever comes next on this connection starts a new head
            self._head_bytes = 0
            self._completed_in_chunk = True

        def data_received(self, data: bytes) -> None:
            self._completed_in_chunk = False
            super().data_received(data)
            # A chunk that finished a request may hold that request's body: it is not head bytes.
            if self._in_head and not self._completed_in_chunk and not self.transport.is_closing():
                self._head_bytes += len(data)
                if self._head_bytes > self._max_head:
                    self._refuse_head()

        def _refuse_head(self) -> None:
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                 b"content-type: application/json\r\ncontent-length: "
                                 + str(len(_BODY)).encode() + b"\r\nconnection: close\r\n\r\n" + _BODY)
            self.transport.close()


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn options that bound the request head."""
    if HttpToolsProtocol is not None:
        return {"http": BoundedHttpToolsProtocol}
    return {"http": "h11", "h11_max_incomplete_event_size": settings.limits.max_header_bytes}

"""A transport whose writes of one event-loop turn leave in one system call.

uvicorn writes a response's head and its body with two ``transport.write`` calls, one after the other in
the same loop turn; on uvloop each is a ``send`` at once. On loopback and on a virtual machine's network a
send is the costly part of answering a small request (the kernel's TCP path, the peer woken), so
:class:`TurnJoinedTransport` keeps what is written until the end of the current turn (``loop.call_soon``)
and hands it on as one buffer. Order is kept; a large write (:data:`DIRECT_BYTES`) goes on at once behind
what waits; closing sends what waits first; everything else is the wrapped transport's.
"""

from __future__ import annotations

import asyncio
from typing import Any

DIRECT_BYTES = 64 * 1024


class TurnJoinedTransport:
    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._waiting: list[bytes] = []
        self.flushes = 0  # writes handed on (tests)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if len(data) >= DIRECT_BYTES:
            self._flush()
            self._hand_on(data)
            return
        if not self._waiting:
            self._loop.call_soon(self._flush)
        self._waiting.append(bytes(data))

    def writelines(self, data: Any) -> None:
        for chunk in data:
            self.write(chunk)

    def _flush(self) -> None:
        if not self._waiting:
            return
        data = self._waiting[0] if len(self._waiting) == 1 else b"".join(self._waiting)
        self._waiting = []
        self._hand_on(data)

    def _hand_on(self, data: bytes | bytearray | memoryview) -> None:
        if not self._transport.is_closing():
            self._transport.write(data)
            self.flushes += 1

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._waiting))

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, abort, ...
        return getattr(self._transport, name)

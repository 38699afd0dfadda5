"""Broker connections whose frames written in one turn of the event loop leave in one system call.

aiormq writes every frame it dequeues to the socket at once: a relay batch of 50 publishes, or the acks
of the deliveries finished in one loop turn, cost one ``send`` each. On loopback (and on a virtual
machine's network) each send wakes the broker and pays the kernel's TCP path; in profiles of the
pipeline the connection's writer task was the largest single cost of the messaging client.

:class:`CoalescedTcpTransport` is an aiormq ``TransportFactory`` (its documented way to supply the
connection's streams) whose writer keeps what is written until the end of the current loop turn
(``loop.call_soon``) and then hands it to the transport as one buffer. Order is kept; nothing waits
past the next loop turn, nor beyond :data:`FLUSH_BYTES`; ``drain`` still applies the transport's flow
control; closing sends what waits first.

A connection may instead *hold* its writes for a few milliseconds (``hold_seconds``): an event consumer's
connection carries mostly acks, one per message as each handler finishes, seldom two in one loop turn; held
for a moment they leave several to a send. An ack a little late costs nothing but a prefetch slot for that
moment (a crash before it is sent means a redelivery, which the consumers' inbox makes harmless).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiormq.connection import TransportFactory
from aiormq.exceptions import AMQPConnectionError
from yarl import URL

# Written bytes waiting beyond this go out at once instead of at the end of the loop turn.
FLUSH_BYTES = 256 * 1024
STREAM_LIMIT = 2**16  # asyncio's default StreamReader limit, as asyncio.open_connection uses


@dataclass
class WriteCounts:
    """What the writers of one factory were given (``writes``) and handed on (``flushes``)."""

    writes: int = 0
    flushes: int = 0


class CoalescedStreamWriter(asyncio.StreamWriter):
    """A ``StreamWriter`` that joins the writes of one loop turn into one ``transport.write``."""

    def __init__(self, transport: asyncio.WriteTransport, protocol: asyncio.StreamReaderProtocol,
                 reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop,
                 counts: WriteCounts | None = None, hold_seconds: float = 0.0) -> None:
        super().__init__(transport, protocol, reader, loop)
        self._hold = hold_seconds
        self._waiting: list[bytes] = []
        self._waiting_bytes = 0
        self._sink = transport
        self._turn_loop = loop
        self.counts = counts or WriteCounts()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._waiting:
            if self._hold > 0:
                self._turn_loop.call_later(self._hold, self.flush)
            else:
                self._turn_loop.call_soon(self.flush)
        self._waiting.append(bytes(data))
        self._waiting_bytes += len(data)
        self.counts.writes += 1
        if self._waiting_bytes >= FLUSH_BYTES:
            self.flush()

    def writelines(self, data: Any) -> None:
        for chunk in data:
            self.write(chunk)

    def flush(self) -> None:
        """Hand what waits to the transport now (dropped when the transport is closing, as the
        transport itself would drop it)."""
        if not self._waiting:
            return
        data = self._waiting[0] if len(self._waiting) == 1 else b"".join(self._waiting)
        self._waiting = []
        self._waiting_bytes = 0
        if not self._sink.is_closing():
            self._sink.write(data)
            self.counts.flushes += 1

    @property
    def waiting_bytes(self) -> int:
        return self._waiting_bytes

    def write_eof(self) -> None:
        self.flush()
        super().write_eof()

    def close(self) -> None:
        self.flush()
        super().close()


class CoalescedTcpTransport(TransportFactory):
    """Plain TCP (``amqp://``) streams with a :class:`CoalescedStreamWriter`."""

    def __init__(self, hold_seconds: float = 0.0) -> None:
        self.counts = WriteCounts()  # of every connection this factory opened (tests, profiles)
        self.hold_seconds = hold_seconds

    async def create(self, url: URL, **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        kwargs.pop("ssl_context_provider", None)
        if url.host is None:
            raise AMQPConnectionError(f"no host in the broker URL {url.with_password(None)}")
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.create_connection(lambda: protocol, host=url.host, port=url.port or 5672,
                                                          **kwargs)
        except OSError as error:
            raise AMQPConnectionError(*error.args) from error
        return reader, CoalescedStreamWriter(transport, protocol, reader, loop, self.counts, self.hold_seconds)


def coalesced_transport_for(urls: list[URL], hold_seconds: float = 0.0) -> CoalescedTcpTransport | None:
    """The factory for plain ``amqp://`` addresses; None (aiormq's own, TLS included) for any other."""
    return CoalescedTcpTransport(hold_seconds) if all(url.scheme == "amqp" for url in urls) else None

"""Connections to RabbitMQ: one broker, or the nodes of a cluster tried in turn.

``ALEX_AMQP_URL`` may list several URLs separated by commas (one per cluster node). Every
connection of the platform comes from :func:`connect`:

- each call starts at the next address (round robin within the process), so a process's
  connections spread over the nodes, and a retry after a failure starts elsewhere;
- it tries every address once before giving up;
- a robust connection (``robust=True``) reconnects by itself and restores its channels and
  consumers like aio-pika's, but moves to the next address when it loses its node and after
  every failed reconnect attempt. (aio-pika's own robust connection only ever reconnects to the
  URL it was opened with, so a lost node would keep it away for as long as the node is down.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any, Literal, overload

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aio_pika.connection import make_url
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aio_pika.robust_connection import RobustConnection
from yarl import URL

from alexandrite.kit.messaging.coalesced_writes import coalesced_transport_for

# Pause between reconnect attempts of a robust connection (each to the next address).
RECONNECT_SECONDS = 1.0

_starts = itertools.count()


def amqp_addresses(amqp_url: str) -> list[str]:
    """The broker URLs in ``amqp_url`` (one, or several separated by commas)."""
    addresses = [part.strip() for part in amqp_url.split(",") if part.strip()]
    if not addresses:
        raise ValueError("no AMQP URL configured (ALEX_AMQP_URL is empty)")
    return addresses


def amqp_vhost(amqp_url: str) -> str:
    """The virtual host the URLs name (the same on every node of a cluster)."""
    return URL(amqp_addresses(amqp_url)[0]).path[1:] or "/"


class MultiAddressConnection(RobustConnection):
    """A robust connection that fails over to the next address instead of waiting for a lost node."""

    def __init__(self, addresses: list[URL], index: int, *, write_hold_seconds: float = 0.0, **kwargs: Any) -> None:
        super().__init__(addresses[index], **kwargs)
        _coalesce_writes(self, addresses, write_hold_seconds)
        self.addresses = addresses
        self.index = index
        self._rotation: asyncio.Task[None] | None = None

    def _advance(self) -> None:
        """The next (re)connect attempt goes to the next address."""
        self.index = (self.index + 1) % len(self.addresses)
        self.url = self.addresses[self.index]

    @property
    def _given_up(self) -> bool:
        return self.is_closed or self._close_called

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if not self._given_up and len(self.addresses) > 1:
            self._advance()  # before the base class asks for a reconnect
            if self._rotation is None or self._rotation.done():
                self._rotation = self.loop.create_task(self._rotate_until_connected())
        await super()._on_connection_close(closing)

    async def _rotate_until_connected(self) -> None:
        # An attempt at a node that is down too fails; the one after it goes to the next node.
        while not self._given_up and not self.connected.is_set():
            await asyncio.sleep(self.reconnect_interval)
            if not self._given_up and not self.connected.is_set():
                self._advance()

    async def close(self, exc: Any = asyncio.CancelledError) -> None:
        if self._rotation is not None:
            self._rotation.cancel()
        await super().close(exc)


def _coalesce_writes(connection: aio_pika.Connection, addresses: list[URL], hold_seconds: float = 0.0) -> None:
    """Frames written in one loop turn (or within ``hold_seconds``) leave in one system call
    (kit/messaging/coalesced_writes.py).

    aio-pika keeps only the connection parameters it knows; aiormq takes the transport factory from
    the keyword arguments the connection hands it on every (re)connect."""
    factory = coalesced_transport_for(addresses, hold_seconds)
    if factory is not None:
        connection.kwargs["transport_factory"] = factory


@overload
async def connect(amqp_url: str, *, robust: Literal[True], timeout: float = 10.0,
                  write_hold_seconds: float = 0.0) -> AbstractRobustConnection: ...


@overload
async def connect(amqp_url: str, *, robust: Literal[False] = False, timeout: float = 10.0,
                  write_hold_seconds: float = 0.0) -> AbstractConnection: ...


async def connect(amqp_url: str, *, robust: bool = False, timeout: float = 10.0,
                  write_hold_seconds: float = 0.0) -> AbstractConnection:
    """Connect to the first address of ``amqp_url`` that answers, starting at the next one in turn.
    ``write_hold_seconds``: how long written frames may wait to leave together (0: until the loop turn ends)."""
    addresses = amqp_addresses(amqp_url)
    start = next(_starts) % len(addresses)
    failure: BaseException | None = None
    for step in range(len(addresses)):
        index = (start + step) % len(addresses)
        if not robust:
            plain = aio_pika.Connection(make_url(addresses[index]))
            _coalesce_writes(plain, [plain.url], write_hold_seconds)
            try:
                await plain.connect(timeout=timeout)
            except (*CONNECTION_EXCEPTIONS, TimeoutError) as error:
                failure = error
                continue
            return plain
        connection = MultiAddressConnection([make_url(a) for a in addresses], index,
                                            write_hold_seconds=write_hold_seconds,
                                            reconnect_interval=RECONNECT_SECONDS)
        try:
            await connection.connect(timeout=timeout)
        except (*CONNECTION_EXCEPTIONS, TimeoutError) as error:
            failure = error
            with contextlib.suppress(Exception):
                await connection.close()
            continue
        return connection
    assert failure is not None
    raise failure

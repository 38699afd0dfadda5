"""Wake-ups for loops that drain a table: PostgreSQL ``LISTEN`` on a channel (the outbox relay's, the
webhook dispatcher's).

Every statement that writes outbox rows also runs ``pg_notify(OUTBOX_CHANNEL, '')`` (see
:data:`alexandrite.kit.db.OUTBOX_INSERT_SQL` and the one-statement writes); PostgreSQL delivers the
notification when that transaction commits, and only to listeners of the same database. A relay
listening on the channel publishes right after the commit instead of polling every few milliseconds.

Notifications are a hint, never the guarantee: they are not delivered to a connection that was not
listening at the time (a failover, a restart, a network cut), so the relay still polls, slowly, and
publishes once after every (re)connection. A listening connection that dies is noticed (asyncpg's
termination callback, or :meth:`alive` on the next round) and opened again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import structlog

from alexandrite.kit.db import plain_dsn

log = structlog.get_logger(__name__)



class ChannelWakeups:
    """A dedicated connection listening on ``channel``; sets :attr:`event` on every notice."""

    def __init__(self, url: str, *, channel: str, socket_dir: str | None = None,
                 timeout: float = 10.0) -> None:
        self.url = url
        self.socket_dir = socket_dir
        self.channel = channel
        self.timeout = timeout
        self.event = asyncio.Event()
        self._connection: asyncpg.Connection | None = None

    def _notified(self, *_: Any) -> None:
        self.event.set()

    def _terminated(self, *_: Any) -> None:
        # The connection is gone: wake the relay, whose next round reconnects and publishes.
        self.event.set()

    def alive(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def ensure(self) -> bool:
        """Listening (reconnecting when the connection died); False when the database cannot be reached."""
        if self.alive():
            return True
        await self.close()
        try:
            connection = await asyncpg.connect(
                plain_dsn(self.url), timeout=self.timeout, command_timeout=self.timeout,
                server_settings={"application_name": f"alexandrite-listen-{self.channel}"[:63]},
                **({"host": self.socket_dir} if self.socket_dir else {}))
        except Exception as error:  # database away: the poll covers it, the next round tries again
            log.debug("listen_unavailable", channel=self.channel, error=repr(error)[:200])
            return False
        try:
            connection.add_termination_listener(self._terminated)
            await connection.add_listener(self.channel, self._notified)
        except Exception as error:
            log.debug("listen_failed", channel=self.channel, error=repr(error)[:200])
            with contextlib.suppress(Exception):
                connection.terminate()
            return False
        self._connection = connection
        self.event.set()  # notices may have been missed while not listening: look once now
        return True

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(Exception):
            if connection.is_closed():
                return
            await asyncio.wait_for(connection.close(), timeout=2)
        if not connection.is_closed():
            connection.terminate()

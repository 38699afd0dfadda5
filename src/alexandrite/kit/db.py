"""Engines, sessions and the unit of work: the only place that commits."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import structlog
from sqlalchemy import Select, event, exc, func, insert, select
from sqlalchemy.ext import asyncio as sa_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.util import await_only

from alexandrite.contracts.events import EVENTS_EXCHANGE, Envelope
from alexandrite.kit.messaging.tables import OUTBOX, OUTBOX_CHANNEL
from alexandrite.kit.tracing import trace_headers

log = structlog.get_logger(__name__)


PING_AFTER_IDLE_SECONDS = 1.0


def server_settings(idle_in_transaction_seconds: float | None = None) -> dict[str, str]:
    """Session settings of every connection: the application name and, for the services, how long the
    server lets a transaction sit idle. A transaction whose task stalled or lost its connection object
    would otherwise keep its row and advisory locks until the process dies, and every later event of
    those orders would wait on them; PostgreSQL ends such a session and the waiting work goes on."""
    values = {"application_name": "alexandrite"}
    if idle_in_transaction_seconds:
        values["idle_in_transaction_session_timeout"] = str(int(idle_in_transaction_seconds * 1000))
    return values


def make_engine(url: str, *, pool_size: int = 10, idle_in_transaction_seconds: float | None = None) -> AsyncEngine:
    # Looked up at call time, so tracing's instrumented create_async_engine is used when tracing is on.
    engine = sa_asyncio.create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        connect_args={"server_settings": server_settings(idle_in_transaction_seconds), "command_timeout": 30},
    )
    _ping_idle_connections(engine)
    _refuse_untracked_transactions(engine)
    return engine


class UntrackedTransaction(exc.DisconnectionError):
    """The driver connection is inside a transaction that SQLAlchemy does not track (see below)."""


def untracked_transaction(dbapi_connection: Any) -> str | None:
    """Why this pooled connection must not be used again, or None.

    A task cancelled while its ``BEGIN`` was on the wire (a consumer's channel closing, a request
    cancelled) leaves asyncpg with the transaction registered as its top one (and the server inside it
    once the BEGIN arrives) while SQLAlchemy's adapter, which tracks a transaction only once BEGIN
    returned, knows of none: its rollback on return to the pool does nothing. The next user's BEGIN then
    becomes a SAVEPOINT inside that transaction, its commit a RELEASE: nothing it "commits" is ever
    committed, and the locks it took are held until the connection dies."""
    driver = getattr(dbapi_connection, "_connection", None)
    if not isinstance(driver, asyncpg.Connection) or driver.is_closed():
        return None
    tracked = getattr(dbapi_connection, "_transaction", None)
    top = getattr(driver, "_top_xact", None)
    if tracked is None and (top is not None or driver.is_in_transaction()):
        return "inside a transaction the pool does not know of"
    if tracked is not None and top is not tracked:
        return "its transaction is nested in another one"
    return None


def _refuse_untracked_transactions(engine: AsyncEngine) -> None:
    """Such a connection is closed instead of reused (PostgreSQL rolls its transaction back and frees its
    locks); the pool opens a new one. Checked when it returns to the pool and again when it is taken."""
    pool = engine.sync_engine.pool

    def refuse(dbapi_connection: Any, on: str) -> None:
        reason = untracked_transaction(dbapi_connection)
        if reason is not None:
            log.warning("db_connection_discarded", reason=reason, on=on)
            raise UntrackedTransaction(reason)

    event.listen(pool, "reset", lambda dbapi_connection, *_: refuse(dbapi_connection, "return"))
    event.listen(pool, "checkout", lambda dbapi_connection, *_: refuse(dbapi_connection, "checkout"))


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Pre-ping, but only connections idle for a while: a busy pool skips the extra round trip
    on every checkout. A connection found dead is replaced before use; a disconnect seen during
    use invalidates the whole pool (SQLAlchemy's default)."""
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    @event.listens_for(pool, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        driver = getattr(dbapi_connection, "_connection", None)
        try:
            if isinstance(driver, asyncpg.Connection):  # one round trip: the adapter's ping is BEGIN, ;, ROLLBACK
                await_only(driver.fetchrow(";"))
            else:
                dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.DisconnectionError("connection failed the idle ping") from error


def plain_dsn(url: str) -> str:
    """``postgresql+asyncpg://...`` (SQLAlchemy's form) as a DSN asyncpg itself takes."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Returned to the pool without asyncpg's reset query (``SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL``, one round trip per checkout): the raw pool's users set no session state, take
    no advisory locks and listen to nothing. An open transaction is still rolled back by asyncpg."""


async def _json_codecs(connection: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await connection.set_type_codec(name, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")


StatusListener = Callable[[str | None, str], Awaitable[None] | None]


@dataclass(frozen=True)
class OrderChange:
    """One committed change of an order, as :attr:`Database.order_listeners` hear of it: a status change
    (``previous`` None for a new order) or a notice about the order (``kind`` other than "status")."""

    order_id: uuid.UUID
    status: str
    previous: str | None = None
    seq: int | None = None
    kind: str = "status"


OrderListener = Callable[[OrderChange], Awaitable[None] | None]


class Database:
    """A service's primary engine and, when configured, a read replica for lag-tolerant reads.

    Writes (:class:`UnitOfWork`) always use :attr:`sessions` (the primary); lag-tolerant reads use
    :attr:`read_sessions` (outside a transaction), which is the primary too when no replica is configured.
    ``status_listeners`` are called after the commit of every order status change made through
    this database (previous status or None for a new order, new status), e.g. to drop cached pages.
    """

    def __init__(self, url: str, *, pool_size: int = 10, replica_url: str | None = None,
                 socket_dir: str | None = None, idle_in_transaction_seconds: float | None = None) -> None:
        self.url = url
        self.pool_size = pool_size
        self.socket_dir = socket_dir
        self.idle_in_transaction_seconds = idle_in_transaction_seconds
        self._raw: asyncpg.Pool | None = None
        self.engine = make_engine(url, pool_size=pool_size, idle_in_transaction_seconds=idle_in_transaction_seconds)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.replica_engine = make_engine(replica_url, pool_size=pool_size) if replica_url else None
        # Lag-tolerant reads run outside a transaction (no BEGIN/ROLLBACK round trips); each
        # statement sees what was committed when it started.
        read_engine = (self.replica_engine or self.engine).execution_options(isolation_level="AUTOCOMMIT")
        self.read_sessions = async_sessionmaker(read_engine, expire_on_commit=False)
        self.status_listeners: list[StatusListener] = []
        # Called after the commit with the order's id too (kit/live announces changes to watchers).
        self.order_listeners: list[OrderListener] = []

    async def raw(self) -> asyncpg.Pool:
        """A plain asyncpg pool on the primary, for hot paths that are one statement (see
        :class:`StatementUnitOfWork`); made on first use, closed by :meth:`dispose`. JSON and JSONB
        columns come back as Python values. With ``socket_dir`` it connects by the Unix socket there."""
        if self._raw is None:
            pool = await asyncpg.create_pool(
                plain_dsn(self.url), min_size=1, max_size=self.pool_size, init=_json_codecs, reset=_keep_session,
                command_timeout=30, server_settings=server_settings(self.idle_in_transaction_seconds),
                **({"host": self.socket_dir} if self.socket_dir else {}))
            if self._raw is None:
                self._raw = pool
            else:  # made concurrently by another first request: keep one
                await pool.close()
        return self._raw

    async def dispose(self) -> None:
        if self._raw is not None:
            pool, self._raw = self._raw, None
            await pool.close()
        await self.engine.dispose()
        if self.replica_engine is not None:
            await self.replica_engine.dispose()


@dataclass
class OutgoingMessage:
    exchange: str
    routing_key: str
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    message_id: uuid.UUID = field(default_factory=uuid.uuid4)
    order_id: uuid.UUID | None = None


def outgoing_event(envelope: Envelope) -> OutgoingMessage:
    """The outbox message of an event, with the current trace context."""
    tracing = trace_headers()
    if tracing and envelope.traceparent is None:
        envelope = envelope.model_copy(update={"traceparent": tracing["traceparent"]})
    return OutgoingMessage(
        exchange=EVENTS_EXCHANGE,
        routing_key=envelope.type,
        body=envelope.model_dump_json().encode(),
        headers={
            "event_type": envelope.type,
            "order_id": str(envelope.order_id),
            "seq": envelope.seq,
            **({"traceparent": envelope.traceparent} if envelope.traceparent else {}),
            **tracing,
        },
        message_id=envelope.event_id,
        order_id=envelope.order_id,
    )


def traced(message: OutgoingMessage) -> OutgoingMessage:
    """A non-event message (a job) with the current trace context added to its headers."""
    tracing = trace_headers()
    if tracing:
        message.headers = {**message.headers, **tracing}
    return message


def outbox_insert(messages: list[OutgoingMessage]) -> Select[Any]:
    """ONE statement that writes ``messages`` to the outbox and notifies the relays (at commit)."""
    written = insert(OUTBOX).values([
        {"message_id": m.message_id, "exchange": m.exchange, "routing_key": m.routing_key, "body": m.body,
         "headers": m.headers, "order_id": m.order_id}
        for m in messages
    ]).returning(OUTBOX.c.id).cte("written")
    return select(func.pg_notify(OUTBOX_CHANNEL, "")).add_cte(written)


def outbox_rows_sql(first: int) -> str:
    """:func:`outbox_insert` as plain SQL: an INSERT of the messages whose :func:`outbox_args` are the
    parameters from ``$first`` on (one array per column), for any number of messages."""
    m, e, r, b, h, o = (f"${first + i}" for i in range(6))
    return f"""INSERT INTO outbox (message_id, exchange, routing_key, body, headers, order_id)
    SELECT m, e, r, b, h::jsonb, o
      FROM unnest({m}::uuid[], {e}::text[], {r}::text[], {b}::bytea[], {h}::text[], {o}::uuid[])
           AS t(m, e, r, b, h, o)"""


# For a unit's own connection (:meth:`UnitOfWork.driver`), built once instead of per commit.
OUTBOX_INSERT_SQL = f"""
WITH x AS (
    {outbox_rows_sql(1)}
)
SELECT pg_notify('{OUTBOX_CHANNEL}', '')
"""


def outbox_args(messages: list[OutgoingMessage]) -> tuple[list[Any], ...]:
    """The parameters of :data:`OUTBOX_INSERT_SQL` for ``messages`` (headers as JSON text)."""
    return ([m.message_id for m in messages], [m.exchange for m in messages], [m.routing_key for m in messages],
            [m.body for m in messages], [_dumps(m.headers) for m in messages],
            [m.order_id for m in messages])


class UnitOfWork:
    """One transaction; events and jobs queued here reach the outbox in the same commit.

    ``async with UnitOfWork(db) as uow: ...; await uow.commit()`` — leaving the block
    without commit rolls back. Callbacks registered with :meth:`after_commit` run only
    once the commit succeeded (cache invalidation, metrics), never before.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.session: AsyncSession
        self._messages: list[OutgoingMessage] = []
        self._after_commit: list[Callable[[], Awaitable[None] | None]] = []
        self.committed = False
        # What code above the kit keeps for the length of this unit (e.g. the order row a consumer has
        # locked and read, for the write that follows); dropped with the unit.
        self.context: dict[str, Any] = {}
        self._driver: asyncpg.Connection | None = None

    async def __aenter__(self) -> "UnitOfWork":
        self.session = self.db.sessions()
        return self

    async def driver(self) -> asyncpg.Connection:
        """The asyncpg connection under :attr:`session`, inside the unit's transaction (begun here if no
        statement has begun it yet): for hot statements as plain SQL, without SQLAlchemy's per-statement
        work. JSON and JSONB parameters are passed as JSON text on it (SQLAlchemy's codecs); errors are
        asyncpg's own. Whatever runs on it commits or rolls back with the unit."""
        if self._driver is None:
            fairy = await (await self.session.connection()).get_raw_connection()
            adapted = fairy.dbapi_connection
            start = getattr(adapted, "_start_transaction", None)
            if start is None:  # not SQLAlchemy's asyncpg adapter as known: let SQLAlchemy begin (a round trip)
                await self.session.execute(select(1))
            elif getattr(adapted, "_transaction", None) is None:
                await start()  # what the adapter itself does before its first statement (BEGIN)
            self._driver = fairy.driver_connection
        return self._driver

    async def __aexit__(self, *exc: object) -> None:
        try:
            if not self.committed:
                await self.session.rollback()
        finally:
            await self.session.close()

    def emit(self, envelope: Envelope) -> None:
        """Queue an event; the current trace context goes with it (stored in the outbox row)."""
        self._messages.append(outgoing_event(envelope))

    def send(self, message: OutgoingMessage) -> None:
        """Queue a non-event message (a job) for the outbox, with the current trace context."""
        self._messages.append(traced(message))

    def after_commit(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        self._after_commit.append(callback)

    def take_messages(self) -> list[OutgoingMessage]:
        """The messages queued so far, for a statement of this unit that writes them to the outbox itself
        (:func:`outbox_rows_sql`): the commit no longer writes them."""
        messages, self._messages = self._messages, []
        return messages

    async def commit(self) -> None:
        if self._messages:  # on the unit's connection, inside its transaction
            await (await self.driver()).execute(OUTBOX_INSERT_SQL, *outbox_args(self._messages))
        await self.session.commit()
        self.committed = True
        self._driver = None
        self._messages.clear()
        callbacks, self._after_commit = self._after_commit, []
        await run_after_commit(callbacks)

    async def rollback(self) -> None:
        self._messages.clear()
        self._after_commit.clear()
        self.context.clear()
        self._driver = None
        await self.session.rollback()


def notify_after_commit(uow: Any, previous: str | None, status: str, order_id: uuid.UUID | None,
                        seq: int | None) -> None:
    """Registers the database's status listeners (and, given the order, its order listeners) on ``uow``:
    they hear of the change once the unit committed, never before."""
    db = uow.db
    for listener in getattr(db, "status_listeners", ()):
        uow.after_commit(functools.partial(listener, previous, status))
    if order_id is not None:
        notify_order(uow, OrderChange(order_id=order_id, status=status, previous=previous, seq=seq))


def notify_order(uow: Any, change: OrderChange) -> None:
    """The database's order listeners hear of ``change`` once ``uow`` committed."""
    for listener in getattr(uow.db, "order_listeners", ()):
        uow.after_commit(functools.partial(listener, change))


async def run_after_commit(callbacks: list[Callable[[], Awaitable[None] | None]]) -> None:
    """Runs a committed unit's side effects; one failing is logged and never undoes the commit.

    Each is called in order; those that wait on I/O (the Redis listeners) then wait together, so a unit's
    round trips overlap (and coalesce: kit/coalesce.py) instead of following one another."""
    pending: list[Awaitable[None]] = []
    for callback in callbacks:
        try:
            result = callback()
        except Exception:
            log.exception("after_commit_callback_failed")
            continue
        if result is not None:
            pending.append(result)
    if not pending:
        return
    for outcome in await asyncio.gather(*pending, return_exceptions=True):
        if isinstance(outcome, Exception):
            log.error("after_commit_callback_failed", exc_info=outcome)
        elif isinstance(outcome, BaseException):  # cancelled: the caller is being cancelled too
            raise outcome


class StatementUnitOfWork:
    """A unit of work that is ONE statement on the raw pool (:meth:`Database.raw`).

    For hot paths whose whole change fits one data-modifying statement (a CTE writing the row, its
    history, its outbox message ...): PostgreSQL runs a lone statement as its own transaction, so the
    statement is the commit: all of it or nothing. Events are queued with :meth:`emit` and written by
    the statement itself (its SQL inserts the queued :attr:`messages` into the outbox), so the outbox rule holds.
    :meth:`commit` runs the statement; callbacks registered with :meth:`after_commit` run only after it
    succeeded. Reads that decide what to write go before it with :meth:`fetchrow` (no transaction is
    held open between them: the statement must re-check what it relies on, e.g. ``WHERE seq = $n``).
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.messages: list[OutgoingMessage] = []
        self._after_commit: list[Callable[[], Awaitable[None] | None]] = []
        self.committed = False

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await (await self.db.raw()).fetchrow(sql, *args)

    def emit(self, envelope: Envelope) -> OutgoingMessage:
        message = outgoing_event(envelope)
        self.messages.append(message)
        return message

    def after_commit(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        self._after_commit.append(callback)

    def notify_status(self, previous: str | None, status: str, order_id: uuid.UUID | None = None,
                      seq: int | None = None) -> None:
        """The database's status listeners hear of the change once it is committed."""
        notify_after_commit(self, previous, status, order_id, seq)

    async def commit(self, sql: str, *args: Any, applied: Callable[[Any], bool] | None = None) -> Any:
        """Run the unit's one statement (its commit); returns its first row, or None.

        A statement written so that it returns no row when it found nothing to change (``... SELECT id
        FROM updated``) changed nothing: then the after-commit callbacks are dropped, not run. A statement
        that always answers (to say why it changed nothing) gives ``applied``, which tells from its row
        whether the change was made: the callbacks run only then."""
        row = await (await self.db.raw()).fetchrow(sql, *args)
        self.committed = True
        self.messages.clear()
        callbacks, self._after_commit = self._after_commit, []
        if row is None or (applied is not None and not applied(row)):
            return row
        await run_after_commit(callbacks)
        return row

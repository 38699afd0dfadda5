"""A counting proxy for the PostgreSQL wire protocol: statements and round trips of one process, exactly.

Point a process's ``ALEX_PG_DSN`` at :class:`CountingProxy` and every frontend message it sends passes
through a parser that counts, without changing a byte:
- round trips: Sync (end of an extended-protocol exchange) and Query (simple protocol) messages —
  each waits for the server's ReadyForQuery;
- statements executed: Execute and Query messages, each named by its SQL (a Bind's prepared
  statement is resolved to the text of its Parse on that connection);
- Parse messages: statements prepared (a steady state parses nothing: SQLAlchemy's asyncpg dialect
  caches prepared statements per connection).
Works with any client library; no PostgreSQL extension or setting needed (``pg_stat_statements`` is
not preloaded on the shared server).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
from collections import Counter
from dataclasses import dataclass, field

SSL_REQUEST, GSS_REQUEST, CANCEL_REQUEST, PROTOCOL_3 = 80877103, 80877104, 80877102, 196608


@dataclass
class Counts:
    round_trips: int = 0
    executes: int = 0
    parses: int = 0
    statements: Counter[str] = field(default_factory=Counter)
    # finished units of work by their statement names in order: BEGIN ... COMMIT/ROLLBACK, or one
    # statement outside a transaction (autocommit)
    units: Counter[tuple[str, ...]] = field(default_factory=Counter)

    def copy(self) -> Counts:
        return Counts(self.round_trips, self.executes, self.parses, Counter(self.statements), Counter(self.units))

    def __sub__(self, other: Counts) -> Counts:
        statements = Counter(self.statements)
        statements.subtract(other.statements)
        units = Counter(self.units)
        units.subtract(other.units)
        return Counts(self.round_trips - other.round_trips, self.executes - other.executes,
                      self.parses - other.parses, +statements, +units)

    def add(self, other: Counts) -> None:
        self.round_trips += other.round_trips
        self.executes += other.executes
        self.parses += other.parses
        self.statements.update(other.statements)
        self.units.update(other.units)

    def without_units(self, known: set[tuple[str, ...]]) -> Counts:
        """Only the units of work whose shape is not in ``known`` (e.g. seen while idle: empty polls);
        round trips are then statements + parses."""
        units = Counter({u: n for u, n in self.units.items() if u not in known})
        statements: Counter[str] = Counter()
        for unit, n in units.items():
            for name in unit:
                statements[name] += n
        executes = sum(statements.values())
        return Counts(executes + self.parses, executes, self.parses, statements, units)

    @property
    def transactions(self) -> int:
        return self.statements.get("BEGIN", 0)


def statement_name(sql: str) -> str:
    """A short, stable name: verb, table, the first condition, and the flags that matter."""
    text = re.sub(r"\(\$\d+(?:::\w+)?(?:, \$\d+(?:::\w+)?)*\)", "(...)", " ".join(sql.split()))
    upper = text.upper()
    for word in ("BEGIN", "COMMIT", "ROLLBACK", "RELEASE SAVEPOINT", "SAVEPOINT", "ROLLBACK TO SAVEPOINT"):
        if upper.startswith(word):
            return word
    if upper in (";", ""):
        return "ping (;)"
    if "PG_ADVISORY_XACT_LOCK" in upper:
        return "SELECT pg_advisory_xact_lock"
    flags = []
    if "FOR UPDATE" in upper:
        flags.append("FOR UPDATE" + (" SKIP LOCKED" if "SKIP LOCKED" in upper else ""))
    if "ON CONFLICT" in upper:
        flags.append("ON CONFLICT")
    if " RETURNING " in upper:
        flags.append("RETURNING")
    if "COUNT(" in upper:
        flags.append("count")
    match = re.match(r"(?i)(INSERT INTO|UPDATE|DELETE FROM)\s+(\S+)", text)
    if match:
        verb = match.group(1).split()[0].upper()
        name = f"{verb} {match.group(2)}"
        if verb == "INSERT" and re.search(r"(?i)\)\s*SELECT\s", text):
            name += " ... SELECT"
    else:
        tables = re.findall(r"(?i)\bFROM\s+([a-z_][\w.]*)\b(?!\s*\()", text)
        name = f"SELECT {tables[0]}" if tables else text[:40]
        joins = re.findall(r"(?i)\bJOIN\s+([a-z_][\w.]*)", text)
        if joins:
            name += " JOIN " + ",".join(joins)
    where = re.search(r"(?i)\bWHERE\s+(.{0,60}?)(?:\s+(?:AND|ORDER|LIMIT|FOR|RETURNING|GROUP)\b|$)", text)
    if where:
        name += f" WHERE {where.group(1).strip()}"
    return name + (f" [{', '.join(flags)}]" if flags else "")


class _Connection:
    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.buffer = bytearray()
        self.typed = False
        self.prepared: dict[str, str] = {}
        self.portal_sql: str | None = None
        self.unit: list[str] | None = None

    def _executed(self, name: str) -> None:
        self.counts.statements[name] += 1
        if name == "BEGIN":
            self.unit = [name]
        elif self.unit is None:
            self.counts.units[(name,)] += 1
        else:
            self.unit.append(name)
            if name in ("COMMIT", "ROLLBACK"):
                self.counts.units[tuple(self.unit)] += 1
                self.unit = None

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if not self.typed:
                if len(self.buffer) < 8:
                    return
                length, code = struct.unpack("!ii", self.buffer[:8])
                if len(self.buffer) < length:
                    return
                del self.buffer[:length]
                if code == PROTOCOL_3:
                    self.typed = True
                continue
            if len(self.buffer) < 5:
                return
            kind = chr(self.buffer[0])
            length = struct.unpack("!i", self.buffer[1:5])[0]
            if len(self.buffer) < 1 + length:
                return
            payload = bytes(self.buffer[5:1 + length])
            del self.buffer[:1 + length]
            self._message(kind, payload)

    def _message(self, kind: str, payload: bytes) -> None:
        counts = self.counts
        if kind == "Q":
            sql = payload.split(b"\0", 1)[0].decode(errors="replace")
            counts.round_trips += 1
            counts.executes += 1
            self._executed(statement_name(sql))
        elif kind == "P":
            name, rest = payload.split(b"\0", 1)
            sql = rest.split(b"\0", 1)[0].decode(errors="replace")
            self.prepared[name.decode()] = sql
            counts.parses += 1
        elif kind == "B":
            _portal, rest = payload.split(b"\0", 1)
            statement = rest.split(b"\0", 1)[0].decode()
            self.portal_sql = self.prepared.get(statement)
        elif kind == "E":
            counts.executes += 1
            self._executed(statement_name(self.portal_sql or "?"))
        elif kind == "S":
            counts.round_trips += 1


class CountingProxy:
    """Listens on 127.0.0.1:<port> and forwards to the real server, counting what clients send."""

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.upstream = upstream
        self.counts = Counts()
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> CountingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def snapshot(self) -> Counts:
        return self.counts.copy()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        parser = _Connection(self.counts)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            try:
                while data := await src.read(65536):
                    if count:
                        parser.feed(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


class ProxyThread:
    """Counting proxies served by an event loop of their own in a daemon thread, so the caller may
    block, call ``asyncio.run`` and start processes freely."""

    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="pgwire-proxies", daemon=True)
        self.thread.start()
        self.proxies: list[CountingProxy] = []

    def _call(self, coroutine: object) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)  # type: ignore[arg-type]

    def new(self, upstream: tuple[str, int] = ("127.0.0.1", 5432)) -> CountingProxy:
        proxy = self._call(CountingProxy(upstream).start())
        assert isinstance(proxy, CountingProxy)
        self.proxies.append(proxy)
        return proxy

    def snapshot(self, proxy: CountingProxy) -> Counts:
        async def _copy() -> Counts:
            return proxy.snapshot()

        counts = self._call(_copy())
        assert isinstance(counts, Counts)
        return counts

    def close(self) -> None:
        for proxy in self.proxies:
            with contextlib.suppress(Exception):
                self._call(proxy.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)

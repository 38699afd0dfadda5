"""Bulk order history for the three services: ``alexandrite seed --orders N`` (PostgreSQL COPY).

Orders are spread over ``years`` (default two) up to now, oldest first. Most are old and
CLOSED (some CANCELLED or failed pricing); orders of the last weeks are spread along the
pipeline, and ``in_work`` of them (default: up to 5,000) are in the MES's in-work statuses.
Each service's database gets the same orders (shop orders, CRM projection, MES production
orders with their month partitions), and every order in work also gets its status history.

Columns are generated with NumPy per chunk (ids are time-ordered UUIDv7, so primary keys
grow at their right edge), sent with ``COPY ... FROM STDIN``, one process per service; the
secondary indexes are dropped first and built after the load.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np

from alexandrite.contracts.alloys import ALLOY_NAMES
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.migrations import plain_dsn
from alexandrite.kit.settings import Service, Settings

S = OrderStatus
STATUSES = [s.value for s in S]
_CODE = {s: i for i, s in enumerate(STATUSES)}
IN_WORK = [S.MANUFACTURING_APPROVED, S.MANUFACTURING_STARTED, S.MANUFACTURING_COMPLETED, S.PACKAGING]
PATH = [S.INITIATED, S.FILE_UPLOADED, S.SUBMITTED, S.PRICE_CALCULATING, S.PRICE_CALCULATED,
        S.MANUFACTURING_APPROVED, S.MANUFACTURING_STARTED, S.MANUFACTURING_COMPLETED, S.PACKAGING, S.SHIPPED,
        S.CLOSED]
SEQ = {s.value: i + 1 for i, s in enumerate(PATH)} | {S.CANCELLED.value: 4, S.PRICE_CALCULATION_FAILED.value: 5}
ALLOYS = np.array([name.encode() for name in ALLOY_NAMES])
FIRST = ["Ada", "Boris", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Irina", "Jonas", "Katya", "Luca",
         "Mila", "Nikolai", "Olga", "Pavel", "Quinn", "Rosa", "Sergei", "Tanya"]
LAST = ["Abramova", "Bauer", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen", "Ivanova", "Jansen",
        "Kowalski", "Lindqvist", "Moreau", "Novak", "Orlova", "Petrov", "Rossi", "Smirnova", "Tanaka", "Weber"]
OLD = ([S.CLOSED, S.CANCELLED, S.PRICE_CALCULATION_FAILED], [0.92, 0.06, 0.02])
RECENT = ([S.CLOSED, S.SHIPPED, S.PRICE_CALCULATED, S.PRICE_CALCULATING, S.SUBMITTED, S.FILE_UPLOADED,
           S.INITIATED, S.CANCELLED], [0.50, 0.20, 0.10, 0.03, 0.02, 0.05, 0.05, 0.05])
RECENT_DAYS = 60
OPERATOR = b"operator:demo-operator"
NULL = b"\\N"
CHUNK = 200_000
_HEX = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), dtype=np.uint8).reshape(256, 2)
_EPOCH = np.datetime64("1970-01-01T00:00:00", "us")


@dataclass(frozen=True)
class Plan:
    orders: int
    in_work: int
    start_us: int  # created_at of the oldest order, µs since the epoch
    end_us: int
    customers: int
    seed: int

    @classmethod
    def make(cls, orders: int, *, in_work: int | None = None, years: float = 2.0, seed: int = 7,
             now: datetime | None = None) -> Plan:
        end = now or datetime.now(UTC)
        start = end - timedelta(days=365 * years)
        default_in_work = min(5_000, max(1, orders // 100))
        return cls(orders=orders, in_work=min(orders, default_in_work if in_work is None else in_work),
                   start_us=int(start.timestamp() * 1e6), end_us=int(end.timestamp() * 1e6),
                   customers=max(1, min(100_000, orders // 50)), seed=seed)

    def chunks(self) -> Iterator[tuple[int, int]]:
        for first in range(0, self.orders, CHUNK):
            yield first, min(first + CHUNK, self.orders)

    def created_us(self, first: int, stop: int) -> np.ndarray:
        """Evenly spread, oldest first, with a little jitter that keeps the order."""
        span = (self.end_us - self.start_us) / max(self.orders, 1)
        index = np.arange(first, stop, dtype=np.float64)
        jitter = np.random.default_rng((self.seed, first)).random(stop - first) * span * 0.9
        return (self.start_us + index * span + jitter).astype(np.int64)


@dataclass
class Chunk:
    """One chunk of orders, as COPY text fields (bytes per row) and a few raw columns."""
    ids: list[bytes]
    created: list[bytes]
    since: list[bytes]
    status: np.ndarray  # status codes (index into STATUSES)
    alloy: list[bytes]
    owner_id: list[bytes]
    owner_name: list[bytes]
    total: list[bytes]
    tracking: list[bytes]
    created_us: np.ndarray
    since_us: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def _hex(raw: np.ndarray) -> np.ndarray:
    """(n, k) uint8 → n byte strings of 2k hex digits."""
    return np.ascontiguousarray(_HEX[raw].reshape(len(raw), -1)).view(f"S{raw.shape[1] * 2}").ravel()


def _timestamps(us: np.ndarray) -> list[bytes]:
    return np.datetime_as_string(_EPOCH + us.astype("timedelta64[us]"), unit="us").astype("S").tolist()


def _uuid7(created_us: np.ndarray, rng: np.random.Generator) -> list[bytes]:
    raw = rng.integers(0, 256, size=(len(created_us), 16), dtype=np.uint8)
    ms = (created_us // 1000).astype(np.uint64)
    for i in range(6):
        raw[:, i] = ((ms >> np.uint64(8 * (5 - i))) & np.uint64(0xFF)).astype(np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x70
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    return _hex(raw).tolist()


def _customer_ids(index: np.ndarray) -> np.ndarray:
    raw = np.zeros((len(index), 16), dtype=np.uint8)
    raw[:, :4] = (0x5E, 0xED, 0x00, 0x00)
    raw[:, 6], raw[:, 8] = 0x40, 0x80
    value = index.astype(np.uint64)
    for i in range(6):
        raw[:, 10 + i] = ((value >> np.uint64(8 * (5 - i))) & np.uint64(0xFF)).astype(np.uint8)
    return _hex(raw)


def _choose(rng: np.random.Generator, options: tuple[list[OrderStatus], list[float]], n: int) -> np.ndarray:
    codes = np.array([_CODE[s.value] for s in options[0]])
    return codes[rng.choice(len(codes), size=n, p=options[1])]


def build_chunk(plan: Plan, first: int, stop: int) -> Chunk:
    rng = np.random.default_rng((plan.seed, first, 1))
    n = stop - first
    created_us = plan.created_us(first, stop)
    recent_from = plan.end_us - RECENT_DAYS * 86_400_000_000
    recent = created_us >= recent_from
    status = np.where(recent, _choose(rng, RECENT, n), _choose(rng, OLD, n))
    # The in-work orders: an even share of the recent ones, newest statuses most likely still approved.
    recent_total = max(1, int(plan.orders * min(1.0, RECENT_DAYS / ((plan.end_us - plan.start_us) / 86_400e6))))
    in_work = recent & (rng.random(n) < plan.in_work / recent_total)
    status[in_work] = np.array([_CODE[s.value] for s in IN_WORK])[rng.choice(4, size=int(in_work.sum()),
                                                                             p=[0.55, 0.25, 0.12, 0.08])]
    age_us = plan.end_us - created_us
    since_us = created_us + (rng.random(n) * np.minimum(age_us, 21 * 86_400_000_000)).astype(np.int64)
    customer = rng.integers(0, plan.customers, size=n)
    names = np.array([f"{f} {ln}".encode() for ln in LAST for f in FIRST])
    cents = rng.integers(15_000, 900_000, size=n)
    total = np.char.add(np.char.add((cents // 100).astype("S"), b"."), np.char.zfill((cents % 100).astype("S"), 2))
    priced = ~np.isin(status, [_CODE[s] for s in ("INITIATED", "FILE_UPLOADED", "SUBMITTED", "PRICE_CALCULATING",
                                                   "PRICE_CALCULATION_FAILED")])
    shipped = np.isin(status, [_CODE["SHIPPED"], _CODE["CLOSED"]])
    tracking = np.char.add(b"TRK", np.char.zfill((np.arange(first, stop) + 1_000_000).astype("S"), 10))
    return Chunk(
        ids=_uuid7(created_us, rng), created=_timestamps(created_us), since=_timestamps(since_us), status=status,
        alloy=ALLOYS[rng.integers(0, len(ALLOYS), size=n)].tolist(), owner_id=_customer_ids(customer).tolist(),
        owner_name=names[customer % len(names)].tolist(),
        total=np.where(priced, total, NULL).tolist(), tracking=np.where(shipped, tracking, NULL).tolist(),
        created_us=created_us, since_us=since_us,
    )


# --- rows per service ---------------------------------------------------------------------------

def _status_bytes(chunk: Chunk) -> list[bytes]:
    return [STATUSES[c].encode() for c in chunk.status.tolist()]


def _seq(chunk: Chunk) -> list[bytes]:
    table = [str(SEQ[s]).encode() for s in STATUSES]
    return [table[c] for c in chunk.status.tolist()]


def _quote(total: bytes) -> bytes:
    return NULL if total == NULL else b'{"total": ' + total + b', "currency": "EUR"}'


def _lines(columns: list[list[bytes]]) -> bytes:
    out = io.BytesIO()
    for row in zip(*columns, strict=True):
        out.write(b"\t".join(row))
        out.write(b"\n")
    return out.getvalue()


MES_COLUMNS = ["id", "alloy", "status", "seq", "owner_kind", "owner_name", "quote", "operator", "tracking_number",
               "carrier", "created_at", "updated_at", "status_since", "approved_at"]
CRM_COLUMNS = ["id", "status", "seq", "alloy", "owner_kind", "owner_id", "owner_name", "quote", "total", "currency",
               "tracking_number", "carrier", "created_at", "updated_at", "status_since"]
SHOP_COLUMNS = ["id", "owner_kind", "owner_id", "owner_name", "alloy", "status", "seq", "quote", "tracking_number",
                "carrier", "created_at", "updated_at", "status_since"]


def mes_rows(chunk: Chunk) -> bytes:
    n = len(chunk)
    approved_codes = [_CODE[s.value] for s in PATH[5:]]
    approved = np.isin(chunk.status, approved_codes)
    taken = np.isin(chunk.status, approved_codes[1:])
    quotes = [_quote(t) for t in chunk.total]
    carrier = [b"DHL" if t != NULL else NULL for t in chunk.tracking]
    return _lines([
        chunk.ids, chunk.alloy, _status_bytes(chunk), _seq(chunk), [b"customer"] * n, chunk.owner_name, quotes,
        np.where(taken, OPERATOR, NULL).tolist(), chunk.tracking, carrier, chunk.created, chunk.since, chunk.since,
        np.where(approved, np.array(chunk.since, dtype="S32"), NULL).tolist(),
    ])


def crm_rows(chunk: Chunk) -> bytes:
    n = len(chunk)
    quotes = [_quote(t) for t in chunk.total]
    currency = [b"EUR" if t != NULL else NULL for t in chunk.total]
    carrier = [b"DHL" if t != NULL else NULL for t in chunk.tracking]
    return _lines([
        chunk.ids, _status_bytes(chunk), _seq(chunk), chunk.alloy, [b"customer"] * n, chunk.owner_id,
        chunk.owner_name, quotes, chunk.total, currency, chunk.tracking, carrier, chunk.created, chunk.since,
        chunk.since,
    ])


def shop_rows(chunk: Chunk) -> bytes:
    n = len(chunk)
    quotes = [_quote(t) for t in chunk.total]
    carrier = [b"DHL" if t != NULL else NULL for t in chunk.tracking]
    return _lines([
        chunk.ids, [b"customer"] * n, chunk.owner_id, chunk.owner_name, chunk.alloy, _status_bytes(chunk),
        _seq(chunk), quotes, chunk.tracking, carrier, chunk.created, chunk.since, chunk.since,
    ])


def history_rows(chunk: Chunk) -> bytes:
    """The status path of every order in work (seq 1..current), at evenly spaced times."""
    codes = {_CODE[s.value] for s in IN_WORK}
    out = io.BytesIO()
    for i, code in enumerate(chunk.status.tolist()):
        if code not in codes:
            continue
        steps = PATH[: SEQ[STATUSES[code]]]
        start, end = int(chunk.created_us[i]), int(chunk.since_us[i])
        for k, step in enumerate(steps):
            at = start + (end - start) * k // max(len(steps) - 1, 1)
            by = b"customer" if k < 3 else (b"mes" if k < 5 else (b"seller:demo-seller" if k == 5 else OPERATOR))
            out.write(b"\t".join([chunk.ids[i], str(k + 1).encode(), step.value.encode(),
                                  steps[k - 1].value.encode() if k else NULL, _timestamps(np.array([at]))[0], by]))
            out.write(b"\n")
    return out.getvalue()


@dataclass(frozen=True)
class Target:
    table: str
    columns: list[str]
    rows: Callable[[Chunk], bytes]


TARGETS: dict[str, Target] = {
    "mes": Target("production_orders", MES_COLUMNS, mes_rows),
    "crm": Target("orders", CRM_COLUMNS, crm_rows),
    "shop": Target("orders", SHOP_COLUMNS, shop_rows),
}
HISTORY_COLUMNS = ["order_id", "seq", "status", "previous_status", "at", "by"]


# --- loading ------------------------------------------------------------------------------------

async def _secondary_indexes(conn: asyncpg.Connection, table: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' AND i.tablename = $1 "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)", table)
    return [(r["indexname"], r["indexdef"].replace(" ON ONLY ", " ON ")) for r in rows]


async def load_service(settings: Settings, service: Service, plan: Plan) -> tuple[str, float, float]:
    """COPY the plan's orders into one service's database; returns (service, load s, index s)."""
    from alexandrite.mes import partitions

    target = TARGETS[service]
    conn = await asyncpg.connect(plain_dsn(settings.database_url(service)),
                                 server_settings={"timezone": "UTC", "maintenance_work_mem": "512MB"})
    try:
        if service == "mes":
            first_day = datetime.fromtimestamp(plan.start_us / 1e6, UTC).date()
            last_day = datetime.fromtimestamp(plan.end_us / 1e6, UTC).date()
            await _ensure_partitions(settings, first_day, partitions.add_months(partitions.month_start(last_day),
                                                                             settings.db.partition_months_ahead))
        indexes = await _secondary_indexes(conn, target.table)
        for name, _ in indexes:
            await conn.execute(f'DROP INDEX IF EXISTS "{name}"')
        began = time.perf_counter()
        for first, stop in plan.chunks():
            chunk = build_chunk(plan, first, stop)
            await conn.copy_to_table(target.table, source=io.BytesIO(target.rows(chunk)), columns=target.columns,
                                     format="text")
            history = history_rows(chunk)
            if history:
                await conn.copy_to_table("order_history", source=io.BytesIO(history), columns=HISTORY_COLUMNS,
                                         format="text")
        loaded = time.perf_counter() - began
        for _, definition in indexes:
            await conn.execute(definition)
        await conn.execute(f"VACUUM (ANALYZE) {target.table}" if service == "mes" else f"ANALYZE {target.table}")
        await conn.execute("ANALYZE order_history")
        return service, loaded, time.perf_counter() - began - loaded
    finally:
        await conn.close()


async def _ensure_partitions(settings: Settings, first: object, last: object) -> None:
    from alexandrite.kit.db import make_engine
    from alexandrite.mes import partitions

    engine = make_engine(settings.database_url("mes"), pool_size=1)
    try:
        async with engine.begin() as conn:
            await partitions.ensure_months(conn, first, last)  # type: ignore[arg-type]
    finally:
        await engine.dispose()


def _load_in_process(settings: Settings, service: Service, plan: Plan) -> tuple[str, float, float]:
    return asyncio.run(load_service(settings, service, plan))


def seed_orders(settings: Settings, plan: Plan, services: tuple[Service, ...] = ("shop", "crm", "mes"),
                report: Callable[[str], None] = print) -> float:
    """Load every service in its own process; returns the wall time in seconds."""
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=len(services)) as pool:
        futures = [pool.submit(_load_in_process, settings, service, plan) for service in services]
        for future in futures:
            service, loaded, indexed = future.result()
            report(f"{service}: {plan.orders:,} orders copied in {loaded:.1f} s, indexes and statistics "
                   f"{indexed:.1f} s")
    return time.perf_counter() - began

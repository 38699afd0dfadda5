"""MES dashboard latency over HTTP at 1M and 10M orders: naive vs partitioned + indexed vs cached.

Run: .venv/bin/python bench/bench_dashboard.py [--sizes 1000000,10000000] [--requests 2000] [--smoke]

Per size: a fresh MES database is migrated and filled by the seed generator (COPY; two years,
most orders closed, up to 5,000 in work); ``naive.production_orders`` gets the same rows in
one unpartitioned table with only its primary key, seen by a role whose search path puts it
first. Then one real uvicorn process at a time (``alexandrite serve mes``, one worker, no relay
or consumer) is measured with sequential keep-alive requests (``http.client``), first page and
a deep page (the 40th page of 50 in-work orders). The three servers run side by side and
are asked in alternating rounds, so the shared machine's noise hits every variant alike:

- naive:       the unpartitioned table, PK only, cache off
- partitioned: monthly partitions + the dashboard's indexes, cache off
- cached:      the same, with the Redis page cache on (deep pages: counts cached, rows read)

Pages: ``first`` (newest first), ``deep`` (its 40th page), ``late1st`` (most overdue first,
``sort=late``) and ``lateonly`` (only the late orders, ``late=true``, read each time). Every page
also carries the late counts per stage. The late marks are moved to the seeding's end, as the SLA
watchdog of a running service does every minute (the servers run without it). The plan of the
late-first statement is printed.

Everything the run creates (databases, role, Redis keys) is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from alexandrite.devtools.seed_orders import Plan, load_service  # noqa: E402
from alexandrite.kit.migrations import create_databases, drop_databases, plain_dsn, upgrade  # noqa: E402
from alexandrite.kit.redis_clients import redis_client  # noqa: E402
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings  # noqa: E402
from alexandrite.kit.tokens import issue_token  # noqa: E402
from alexandrite.mes import stage_counts  # noqa: E402
from alexandrite.mes.dashboard import IN_WORK_STATUSES  # noqa: E402
from alexandrite.mes.watchdog import slas_from  # noqa: E402

PATH = "/api/v1/production/orders"
DEEP_PAGE = 40
LIMIT = 50


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def prepare(settings: Settings, orders: int, role: str) -> dict[str, float]:
    """Migrate and fill the database; build the naive copy. Returns timings in seconds."""
    timings: dict[str, float] = {}
    await create_databases(settings, ("mes",))
    await asyncio.to_thread(upgrade, "mes", settings)
    began = time.perf_counter()
    await load_service(settings, "mes", Plan.make(orders))
    timings["seed"] = time.perf_counter() - began
    await mark_late(settings)
    conn = await asyncpg.connect(plain_dsn(settings.database_url("mes")))
    try:
        began = time.perf_counter()
        await conn.execute("CREATE SCHEMA naive")
        await conn.execute("CREATE TABLE naive.production_orders (LIKE public.production_orders INCLUDING DEFAULTS)")
        await conn.execute("INSERT INTO naive.production_orders SELECT * FROM public.production_orders")
        await conn.execute("ALTER TABLE naive.production_orders ADD PRIMARY KEY (id)")
        await conn.execute("VACUUM (ANALYZE) naive.production_orders")
        timings["naive copy"] = time.perf_counter() - began
        await conn.execute(f'CREATE ROLE "{role}" LOGIN')
        await conn.execute(f'GRANT USAGE ON SCHEMA naive TO "{role}"')
        await conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA naive, public TO "{role}"')
        await conn.execute(f'ALTER ROLE "{role}" SET search_path = naive, public')
    finally:
        await conn.close()
    return timings


async def mark_late(settings: Settings) -> None:
    """Move the late marks to now, as the SLA watchdog's scan does every minute in a running service (the
    servers here run without it): a reader then counts only the orders that turned late since."""
    engine = create_async_engine(settings.database_url("mes"))
    try:
        async with AsyncSession(engine) as session, session.begin():
            await stage_counts.advance(session, IN_WORK_STATUSES, slas_from(settings).per_status,
                                       datetime.now(UTC))
    finally:
        await engine.dispose()


async def cleanup(settings: Settings, role: str) -> None:
    await drop_databases(settings, ("mes",))
    conn = await asyncpg.connect(plain_dsn(settings.admin_database_url()))
    try:
        await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await conn.close()
    client = redis_client(settings, timeout=10)
    try:
        async for key in client.scan_iter(match=f"{settings.redis.prefix}:*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()


class Server:
    def __init__(self, settings: Settings, *, cached: bool, pg_dsn: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALEX_")}
        env.update({
            "ALEX_DB_PREFIX": settings.db.prefix, "ALEX_PG_DSN": pg_dsn, "ALEX_SECRET_KEY": settings.auth.secret_key,
            "ALEX_REDIS_PREFIX": settings.redis.prefix, "ALEX_CACHE_TTL_SECONDS": "30" if cached else "0",
            "ALEX_RUN_RELAY": "false", "ALEX_RUN_CONSUMER": "false", "ALEX_LOG_LEVEL": "WARNING",
            # Background loops would scan the same tables while we measure: off / rare.
            "ALEX_RUN_WATCHDOG": "false", "ALEX_STATUS_GAUGE_INTERVAL_SECONDS": "3600",
            # One client sends thousands of requests: throttling (a Redis call per request) is off here.
            "ALEX_RATE_LIMIT_ENABLED": "false",
            "ALEX_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/",  # no broker: nothing to consume
        })
        self.process = subprocess.Popen([sys.executable, "-m", "alexandrite", "serve", "mes", "--port",
                                         str(self.port)], env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health/live")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the MES server did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def measure(port: int, token: str, query: str, count: int) -> list[float]:
    """Milliseconds per request, sequential, one keep-alive connection, body read."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {token}"}
    timings = []
    for _ in range(count):
        began = time.perf_counter()
        conn.request("GET", f"{PATH}?{query}", headers=headers)
        response = conn.getresponse()
        body = response.read()
        timings.append((time.perf_counter() - began) * 1000)
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {body[:200]!r}")
    conn.close()
    return timings


def interleaved(servers: dict[str, Server], counts: dict[str, int], queries: dict[str, str],
                token: str) -> dict[tuple[str, str], list[float]]:
    """Requests to the variants in alternating rounds, so the shared machine's noise hits them alike.
    Each round sends every variant its share of requests for each page (after one warm-up round)."""
    rounds = max(counts.values())
    per_round = {name: max(1, count // min(rounds, 50)) for name, count in counts.items()}
    rounds = min(rounds, 50)
    samples: dict[tuple[str, str], list[float]] = {(n, p): [] for n in servers for p in queries}
    for round_index in range(rounds + 1):
        for page, query in queries.items():
            for name, server in servers.items():
                if round_index and len(samples[(name, page)]) >= counts[name]:
                    continue
                values = measure(server.port, token, query, per_round[name] if round_index else 3)
                if round_index:  # round 0 warms up connections, caches and plans
                    samples[(name, page)] += values
    return samples


async def explain_late_first(settings: Settings) -> str:
    """EXPLAIN ANALYZE of the board's "most overdue first" page, the statement the service sends."""
    from sqlalchemy.dialects import postgresql

    from alexandrite.mes.repository import stage_clock_query
    from alexandrite.mes.views import IN_WORK_STATUSES

    stmt = stage_clock_query(IN_WORK_STATUSES, dict(settings.sla.seconds), order="late", after=None, late=None,
                             limit=LIMIT)
    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    conn = await asyncpg.connect(plain_dsn(settings.database_url("mes")))
    try:
        await conn.execute(sql)  # warm
        plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}")
    finally:
        await conn.close()
    lines = [row[0] for row in plan]
    return "# EXPLAIN ANALYZE, most overdue first:\n" + "\n".join(f"#   {line}" for line in lines)


def deep_cursor(port: int, token: str) -> str:
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    cursor = ""
    for _ in range(DEEP_PAGE - 1):
        conn.request("GET", f"{PATH}?limit={LIMIT}" + (f"&cursor={cursor}" if cursor else ""),
                     headers={"Authorization": f"Bearer {token}"})
        page = json.loads(conn.getresponse().read())
        if not page["next_cursor"]:
            break
        cursor = page["next_cursor"]
    conn.close()
    return cursor


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def run_size(orders: int, requests: int, naive_requests: int) -> list[dict[str, object]]:
    token = uuid.uuid4().hex[:8]
    # A secret of this run's own: the published default is replaced by a generated one outside production.
    settings = Settings(_env_file=None, environment="test", db_prefix=f"alexbench_{token}",
                        redis_prefix=f"alexbench:{token}", secret_key=secrets.token_urlsafe(48))
    role = f"alexbench_{token}_naive"
    rows: list[dict[str, object]] = []
    try:
        timings = asyncio.run(prepare(settings, orders, role))
        print(f"# {orders:,} orders: seeded in {timings['seed']:.0f} s, naive copy in {timings['naive copy']:.0f} s",
              flush=True)
        bearer = issue_token(settings, Principal(role="operator", subject="bench", name="bench"), 3600)
        variants = [
            ("naive", False, f"postgresql+asyncpg://{role}@127.0.0.1:5432", naive_requests),
            ("partitioned", False, settings.db.dsn, requests),
            ("cached", True, settings.db.dsn, requests),
        ]
        servers = {name: Server(settings, cached=cached, pg_dsn=dsn) for name, cached, dsn, _ in variants}
        try:
            cursor = deep_cursor(servers["partitioned"].port, bearer)
            queries = {"first": f"limit={LIMIT}", "deep": f"limit={LIMIT}&cursor={cursor}",
                       "late1st": f"limit={LIMIT}&sort=late", "lateonly": f"limit={LIMIT}&late=true"}
            load_before = os.getloadavg()[0]
            samples = interleaved(servers, {name: count for name, _, _, count in variants}, queries, bearer)
            load_after = os.getloadavg()[0]
        finally:
            for server in servers.values():
                server.stop()
        print(f"# load average {load_before:.1f} before, {load_after:.1f} after measuring", flush=True)
        print(asyncio.run(explain_late_first(settings)), flush=True)
        for page in queries:
            for name, *_ in variants:
                values = samples[(name, page)]
                rows.append({"orders": orders, "page": page, "variant": name, "n": len(values),
                             "p50": statistics.median(values), "p95": percentile(values, 95),
                             "p99": percentile(values, 99)})
                print("  " + line(rows[-1], rows), flush=True)
    finally:
        asyncio.run(cleanup(settings, role))
    return rows


def line(row: dict[str, object], rows: list[dict[str, object]]) -> str:
    naive = next((r for r in rows if r["orders"] == row["orders"] and r["page"] == row["page"]
                  and r["variant"] == "naive"), None)
    ratio = f"{float(naive['p95']) / float(row['p95']):8.0f}×" if naive else "        "  # type: ignore[arg-type]
    return (f"{row['orders']:>11,} {row['page']:>8} {row['variant']:>12} {row['n']:>6} {row['p50']:>8.2f} "
            f"{row['p95']:>8.2f} {row['p99']:>8.2f} {ratio}")


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the finally blocks: servers, databases, role


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--naive-requests", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="3,000 orders, a few requests (for the test suite)")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.requests, args.naive_requests = "3000", 20, 5
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"{'orders':>11} {'page':>8} {'variant':>12} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'naive/p95':>9}")
    rows: list[dict[str, object]] = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows += run_size(size, args.requests, args.naive_requests)
    print("\nsummary")
    for row in rows:
        print(line(row, rows))


if __name__ == "__main__":
    main()

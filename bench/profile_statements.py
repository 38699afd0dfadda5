"""Statements and round trips to PostgreSQL per request and per order, counted on the wire.

Run: .venv/bin/python bench/profile_statements.py [--orders 30] [--pipeline-orders 30] [--smoke]

Every process under study talks to PostgreSQL through its own counting proxy (bench/pgwire.py), so the
counts are exact and need nothing from the server (``pg_stat_statements`` is not preloaded there).

1. Requests. One shop process with its background work off (relay, consumer, webhook dispatcher,
   notifier; throttling off) gets, one at a time, as a partner (``X-API-Key``): create (with an
   ``Idempotency-Key``) → upload (small ring) → submit → get, for ``--orders`` orders after a warm-up.
   Per request: round trips (Sync + simple Query messages), statements executed, transactions
   (BEGIN), Parse messages, and each statement by name.
2. Pipeline. The three APIs and one pricing worker as deployed, each behind its own proxy. After an
   idle window (its per-second statements are the polling loops'), ``--pipeline-orders`` orders are
   created and uploaded (phase "create+upload", until mes and crm know them all), then submitted
   (phase "submit→priced", until priced in every service and every outbox is empty). Per process and
   phase: statements per order with the idle rate × the phase's seconds taken off.
Everything the run made is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import support  # noqa: E402
from pgwire import Counts, ProxyThread  # noqa: E402
from support import Children  # noqa: E402

from alexandrite.kit.settings import Settings  # noqa: E402

STEPS = ("create", "upload", "submit", "get")
QUIET = {"ALEX_RUN_RELAY": "false", "ALEX_RUN_CONSUMER": "false", "ALEX_RUN_NOTIFIER": "false",
         "ALEX_RUN_WEBHOOKS": "false"}


def dsn_via(port: int) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}"


def one_order(client: httpx.Client, model: bytes, timings: dict[str, list[float]] | None = None,
              steps: tuple[str, ...] = STEPS, on_step: object = None) -> str:
    """create → upload → submit → get through the API; ``on_step(name, phase)`` around each request."""
    order_id = ""
    for name in steps:
        if callable(on_step):
            on_step(name, "before")
        began = time.perf_counter()
        if name == "create":
            response = client.post("/api/v1/orders", json={"alloy": "gold_585"},
                                   headers={"Idempotency-Key": uuid.uuid4().hex})
            order_id = str(response.json().get("id", ""))
        elif name == "upload":
            response = client.put(f"/api/v1/orders/{order_id}/model", files={"file": ("ring.stl", model, "model/stl")})
        elif name == "submit":
            response = client.post(f"/api/v1/orders/{order_id}/submit")
        else:
            response = client.get(f"/api/v1/orders/{order_id}")
        response.raise_for_status()
        if timings is not None:
            timings.setdefault(name, []).append((time.perf_counter() - began) * 1000)
        if callable(on_step):
            on_step(name, "after")
    return order_id


def print_counts(title: str, per: dict[str, Counts], divisor: dict[str, float], label: str) -> None:
    print(f"\n# {title}")
    support.print_table((label, "round trips", "statements", "transactions", "parses"), (-22, 12, 11, 13, 7), [
        (name, c.round_trips / divisor[name], c.executes / divisor[name], c.transactions / divisor[name],
         c.parses / divisor[name]) for name, c in per.items()])
    for name, counts in per.items():
        print(f"\n{name}: statements per {label.split()[0]}")
        for statement, count in sorted(counts.statements.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {count / divisor[name]:6.2f}  {statement}")


def requests_phase(settings: Settings, proxies: ProxyThread, children: Children, model: bytes, orders: int,
                   warmup: int) -> None:
    proxy = proxies.new()
    url = support.start_shop(settings, children, name="shop-quiet", ALEX_PG_DSN=dsn_via(proxy.port), **QUIET)
    key = support.partner_key(settings, "profile-partner")
    totals = {name: Counts() for name in STEPS}
    timings: dict[str, list[float]] = {}
    marks: dict[str, Counts] = {}

    def on_step(name: str, phase: str) -> None:
        now = proxies.snapshot(proxy)
        if phase == "before":
            marks[name] = now
        else:
            delta = now - marks[name]
            totals[name].add(delta)

    with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": key}) as client:
        for _ in range(warmup):
            one_order(client, model)
        for _ in range(orders):
            one_order(client, model, timings, on_step=on_step)
    children.stop("shop-quiet")
    # its events were never relayed: drop them, or the pipeline phase's consumers would get them
    asyncio.run(_count(settings, "shop", "WITH gone AS (DELETE FROM outbox RETURNING 1) SELECT count(*) FROM gone"))
    print_counts(f"requests: one shop process, background work off, {orders} orders one at a time, per request",
                 totals, {name: orders for name in STEPS}, "request")
    print("\n" + support.table_line(("request", "p50 ms (sequential)"), (-22, 20)))
    for name in STEPS:
        print(support.table_line((name, support.percentile(timings[name], 50)), (-22, 20)))


async def _count(settings: Settings, service: str, query: str, *args: object) -> int:
    conn = await asyncpg.connect(support.plain_dsn(settings.database_url(service)))  # type: ignore[arg-type]
    try:
        return int(await conn.fetchval(query, *args))
    finally:
        await conn.close()


def wait_for(check: object, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def pipeline_phase(settings: Settings, proxies: ProxyThread, children: Children, model: bytes, orders: int,
                   idle_seconds: float) -> None:
    proxy = {name: proxies.new() for name in ("shop", "crm", "mes", "worker")}  # before the ports are picked
    ports = {service: support.free_port() for service in ("shop", "crm", "mes")}
    base = support.child_env(settings, **{f"ALEX_{s.upper()}_PORT": str(p) for s, p in ports.items()},
                             **{f"ALEX_{s.upper()}_URL": f"http://127.0.0.1:{p}" for s, p in ports.items()})
    base["ALEX_LOG_LEVEL"] = "INFO"  # as deployed
    for service, port in ports.items():
        children.service(service, service, port, {**base, "ALEX_PG_DSN": dsn_via(proxy[service].port),
                                                  "ALEX_RATE_LIMIT_ENABLED": "false"})
    children.worker("worker", {**base, "ALEX_PG_DSN": dsn_via(proxy["worker"].port)})
    for service, port in ports.items():
        support.wait_http(f"http://127.0.0.1:{port}/health/ready", children.processes[service])
    key = support.partner_key(settings, "pipeline-partner")
    time.sleep(1.0)

    def snap() -> dict[str, Counts]:
        return {name: proxies.snapshot(p) for name, p in proxy.items()}

    idle_start, began = snap(), time.monotonic()
    time.sleep(idle_seconds)
    idle = {name: c - idle_start[name] for name, c in snap().items()}
    idle_wall = time.monotonic() - began

    ids: list[str] = []
    phases: dict[str, tuple[dict[str, Counts], float]] = {}
    start, began = snap(), time.monotonic()
    with httpx.Client(base_url=f"http://127.0.0.1:{ports['shop']}", timeout=60, headers={"X-API-Key": key}) as client:
        for _ in range(orders):
            ids.append(one_order(client, model, steps=("create", "upload")))
        uuids = [uuid.UUID(i) for i in ids]
        for service, table in (("mes", "production_orders"), ("crm", "orders")):
            wait_for(lambda s=service, t=table: asyncio.run(_count(
                settings, s, f"SELECT count(*) FROM {t} WHERE id = ANY($1) AND status = 'FILE_UPLOADED'",  # noqa: S608
                uuids)) == orders, f"{service} did not get every upload")
        phases["create+upload"] = ({n: c - start[n] for n, c in snap().items()}, time.monotonic() - began)
        start, began = snap(), time.monotonic()
        for order_id in ids:
            client.post(f"/api/v1/orders/{order_id}/submit").raise_for_status()
    for service, table in (("shop", "orders"), ("crm", "orders"), ("mes", "production_orders")):
        wait_for(lambda s=service, t=table: asyncio.run(_count(
            settings, s, f"SELECT count(*) FROM {t} WHERE id = ANY($1) AND status = 'PRICE_CALCULATED'",  # noqa: S608
            uuids)) == orders, f"{service}: not every order priced")
    for service in ("shop", "crm", "mes"):
        wait_for(lambda s=service: asyncio.run(_count(settings, s, "SELECT count(*) FROM outbox")) == 0,
                 f"{service}: outbox not drained")
    phases["submit→priced"] = ({n: c - start[n] for n, c in snap().items()}, time.monotonic() - began)

    print(f"\n# idle: statements per second of each process with no traffic ({idle_wall:.1f} s window)")
    for name, counts in idle.items():
        print(f"  {name:7} {counts.round_trips / idle_wall:6.1f} round trips/s, "
              f"{counts.executes / idle_wall:6.1f} statements/s")
        for unit, n in counts.units.most_common(6):
            print(f"          {n / idle_wall:6.2f}/s  {' | '.join(unit)}")
    rows = []
    details: list[str] = []
    for phase, (deltas, seconds) in phases.items():
        for name, counts in deltas.items():
            work = counts.without_units(set(idle[name].units))
            rows.append((name, phase, work.round_trips / orders, work.executes / orders,
                         sum(n for u, n in work.units.items() if u[0] == "BEGIN") / orders, seconds))
            details.append(f"\n{name}, {phase}: per order (units of work also seen while idle left out)")
            for statement, count in sorted(work.statements.items(), key=lambda kv: (-kv[1], kv[0])):
                if count / orders >= 0.05:
                    details.append(f"  {count / orders:6.2f}  {statement}")
            details.append("  units of work (transactions, or single autocommit statements):")
            for unit, count in work.units.most_common(12):
                if count / orders >= 0.05:
                    details.append(f"  {count / orders:6.2f}x {len(unit):2} stmts: {' | '.join(unit)}")
    print(f"\n# pipeline: {orders} orders, per order, by process and phase")
    support.print_table(("process", "phase", "round trips per order", "statements", "transactions", "phase s"),
                        (-8, -14, 22, 11, 13, 8), rows)
    print("\n".join(details))
    children.stop_all()


def run(args: argparse.Namespace) -> int:
    model = support.ring_stl("small")
    print(support.machine_line(), flush=True)
    with support.workdir("profile-statements") as tmp:
        with support.sandbox("profile-statements") as settings:
            children = Children(tmp / "logs")
            proxies = ProxyThread()
            try:
                requests_phase(settings, proxies, children, model, args.orders, args.warmup)
                pipeline_phase(settings, proxies, children, model, args.pipeline_orders, args.idle_seconds)
            finally:
                children.stop_all()
                proxies.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--orders", type=int, default=30, help="orders of the request phase")
    parser.add_argument("--warmup", type=int, default=25, help="orders before counting (prepared statements)")
    parser.add_argument("--pipeline-orders", type=int, default=30)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--smoke", action="store_true", help="3 orders per phase (for the test suite)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.orders, args.warmup, args.pipeline_orders, args.idle_seconds = 3, 2, 3, 2.0
    support.stop_on_sigterm()
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

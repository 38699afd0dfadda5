"""CPU and wall time per request in each layer of the shop: middlewares, dependency solving, the use case,
SQLAlchemy, the read-back view, response validation and JSON rendering.

Run: .venv/bin/python bench/profile_layers.py [--orders 200] [--warmup 30] [--smoke]

The shop app is built in-process (its own sandbox; relay, consumer, webhook dispatcher and notifier off,
logs at INFO to /dev/null) and called through ASGI one request at a time — create (with an
``Idempotency-Key``) → upload (small ring) → submit → get per order, as a partner (``X-API-Key``), or with
``--principal customer`` as a customer (a bearer token: the deny-list is checked on every request).
Nothing else runs in the process, so the CPU time of the thread across an awaited call is that call's
own CPU, database waits excluded; wall time includes them. Each middleware's own time is its inclusive
time minus the next layer's. Two passes: throttling off, then on (one Redis call per request), so the
throttle's cost shows. Timers cost about 1 µs each; figures are means over ``--orders``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import support  # noqa: E402

STEPS = ("create", "upload", "submit", "get")


class Clock:
    """Inclusive CPU (thread) and wall microseconds per name, for the current step."""

    def __init__(self) -> None:
        self.step = "warmup"
        self.cpu: dict[tuple[str, str], float] = defaultdict(float)
        self.wall: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self.depth: dict[str, int] = defaultdict(int)
        self.cache: Counter[tuple[str, str]] = Counter()  # (step, SQLAlchemy compiled-cache outcome)

    def reset(self) -> None:
        self.step = "warmup"
        self.cpu, self.wall, self.calls = defaultdict(float), defaultdict(float), defaultdict(int)
        self.cache = Counter()

    def add(self, name: str, cpu: float, wall: float) -> None:
        key = (self.step, name)
        self.cpu[key] += cpu * 1e6
        self.wall[key] += wall * 1e6
        self.calls[key] += 1

    def wrap_async(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            if self.depth[name]:  # recursive (jsonable_encoder): count the outermost call only
                return await func(*args, **kwargs)
            self.depth[name] += 1
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                return await func(*args, **kwargs)
            finally:
                self.depth[name] -= 1
                self.add(name, time.thread_time() - cpu, time.perf_counter() - wall)

        return timed

    def wrap_sync(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.depth[name]:
                return func(*args, **kwargs)
            self.depth[name] += 1
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.depth[name] -= 1
                self.add(name, time.thread_time() - cpu, time.perf_counter() - wall)

        return timed


class Layer:
    """Times one ASGI layer (inclusive)."""

    def __init__(self, clock: Clock, name: str, app: Any) -> None:
        self.clock, self.name, self.app = clock, name, app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.clock.add(self.name, time.thread_time() - cpu, time.perf_counter() - wall)


def instrument(clock: Clock) -> None:
    """Wrap module attributes that are looked up at call time (so the wrappers are really called)."""
    import fastapi.routing
    import sqlalchemy.ext.asyncio.session as sa_session
    import starlette.responses

    from alexandrite.kit import db as kit_db
    from alexandrite.shop import api, handlers, views, webhooks

    fastapi.routing.solve_dependencies = clock.wrap_async("solve_dependencies (incl. auth)",
                                                          fastapi.routing.solve_dependencies)
    fastapi.routing.run_endpoint_function = clock.wrap_async("endpoint function", fastapi.routing.run_endpoint_function)
    fastapi.routing.serialize_response = clock.wrap_async("serialize_response", fastapi.routing.serialize_response)
    fastapi.routing.jsonable_encoder = clock.wrap_sync("jsonable_encoder", fastapi.routing.jsonable_encoder)
    handlers.partner_principal = clock.wrap_async("auth: partner key lookup", handlers.partner_principal)
    for name in ("create_order", "attach_model", "submit"):
        setattr(handlers, name, clock.wrap_async(f"use case: handlers.{name}", getattr(handlers, name)))
    api._view = clock.wrap_async("read back: api._view (view + OrderOut)", api._view)
    views.live_order_view = clock.wrap_async("read back: views.live_order_view", views.live_order_view)
    webhooks.enqueue = clock.wrap_async("webhooks.enqueue", webhooks.enqueue)
    kit_db.UnitOfWork.commit = clock.wrap_async("UnitOfWork.commit (outbox insert + COMMIT)",
                                                kit_db.UnitOfWork.commit)
    kit_db.UnitOfWork.emit = clock.wrap_sync("UnitOfWork.emit (envelope JSON)", kit_db.UnitOfWork.emit)
    sa_session.AsyncSession.execute = clock.wrap_async("SQLAlchemy AsyncSession.execute (all)",
                                                       sa_session.AsyncSession.execute)
    # The hot paths (shop/hot_paths.py answers create, submit and GET; upload goes through FastAPI).
    from alexandrite.shop import order_reads, order_writes
    from alexandrite.shop.partner_keys import PartnerKeys

    for name in ("create_order", "submit", "attach_model"):
        setattr(order_writes, name, clock.wrap_async(f"use case: order_writes.{name}", getattr(order_writes, name)))
    order_writes.fetch_order = clock.wrap_async("read: order_reads.fetch_order (1 statement)",
                                                order_writes.fetch_order)
    order_reads.order_view = clock.wrap_async("read: order_reads.order_view", order_reads.order_view)
    order_reads.order_json = clock.wrap_sync("order_reads.order_json (orjson)", order_reads.order_json)
    PartnerKeys.principal = clock.wrap_async("auth: PartnerKeys.principal (cached)",  # type: ignore[method-assign]
                                             PartnerKeys.principal)
    kit_db.StatementUnitOfWork.commit = clock.wrap_async(  # type: ignore[method-assign]
        "StatementUnitOfWork.commit (the one statement)", kit_db.StatementUnitOfWork.commit)
    kit_db.StatementUnitOfWork.emit = clock.wrap_sync(  # type: ignore[method-assign]
        "StatementUnitOfWork.emit (envelope JSON)", kit_db.StatementUnitOfWork.emit)
    responses = starlette.responses.JSONResponse
    responses.render = clock.wrap_sync("JSONResponse.render", responses.render)  # type: ignore[method-assign]


def wrap_layers(app: Any, clock: Clock) -> list[str]:
    names = []
    layer = app.middleware_stack
    previous = None
    while layer is not None and hasattr(layer, "app") and len(names) < 20:
        name = type(layer).__name__
        names.append(name)
        timed = Layer(clock, f"layer: {name}", layer)
        if previous is None:
            app.middleware_stack = timed
        else:
            previous.app = timed
        previous = layer
        layer = layer.app
    if previous is not None and layer is not None:
        name = type(layer).__name__
        names.append(name)
        previous.app = Layer(clock, f"layer: {name}", layer)
    return names


async def drive(settings: Any, credentials: dict[str, str], orders: int, warmup: int, throttle: bool, clock: Clock,
                devnull: io.TextIOBase) -> tuple[Clock, list[str]]:
    from asgi_lifespan import LifespanManager

    from alexandrite.shop.app import create_app

    app = create_app(settings.replace(**{
        "run_relay": False, "run_consumer": False, "run_notifier": False, "run_webhooks": False,
        "rate_limit_enabled": throttle, "rate_limit_plans": {"standard": 10**9}, "rate_limit_per_customer": 10**9,
        "rate_limit_per_ip": 10**9, "backpressure_mode": "off",
        "log_level": "INFO"}))
    clock.reset()
    model = support.ring_stl("small")
    manager = LifespanManager(app)
    real_stdout, sys.stdout = sys.stdout, devnull  # structlog binds stdout when it is configured
    try:
        await manager.__aenter__()
    finally:
        sys.stdout = real_stdout
    layers: list[str] = []
    from sqlalchemy import event

    cache = clock.cache

    def _after(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        text = context._get_cache_stats() if context is not None else "none"  # "cached since ..." / "generated in ..."
        cache[(clock.step, text.split()[0])] += 1

    event.listen(app.state.db.engine.sync_engine, "after_cursor_execute", _after)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop.bench",
                                     headers=credentials, timeout=60) as client:
            for index in range(warmup + orders):
                if index == warmup:
                    layers = wrap_layers(app, clock)
                measuring = index >= warmup
                clock.step = "create" if measuring else "warmup"
                created = await client.post("/api/v1/orders", json={"alloy": "gold_585"},
                                            headers={"Idempotency-Key": uuid.uuid4().hex})
                assert created.status_code == 201, created.text
                order_id = created.json()["id"]
                clock.step = "upload" if measuring else "warmup"
                response = await client.put(f"/api/v1/orders/{order_id}/model",
                                            files={"file": ("ring.stl", model, "model/stl")})
                assert response.status_code == 200, response.text
                clock.step = "submit" if measuring else "warmup"
                response = await client.post(f"/api/v1/orders/{order_id}/submit")
                assert response.status_code == 202, response.text
                clock.step = "get" if measuring else "warmup"
                response = await client.get(f"/api/v1/orders/{order_id}")
                assert response.status_code == 200, response.text
    finally:
        await manager.__aexit__(None, None, None)
    snapshot = Clock()
    snapshot.cpu, snapshot.wall, snapshot.calls, snapshot.cache = clock.cpu, clock.wall, clock.calls, clock.cache
    clock.reset()
    return snapshot, layers


def report(clock: Clock, layers: list[str], orders: int, title: str) -> None:
    print(f"\n# {title}: CPU µs per request (wall µs in brackets), mean of {orders}")
    names = sorted({name for (_, name) in clock.cpu}, key=lambda n: (not n.startswith("layer: "), n))
    layer_names = [f"layer: {n}" for n in layers]
    header = ("what", *STEPS)
    widths = (-52, 17, 17, 17, 17)
    rows = []

    def cell(step: str, name: str, own: bool = False) -> str:
        key = (step, name)
        if key not in clock.cpu:
            return "-"
        cpu, wall = clock.cpu[key] / orders, clock.wall[key] / orders
        if own:
            index = layer_names.index(name)
            if index + 1 < len(layer_names):
                inner = (step, layer_names[index + 1])
                cpu -= clock.cpu.get(inner, 0.0) / orders
                wall -= clock.wall.get(inner, 0.0) / orders
        return f"{cpu:7.0f} [{wall:7.0f}]"

    for name in layer_names:
        rows.append((f"{name} (own)", *(cell(step, name, own=True) for step in STEPS)))
    if layer_names:
        rows.append(("whole app (outermost layer, inclusive)", *(cell(step, layer_names[0]) for step in STEPS)))
    for name in names:
        if not name.startswith("layer: "):
            rows.append((name, *(cell(step, name) for step in STEPS)))
    support.print_table(header, widths, rows)
    outcomes = sorted({outcome for (_, outcome) in clock.cache})
    print("\nSQLAlchemy statements per request by compiled-cache outcome (cached = compiled SQL reused)")
    support.print_table(("outcome", *STEPS), (-52, 17, 17, 17, 17), [
        (outcome, *(clock.cache.get((step, outcome), 0) / orders for step in STEPS)) for outcome in outcomes])


async def statement_costs(settings: Any, repeats: int) -> list[tuple[str, float, float]]:
    """CPU and wall µs of one primary-key SELECT of an order, by the way it is issued."""
    import asyncpg
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from alexandrite.shop.tables import orders

    url = settings.database_url("shop")
    conn = await asyncpg.connect(support.plain_dsn(url))
    engine = create_async_engine(url, pool_size=1)
    order_id = await conn.fetchval("SELECT id FROM orders LIMIT 1")
    sql = "SELECT * FROM orders WHERE id = $1"
    prebuilt = select(orders).where(orders.c.id == order_id)
    results = []

    async def timed(name: str, call: Callable[[], Any]) -> None:
        for _ in range(20):
            await call()
        cpu, wall = time.thread_time(), time.perf_counter()
        for _ in range(repeats):
            await call()
        results.append((name, (time.thread_time() - cpu) / repeats * 1e6, (time.perf_counter() - wall) / repeats * 1e6))

    socket_dir = "/var/run/postgresql"
    unix = None
    # the same server through its Unix socket, when there is one: no TCP loopback work per round trip
    with contextlib.suppress(OSError, asyncpg.PostgresError):
        unix = await asyncpg.connect(support.plain_dsn(url), host=socket_dir)
    try:
        await timed("asyncpg fetchrow (prepared, cached)", lambda: conn.fetchrow(sql, order_id))
        if unix is not None:
            await timed("asyncpg fetchrow, Unix socket", lambda: unix.fetchrow(sql, order_id))
        async with engine.connect() as aconn:
            await timed("SQLAlchemy Core, prebuilt statement", lambda: aconn.execute(prebuilt))

            async def built() -> Any:
                return (await aconn.execute(select(orders).where(orders.c.id == order_id))).first()

            await timed("SQLAlchemy Core, statement built per call", built)
        async with AsyncSession(engine) as session:
            async def orm_built() -> Any:
                return (await session.execute(select(orders).where(orders.c.id == order_id))).first()

            await timed("AsyncSession.execute, built per call (the repository's way)", orm_built)

        async def session_each() -> Any:
            async with AsyncSession(engine) as own:
                return (await own.execute(select(orders).where(orders.c.id == order_id))).first()

        await timed("new AsyncSession per read: BEGIN + SELECT + ROLLBACK", session_each)
    finally:
        await conn.close()
        if unix is not None:
            await unix.close()
        await engine.dispose()
    return results


def run(args: argparse.Namespace) -> int:
    print(support.machine_line(), flush=True)
    with support.sandbox("profile-layers") as settings:
        if args.principal == "customer":
            from alexandrite.kit.security import Principal
            from alexandrite.kit.tokens import issue_token

            customer = Principal(role="customer", subject=str(uuid.uuid4()), name="layers-customer")
            credentials = {"Authorization": "Bearer " + issue_token(settings, customer, 3600)}
        else:
            credentials = {"X-API-Key": support.partner_key(settings, "layers-partner")}
        clock = Clock()
        instrument(clock)
        results = []
        with open("/dev/null", "w") as devnull:
            for throttle in (False, True):
                local, layers = asyncio.run(drive(settings, credentials, args.orders, args.warmup, throttle, clock,
                                                  devnull))
                results.append((throttle, local, layers))
        for throttle, local, layers in results:
            report(local, layers, args.orders, f"throttling {'on' if throttle else 'off'}")
        costs = asyncio.run(statement_costs(settings, max(args.orders * 2, 20)))
    print("\n# one primary-key SELECT of an order, by the way it is issued (µs per statement)")
    support.print_table(("how", "cpu µs", "wall µs"), (-60, 8, 8), costs)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--principal", choices=("partner", "customer"), default="partner",
                        help="who sends the requests: a partner (X-API-Key) or a customer (bearer token)")
    parser.add_argument("--smoke", action="store_true", help="3 orders (for the test suite)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.orders, args.warmup = 3, 2
    support.stop_on_sigterm()
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

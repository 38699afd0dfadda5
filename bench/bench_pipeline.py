"""Pipeline throughput: orders per second from submit to PRICE_CALCULATED in the shop and the CRM, with
1 and 2 pricing workers, against a bare confirmed publish + ack loop measured in the same run.

Run: .venv/bin/python bench/bench_pipeline.py [--orders 300] [--workers 1,2] [--models small,large]
     [--concurrency 32] [--smoke]

One sandbox (databases migrated with the project's code, vhost, Redis prefix, storage) and the real
processes: the three APIs (each with its relay, consumer and background loops, as ``alexandrite up``
runs them) stay up for the whole run; per configuration N pricing workers are started and stopped.

Before the clock starts, every order of every configuration is created and given its model through the
shop's API (a customer account; ``small`` = a 2,112-triangle ring, ``large`` = a 200,000-triangle
ring, where pricing itself is the limit), and the run waits until mes and crm know them all. Then, per
configuration, the clock runs from the first submit (``--concurrency`` submits in flight, 429/503
retried after ``Retry-After``) until every order of the batch is PRICE_CALCULATED (or _FAILED) in the
shop's and the CRM's databases, counted there with one query per database every 0.2 s: no HTTP polling.
Latency per order is PRICE_CALCULATED − SUBMITTED from the shop's order history. The submits go out on
bench/light_http.py (httpx, the load generator before, took about a third of a core of the two); the
configuration's line reports the load generator's own CPU per order and how many submits were refused,
and the CPU per order of the servers the platform drives (every PostgreSQL, RabbitMQ and Redis process of
the machine: on a shared machine they also serve other tenants, so this is an upper bound).

The anchor (bench/anchors/bare_amqp.py) runs right before and right after each configuration (half the
messages each, added up), with the workers' queue empty and the APIs idle: persistent
messages published with confirms (100 in flight) to a quorum queue and consumed with manual acks, in a
vhost of its own. overhead x = (ms per order) / (ms per bare message); scaling = orders/s relative to
1 worker with the same model. cpu ms/order: user + system CPU of the three APIs ("apis") and the
workers ("workers cpu") during the configuration, per order: on a shared machine a steadier figure than
the rate, which depends on how much CPU the other tenants leave. The line also gives each process's
write-family system calls per order (/proc/<pid>/io ``syscw``: its socket writes to PostgreSQL, RabbitMQ,
Redis and the clients), which does not depend on the machine's speed at all. Everything the run made is
dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import support  # noqa: E402
from anchors import bare_amqp  # noqa: E402
from light_http import LightClient  # noqa: E402

from alexandrite.kit.settings import Settings  # noqa: E402
from tests.e2e.processes import Platform  # noqa: E402

PRICED = ["PRICE_CALCULATED", "PRICE_CALCULATION_FAILED"]
HEADER = ("model", "triangles", "workers", "orders", "orders/s", "p50 ms", "p95 ms", "ms/order", "bare ms/msg",
          "bare msg/s", "overhead x", "scaling", "cpu ms/order", "apis", "workers cpu")
WIDTHS = (-6, 9, 7, 6, 9, 8, 8, 9, 11, 10, 10, 7, 12, 6, 11)


def cpu_of(platform: Platform, names: list[str]) -> dict[str, float]:
    """CPU seconds so far of each named process (all threads)."""
    return {name: support.cpu_seconds(platform.processes[name].pid) for name in names}


def writes_of(platform: Platform, names: list[str]) -> dict[str, int]:
    """Write-family system calls so far of each named process (its socket writes)."""
    return {name: support.write_calls(platform.processes[name].pid) for name in names}


async def _retrying(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    for _ in range(200):
        response = await client.request(method, url, **kwargs)
        if response.status_code not in (429, 503):
            response.raise_for_status()
            return response
        await asyncio.sleep(min(float(response.headers.get("retry-after", "1") or 1), 5.0))
    raise RuntimeError(f"{method} {url}: still refused after 200 tries")


async def customer_token(client: httpx.AsyncClient) -> dict[str, str]:
    email = f"bench-{uuid.uuid4().hex[:8]}@example.test"
    await _retrying(client, "POST", "/api/v1/auth/signup", json={"email": email, "password": "bench-pass", "name": "B"})
    token = (await _retrying(client, "POST", "/api/v1/auth/token",
                             json={"email": email, "password": "bench-pass"})).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def prepare(shop: str, auth: dict[str, str], model: bytes, count: int, concurrency: int = 8) -> list[str]:
    """``count`` orders created and uploaded through the API (FILE_UPLOADED)."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient) -> str:
        async with semaphore:
            order_id = str((await _retrying(client, "POST", "/api/v1/orders", json={"alloy": "gold_585"},
                                            headers=auth)).json()["id"])
            await _retrying(client, "PUT", f"/api/v1/orders/{order_id}/model", headers=auth,
                            files={"file": ("ring.stl", model, "model/stl")})
            return order_id

    async with httpx.AsyncClient(base_url=shop, timeout=120) as client:
        return list(await asyncio.gather(*(one(client) for _ in range(count))))


async def count_in(settings: Settings, service: str, table: str, ids: list[uuid.UUID], statuses: list[str]) -> int:
    conn = await asyncpg.connect(support.plain_dsn(settings.database_url(service)))  # type: ignore[arg-type]
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE id = ANY($1) AND status = ANY($2)",  # noqa: S608
                                       ids, statuses))
    finally:
        await conn.close()


async def wait_known(settings: Settings, ids: list[str], timeout: float = 600) -> None:
    """Until mes and crm have every order in FILE_UPLOADED (their events were applied)."""
    uuids = [uuid.UUID(i) for i in ids]
    deadline = time.monotonic() + timeout
    while True:
        mes = await count_in(settings, "mes", "production_orders", uuids, ["FILE_UPLOADED"])
        crm = await count_in(settings, "crm", "orders", uuids, ["FILE_UPLOADED"])
        if mes == crm == len(ids):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"mes knows {mes}, crm {crm} of {len(ids)} uploaded orders")
        await asyncio.sleep(0.5)


@dataclass
class Submitted:
    seconds: float  # from the first submit until every order is priced in the shop's and the CRM's databases
    refused: int  # 429 / 503 answers, each retried after Retry-After
    client_cpu: float  # CPU seconds of this process meanwhile (the load generator and the counting)


async def submit_and_wait(settings: Settings, shop: str, auth: dict[str, str], ids: list[str], concurrency: int,
                          timeout: float) -> Submitted:
    """Submit every order (``concurrency`` in flight, on the light client) and wait until all are priced."""
    uuids = [uuid.UUID(i) for i in ids]
    shop_conn = await asyncpg.connect(support.plain_dsn(settings.database_url("shop")))  # type: ignore[arg-type]
    crm_conn = await asyncpg.connect(support.plain_dsn(settings.database_url("crm")))  # type: ignore[arg-type]
    query_shop = "SELECT count(*) FROM orders WHERE id = ANY($1) AND status = ANY($2)"
    client = LightClient(shop, concurrency)
    refused = 0
    try:
        async def one(order_id: str) -> None:
            nonlocal refused
            for _ in range(200):
                status, headers, body = await client.request("POST", f"/api/v1/orders/{order_id}/submit", auth)
                if status not in (429, 503):
                    if status >= 400:
                        raise RuntimeError(f"submit {order_id}: {status} {body[:300]!r}")
                    return
                refused += 1
                await asyncio.sleep(min(float(headers.get("retry-after", "1") or 1), 5.0))
            raise RuntimeError(f"submit {order_id}: still refused after 200 tries")

        cpu_before = time.process_time()
        started = time.perf_counter()
        submits = asyncio.gather(*(one(i) for i in ids))
        deadline = time.monotonic() + timeout
        while True:
            await asyncio.sleep(0.2)
            shop_done = int(await shop_conn.fetchval(query_shop, uuids, PRICED))
            crm_done = int(await crm_conn.fetchval(query_shop, uuids, PRICED))
            if shop_done == crm_done == len(ids):
                elapsed = time.perf_counter() - started
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"priced: shop {shop_done}, crm {crm_done} of {len(ids)} after {timeout:.0f} s")
        await submits
        return Submitted(elapsed, refused, time.process_time() - cpu_before)
    finally:
        await client.close()
        await shop_conn.close()
        await crm_conn.close()


async def latencies(settings: Settings, ids: list[str]) -> list[float]:
    """PRICE_CALCULATED − SUBMITTED per order, in seconds, from the shop's history."""
    conn = await asyncpg.connect(support.plain_dsn(settings.database_url("shop")))  # type: ignore[arg-type]
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM max(at) FILTER (WHERE status = ANY($2)) "
            "- max(at) FILTER (WHERE status = 'SUBMITTED')) AS s FROM order_history WHERE order_id = ANY($1) "
            "GROUP BY order_id", [uuid.UUID(i) for i in ids], PRICED)
    finally:
        await conn.close()
    return [float(r["s"]) for r in rows if r["s"] is not None]


def wait_worker(platform: Platform, name: str, timeout: float = 60) -> None:
    support.wait_http(f"http://127.0.0.1:{platform.worker_metrics_ports[name]}/health/ready",
                      platform.processes[name], timeout)


def run(args: argparse.Namespace) -> int:
    worker_counts = [int(w) for w in args.workers.split(",") if w]
    kinds = [k for k in args.models.split(",") if k]
    models = {kind: support.ring_stl(kind) for kind in kinds}
    print(support.machine_line())
    print(f"# {args.orders} orders per configuration, {args.concurrency} submits in flight; models: "
          + ", ".join(f"{k} {support.stl_triangles(m):,} triangles ({len(m) / 1e6:.1f} MB)" for k, m in models.items()),
          flush=True)
    rows: list[tuple[object, ...]] = []
    with support.workdir("bench-pipeline") as tmp:
        with support.sandbox("bench-pipeline") as settings:
            env = support.child_env(settings)
            platform = Platform.configure(settings, env, tmp / "logs")
            platform.env["ALEX_LOG_LEVEL"] = "INFO"  # as deployed
            try:
                for service in ("shop", "crm", "mes"):
                    platform.start(service, "serve", service)
                platform.wait_ready()
                shop = platform.settings.net.shop_url

                async def _token() -> dict[str, str]:
                    async with httpx.AsyncClient(base_url=shop, timeout=60) as client:
                        return await customer_token(client)

                auth = asyncio.run(_token())
                batches: dict[tuple[str, int], list[str]] = {}
                began = time.perf_counter()
                apis = ["shop", "crm", "mes"]
                cpu_before, servers_before = cpu_of(platform, apis), support.server_cpu_seconds()
                for kind in kinds:
                    ids = asyncio.run(prepare(shop, auth, models[kind], args.orders * len(worker_counts)))
                    for index, workers in enumerate(worker_counts):
                        batches[(kind, workers)] = ids[index * args.orders:(index + 1) * args.orders]
                asyncio.run(wait_known(platform.settings, [i for b in batches.values() for i in b]))
                prepared = sum(len(b) for b in batches.values())
                cpu_after, servers_after = cpu_of(platform, apis), support.server_cpu_seconds()
                print(f"# prepared {prepared} uploaded orders in {time.perf_counter() - began:.0f} s; create + "
                      "upload, cpu ms per order until crm and mes know them: "
                      + ", ".join(f"{n} {(cpu_after[n] - cpu_before[n]) * 1000 / prepared:.1f}" for n in apis)
                      + "; servers " + ", ".join(f"{n} {(servers_after[n] - servers_before[n]) * 1000 / prepared:.1f}"
                                                 for n in servers_after), flush=True)
                for kind in kinds:
                    base_rate = None
                    for workers in worker_counts:
                        names = [f"worker-{kind}-{workers}-{i + 1}" for i in range(workers)]
                        for name in names:
                            platform.start_worker(name)
                        for name in names:
                            wait_worker(platform, name)
                        load_before = support.loadavg()
                        bare_messages = max(args.bare_messages, args.orders) // 2
                        bare_before = bare_amqp.measure(bare_messages)
                        ids = batches[(kind, workers)]
                        measured = ["shop", "crm", "mes", *names]
                        cpu_before = cpu_of(platform, measured)
                        writes_before = writes_of(platform, measured)
                        servers_before = support.server_cpu_seconds()
                        try:
                            submitted = asyncio.run(submit_and_wait(platform.settings, shop, auth, ids,
                                                                    args.concurrency, args.timeout))
                            elapsed = submitted.seconds
                            cpu_after = cpu_of(platform, measured)
                            writes_after = writes_of(platform, measured)
                            servers_after = support.server_cpu_seconds()
                        finally:
                            for name in names:
                                platform.kill(name, 15)
                        spent = {n: (cpu_after[n] - cpu_before[n]) * 1000 / len(ids) for n in measured}
                        servers = {n: (servers_after[n] - servers_before[n]) * 1000 / len(ids) for n in servers_after}
                        apis_ms = spent["shop"] + spent["crm"] + spent["mes"]
                        workers_ms = sum(spent[n] for n in names)
                        lat = asyncio.run(latencies(platform.settings, ids))
                        bare_after = bare_amqp.measure(bare_messages)
                        bare = bare_amqp.BareResult(bare_before.messages + bare_after.messages,
                                                    bare_before.seconds + bare_after.seconds)
                        rate = len(ids) / elapsed
                        base_rate = base_rate or rate
                        per_order_ms = elapsed / len(ids) * 1000
                        rows.append((kind, support.stl_triangles(models[kind]), workers, len(ids), rate,
                                     support.percentile(lat, 50) * 1000, support.percentile(lat, 95) * 1000,
                                     per_order_ms, bare.per_message_ms, bare.rate, per_order_ms / bare.per_message_ms,
                                     f"{rate / base_rate:.2f}x", apis_ms + workers_ms, apis_ms, workers_ms))
                        print(f"# {kind} x{workers}: {rate:.1f} orders/s, load {load_before:.1f} -> "
                              f"{support.loadavg():.1f}; cpu ms per order: "
                              + ", ".join(f"{n} {v:.1f}" for n, v in spent.items())
                              + f"; load generator {submitted.client_cpu * 1000 / len(ids):.1f}; servers "
                              + ", ".join(f"{n} {v:.1f}" for n, v in servers.items())
                              + f" (all: {sum(spent.values()) + sum(servers.values()):.1f}); "
                              f"{submitted.refused} submits refused (429/503) and retried; write calls per order: "
                              + ", ".join(f"{n} {(writes_after[n] - writes_before[n]) / len(ids):.1f}"
                                          for n in measured), flush=True)
            finally:
                platform.stop_all()
        print()
        support.print_table(HEADER, WIDTHS, rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--orders", type=int, default=300, help="orders per configuration")
    parser.add_argument("--workers", default="1,2", help="pricing worker counts, comma-separated")
    parser.add_argument("--models", default="small", help="small (2k triangles) and/or large (200k), comma-separated")
    parser.add_argument("--concurrency", type=int, default=32, help="submits in flight")
    parser.add_argument("--bare-messages", type=int, default=3000, help="anchor loop size (at least --orders)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a configuration may take")
    parser.add_argument("--smoke", action="store_true", help="10 small orders, 1 and 2 workers (for the test suite)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.orders, args.workers, args.models, args.bare_messages, args.timeout = 10, "1,2", "small", 200, 180.0
    support.stop_on_sigterm()
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

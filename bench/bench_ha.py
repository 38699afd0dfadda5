"""Steady-state throughput of the HA layout against the single-node one, measured in the same run.

Run: .venv/bin/python bench/bench_ha.py [--orders 200] [--workers 2] [--concurrency 16] [--smoke]

- single node: a fresh sandbox (own databases, vhost, Redis prefix) on this machine's PostgreSQL,
  RabbitMQ and Redis, and the real processes (three APIs with relays and consumers, N pricing workers);
- HA: ``alexandrite up --ha`` in a temporary run directory (etcd x3, Patroni leader + synchronous
  standby behind HAProxy, RabbitMQ x3 with every quorum queue on all three nodes, Redis + Sentinel)
  running the same processes; stopped with SIGINT at the end, after which no process or port of the
  layout may be left.

Both get the same seeded orders (``simulate``: create, upload a ring model, submit, wait until priced)
after a short warm-up. The table gives orders/s and submit-to-priced latency per layout, then the
throughput ratio HA / single node: what synchronous replication, quorum queues and the extra hops
cost. ``--smoke`` runs a tiny size (for the test suite: it checks the table is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alexandrite.devtools.sandbox import deprovision, provision, sandbox_env, sandbox_settings  # noqa: E402
from alexandrite.devtools.simulate import percentile, simulate, stage_latencies  # noqa: E402
from alexandrite.kit.settings import SERVICES, Settings  # noqa: E402
from alexandrite.ops.ha.layout import HaLayout  # noqa: E402
from alexandrite.ops.ha.processes import port_open  # noqa: E402
from tests.e2e.processes import Platform, free_port, free_port_block  # noqa: E402

TOTAL = "SUBMITTED => PRICE_CALCULATED (total)"


async def measure(settings: Settings, orders: int, warmup: int, concurrency: int) -> dict[str, Any]:
    await simulate(settings, warmup, concurrency=concurrency, timeout=300, seed=11)
    outcomes, elapsed = await simulate(settings, orders, concurrency=concurrency, timeout=300, seed=2026)
    errors = [o.error for o in outcomes if o.error]
    if errors:
        raise RuntimeError(f"{len(errors)} orders failed, e.g. {errors[0]}")
    totals = stage_latencies(outcomes).get(TOTAL, [])
    return {"orders": orders, "seconds": elapsed, "orders_per_s": orders / elapsed,
            "p50_ms": percentile(totals, 50) * 1000, "p95_ms": percentile(totals, 95) * 1000}


async def measure_while_up(up: subprocess.Popen[bytes], log: Path, settings: Settings, orders: int, warmup: int,
                           concurrency: int) -> dict[str, Any]:
    """``measure`` on the HA layout, given up (with the log's end) as soon as ``alexandrite up --ha`` exits."""
    task = asyncio.create_task(measure(settings, orders, warmup, concurrency))
    while not task.done():
        if up.poll() is not None:
            task.cancel()
            raise RuntimeError(f"`alexandrite up --ha` exited with {up.returncode} while measuring: "
                               + (await asyncio.to_thread(log.read_text))[-2000:])
        await asyncio.wait({task}, timeout=0.5)
    return task.result()


def single_node(orders: int, warmup: int, workers: int, concurrency: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="alex-bench-ha-single-"))
    settings = sandbox_settings(root, log_level="WARNING")
    provision(settings)
    platform = Platform.configure(settings, {**sandbox_env(settings, dict(os.environ)), "ALEX_LOG_LEVEL": "WARNING"},
                                  root / "logs")
    failed = True
    try:
        platform.start_all(workers=workers)
        result = {"layout": "single node", **asyncio.run(measure(platform.settings, orders, warmup, concurrency))}
        failed = False
        return result
    finally:
        platform.stop_all()
        deprovision(settings)
        if failed:
            print(f"single node failed: its processes' logs are kept in {root / 'logs'}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def ha_layout(orders: int, warmup: int, workers: int, concurrency: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="alex-bench-ha-")) / "ha"
    root.parent.chmod(0o755)  # PostgreSQL runs as the postgres user and must reach its directories
    sandbox = sandbox_settings(root.parent)  # the same request limits and storage layout as the single node
    ports = {service: free_port() for service in SERVICES}
    env = {**sandbox_env(sandbox, dict(os.environ)), "ALEX_LOG_LEVEL": "WARNING",
           "ALEX_HA_BASE_PORT": str(15000 + uuid.uuid4().int % 15000),
           "ALEX_WORKER_METRICS_PORT": str(free_port_block(workers))}
    for service, port in ports.items():
        env[f"ALEX_{service.upper()}_PORT"] = str(port)
        env[f"ALEX_{service.upper()}_URL"] = f"http://127.0.0.1:{port}"
    for key in ("ALEX_DB_PREFIX", "ALEX_AMQP_URL", "ALEX_REDIS_PREFIX"):  # `up --ha` uses its own clusters
        env.pop(key, None)
    log = open(root.parent / "up.log", "wb")  # noqa: SIM115 - closed below
    started = time.monotonic()
    up = subprocess.Popen([sys.executable, "-m", "alexandrite", "up", "--ha", "--dir", str(root),
                           "--workers", str(workers)], env=env, stdout=log, stderr=subprocess.STDOUT)
    layout: HaLayout | None = None
    try:
        while not (root / "up.json").exists():
            if up.poll() is not None:
                raise RuntimeError(f"`alexandrite up --ha` exited with {up.returncode}: "
                                   + (root.parent / "up.log").read_text()[-2000:])
            if time.monotonic() - started > 600:
                raise TimeoutError("`alexandrite up --ha` did not come up within 600 s")
            time.sleep(0.5)
        startup = time.monotonic() - started
        layout = HaLayout.load(root)
        status = json.loads((root / "up.json").read_text())
        settings = sandbox.replace(**{
            **{f"{s}_url": status["services"][s] for s in SERVICES}, **{f"{s}_port": ports[s] for s in SERVICES}})
        measured = asyncio.run(measure_while_up(up, root.parent / "up.log", settings, orders, warmup, concurrency))
        result = {"layout": "HA", **measured,
                  "startup_seconds": startup}
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
        try:
            code = up.wait(timeout=180)
        except subprocess.TimeoutExpired:
            up.kill()
            code = up.wait()
        log.close()
    layout_ports = [] if layout is None else [
        *(p for m in layout.etcd for p in (m.client_port, m.peer_port)),
        *(p for n in layout.postgres for p in (n.port, n.rest_port)),
        layout.pg_write_port, layout.pg_read_port, layout.pg_lb_stats_port,
        *(n.amqp_port for n in layout.rabbit), *(n.port for n in (*layout.redis, *layout.sentinels))]
    left = [p for p in [*layout_ports, *ports.values()] if port_open(p)]
    result["stopped_cleanly"] = code == 0 and not left and not root.exists()
    result["left_over"] = {"exit_code": code, "open_ports": left, "run_dir_exists": root.exists()}
    if result["stopped_cleanly"]:
        shutil.rmtree(root.parent, ignore_errors=True)  # storage and the log of `up`
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--smoke", action="store_true", help="tiny size: 12 orders, 3 warm-up")
    args = parser.parse_args()
    orders, warmup = (12, 3) if args.smoke else (args.orders, args.warmup)
    print(f"{orders} orders per layout after {warmup} warm-up, {args.concurrency} in flight, {args.workers} "
          f"pricing workers; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    rows = [single_node(orders, warmup, args.workers, args.concurrency),
            ha_layout(orders, warmup, args.workers, args.concurrency)]
    print(f"\n{'layout':<12} {'orders':>6} {'seconds':>8} {'orders/s':>9} {'p50 ms':>8} {'p95 ms':>8}")
    for row in rows:
        print(f"{row['layout']:<12} {row['orders']:>6} {row['seconds']:>8.1f} {row['orders_per_s']:>9.2f} "
              f"{row['p50_ms']:>8.0f} {row['p95_ms']:>8.0f}")
    single, ha = rows
    print(f"HA / single node throughput: {ha['orders_per_s'] / single['orders_per_s']:.2f}")
    print(f"HA layout came up in {ha['startup_seconds']:.1f} s; stopped cleanly: "
          f"{'yes' if ha['stopped_cleanly'] else 'NO ' + json.dumps(ha['left_over'])}", flush=True)
    if not ha["stopped_cleanly"]:
        sys.exit(1)


if __name__ == "__main__":
    main()

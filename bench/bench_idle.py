"""Idle cost: CPU of each API process and of a pricing worker with no traffic at all, beside the anchor
app idle in the same run.

Run: .venv/bin/python bench/bench_idle.py [--seconds 30] [--settle 5] [--smoke]

Per variant of the background loops' wake-up settings ("poll 50 ms (before)": the relays poll their
outbox every 50 ms, the webhook dispatcher every 0.2 s, the notifier every 2 s; "listen + slow poll
(after)": as shipped, relays and dispatcher woken by PostgreSQL LISTEN/NOTIFY with slow safety polls),
starts, in a sandbox of its own, the three APIs as ``alexandrite serve`` runs them (outbox relay,
event consumer, background loops: webhook dispatcher and notifier in the shop, status gauge in crm and
mes, SLA watchdog in mes), one pricing worker and the anchor (bench/anchors/anchor_app.py). After
``--settle`` seconds it reads user + system CPU seconds of each process (all threads) from
``/proc/<pid>/stat`` at the start and the end of ``--seconds`` and prints the share of one core. It also
prints the transactions per second each database saw meanwhile (``pg_stat_database``; PostgreSQL
flushes these counters about once a second, so short windows are approximate): the polling loops'
footprint on the shared database server. Everything is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import support  # noqa: E402
from support import AnchorApp, Children  # noqa: E402

from alexandrite.kit.settings import Settings  # noqa: E402

HEADER = ("process", "variant", "cpu s", "% of a core", "x anchor")
WIDTHS = (-8, -26, 8, 12, 9)
# The loops' wake-up settings before (fast polls) and as shipped (LISTEN/NOTIFY and slow safety polls).
VARIANTS: dict[str, dict[str, str]] = {
    "poll 50 ms (before)": {"ALEX_RELAY_LISTEN": "false", "ALEX_RELAY_IDLE_SECONDS": "0.05",
                            "ALEX_RELAY_GAUGE_SECONDS": "5", "ALEX_WEBHOOK_IDLE_SECONDS": "0.2",
                            "ALEX_WEBHOOK_GAUGE_SECONDS": "5", "ALEX_NOTIFIER_INTERVAL_SECONDS": "2"},
    "listen + slow poll (after)": {},
}
SERVICES = ("shop", "crm", "mes")


async def transactions(settings: Settings, names: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(support.plain_dsn(settings.admin_database_url()))
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = await conn.fetch("SELECT datname, xact_commit + xact_rollback AS n FROM pg_stat_database "
                                "WHERE datname = ANY($1)", names)
    finally:
        await conn.close()
    return {r["datname"]: int(r["n"]) for r in rows}


def measure(args: argparse.Namespace, settings: Settings, children: Children, databases: list[str],
            extra_env: dict[str, str]) -> tuple[dict[str, float], dict[str, float], float]:
    """(cpu seconds per process, transactions per second per database, wall seconds) of one idle window."""
    ports = {service: support.free_port() for service in SERVICES}
    env = support.child_env(settings, **{f"ALEX_{s.upper()}_PORT": str(p) for s, p in ports.items()},
                            **{f"ALEX_{s.upper()}_URL": f"http://127.0.0.1:{p}" for s, p in ports.items()})
    env["ALEX_LOG_LEVEL"] = "INFO"  # as deployed
    env.update(extra_env)
    for service, port in ports.items():
        children.service(service, service, port, env)
    children.worker("worker", env)
    try:
        for service, port in ports.items():
            support.wait_http(f"http://127.0.0.1:{port}/health/ready", children.processes[service])
        time.sleep(args.settle)
        pids = {name: process.pid for name, process in children.processes.items()}
        xact_before = asyncio.run(transactions(settings, databases))
        before = {name: support.cpu_seconds(pid) for name, pid in pids.items()}
        began = time.monotonic()
        time.sleep(args.seconds)
        after = {name: support.cpu_seconds(pid) for name, pid in pids.items()}
        wall = time.monotonic() - began
        time.sleep(min(args.seconds, 1.5))  # let the databases flush their counters
        xact_after = asyncio.run(transactions(settings, databases))
    finally:
        for name in [*SERVICES, "worker"]:
            children.stop(name)
    return ({name: after[name] - before[name] for name in pids},
            {db: (xact_after.get(db, 0) - xact_before.get(db, 0)) / wall for db in databases}, wall)


def run(args: argparse.Namespace) -> int:
    print(support.machine_line())
    print(f"# idle: {args.settle:.0f} s to settle, then {args.seconds:.0f} s measured, per variant", flush=True)
    results: dict[str, tuple[dict[str, float], dict[str, float], float]] = {}
    with support.workdir("bench-idle") as tmp:
        with support.sandbox("bench-idle") as settings:
            children = Children(tmp / "logs")
            anchor = AnchorApp(settings, children)
            try:
                anchor.start()
                databases = [settings.database_name(s) for s in SERVICES] + [anchor.database]
                for variant, extra in VARIANTS.items():
                    load_before = support.loadavg()
                    results[variant] = measure(args, settings, children, databases, extra)
                    print(f"# {variant}: load average {load_before:.2f} before, {support.loadavg():.2f} after",
                          flush=True)
            finally:
                children.stop_all()
                anchor.drop()
    rows = []
    for name in (*SERVICES, "worker", "anchor"):
        for variant, (cpu, _, wall) in results.items():
            share = cpu[name] / wall * 100
            anchor_share = cpu["anchor"] / wall * 100
            ratio = f"{share / anchor_share:.1f}" if anchor_share > 0 else "-"
            rows.append((name, variant, cpu[name], f"{share:.2f}", ratio))
    print()
    support.print_table(HEADER, WIDTHS, rows)
    print()
    databases = list(next(iter(results.values()))[1])
    support.print_table(("database", "variant", "xact/s"), (-32, -26, 8), [
        (db, variant, xacts[db]) for db in databases for variant, (_, xacts, _) in results.items()])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after readiness before measuring")
    parser.add_argument("--smoke", action="store_true", help="a 2-second window (for the test suite)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.settle = 2.0, 0.5
    support.stop_on_sigterm()
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

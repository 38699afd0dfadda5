"""Shop API hot paths under wrk, each beside the anchor app measured in the same run.

Run: .venv/bin/python bench/bench_api.py [--duration 10] [--connections 32] [--rounds 1]
     [--endpoints create,submit,get] [--profile DIR] [--pg-socket DIR] [--smoke]

Starts, in a sandbox of its own (databases migrated with the project's code, vhost, Redis prefix):
- the anchor (bench/anchors/anchor_app.py: FastAPI + pydantic + asyncpg under uvicorn with uvloop and
  httptools, one statement per request, its own database);
- one shop process (``alexandrite serve shop``: relay, consumer and background loops as deployed),
  throttling off (``ALEX_RATE_LIMIT_ENABLED=false``), submit backpressure off (no mes process to ask),
  pool of 10 like the anchor;
- a partner account; requests carry its ``X-API-Key``.

Then wrk drives, in alternating order per round (anchor first in even rounds):
- create  ``POST /api/v1/orders`` with a new ``Idempotency-Key`` per request  vs  anchor ``POST /orders``
- submit  ``POST /api/v1/orders/{id}/submit`` on FILE_UPLOADED orders          vs  anchor ``POST /orders``
- get     ``GET /api/v1/orders/{id}`` over 1,000 orders                        vs  anchor ``GET /orders/{id}``

The orders to submit are copies of one order created and uploaded through the API, written straight
into the shop's database (row + history), so each submit meets a fresh FILE_UPLOADED order. The ratio is
shop req/s / anchor req/s (medians over the rounds). After each shop run the bench waits until the
shop's relay has published the outbox rows the run left ("drain s"), so that backlog does not load
the machine during the next run. cpu ms/req: CPU per request of each process (the shop's counted until
its relay drained, so work a lagging relay leaves for later is not missed); cpu ratio = anchor's / shop's,
steadier than the req/s ratio on a shared machine; writes/req: the shop's write system calls per
request (bench/support.py ``write_calls``). ``--pg-socket DIR``: shop (``ALEX_PG_SOCKET_DIR``) and anchor both
reach PostgreSQL by its Unix socket. ``--profile DIR`` records the shop process with
py-spy during its first run of each endpoint (``DIR/<endpoint>.folded``, py-spy's raw format) and
prints where its CPU went (bench/pyspy_shares.py). Everything the run made is dropped at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyspy_shares  # noqa: E402
import support  # noqa: E402
from support import AnchorApp, Children, WrkResult  # noqa: E402

HEADER = ("endpoint", "req/s", "p50 ms", "p99 ms", "errors", "drain s", "anchor req/s", "anchor p50", "anchor p99",
          "ratio", "cpu ms/req", "anchor cpu", "cpu ratio", "writes/req")
WIDTHS = (-8, 9, 8, 8, 7, 8, 13, 11, 11, 7, 11, 11, 10, 11)


@dataclass
class Case:
    name: str
    shop_method: str
    shop_path: str
    anchor_method: str
    anchor_path: str


CASES = {
    "create": Case("create", "POST", "/api/v1/orders", "POST", "/orders"),
    "submit": Case("submit", "POST", "/api/v1/orders/{id}/submit", "POST", "/orders"),
    "get": Case("get", "GET", "/api/v1/orders/{id}", "GET", "/orders/{id}"),
}


def cpu_columns(costs: dict[str, list[tuple[float, float]]]) -> tuple[str, str, str, str]:
    """Shop and anchor CPU ms per request (the shop's including its relay's drain afterwards), their
    ratio (anchor / shop: what the req/s ratio would be if CPU were all that counted) and the shop's
    write system calls per request (its socket writes: responses, PostgreSQL, RabbitMQ, Redis)."""
    shop = support.median([c[0] for c in costs["shop"]])
    anchor = support.median([c[0] for c in costs["anchor"]])
    writes = support.median([c[1] for c in costs["shop"]])
    return f"{shop:.3f}", f"{anchor:.3f}", f"{anchor / shop:.3f}" if shop else "-", f"{writes:.1f}"


def run(args: argparse.Namespace) -> int:
    endpoints = [e for e in args.endpoints.split(",") if e]
    unknown = set(endpoints) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown endpoints: {', '.join(sorted(unknown))}")
    print(support.machine_line())
    print(f"# wrk -t{args.threads} -c{args.connections} -d{args.duration:.0f}s, {args.rounds} round(s); "
          f"shop: 1 process, throttling off; anchor: FastAPI + asyncpg, 1 statement per request", flush=True)
    with support.workdir("bench-api") as tmp:
        samples: dict[str, dict[str, list[WrkResult]]] = {e: {"shop": [], "anchor": []} for e in endpoints}
        drains: dict[str, list[float]] = {e: [] for e in endpoints}
        # CPU ms and write calls per request of each run, the shop's counted until its relay drained
        costs: dict[str, dict[str, list[tuple[float, float]]]] = {e: {"shop": [], "anchor": []} for e in endpoints}
        with support.sandbox("bench-api") as settings:
            children = Children(tmp / "logs")
            anchor = AnchorApp(settings, children, socket_dir=args.pg_socket)
            try:
                anchor.start()
                shop = support.start_shop(settings, children,
                                          **({"ALEX_PG_SOCKET_DIR": args.pg_socket} if args.pg_socket else {}))
                shop_pid = children.processes["shop"].pid
                key = support.partner_key(settings)
                auth = {"X-API-Key": key}
                json_headers = {**auth, "Content-Type": "application/json"}
                body = b'{"alloy": "gold_585"}'
                template = support.uploaded_order(shop, key, support.ring_stl("small"))
                per_round = args.submit_orders
                submit_ids = (support.clone_orders(settings, template, per_round * args.rounds)
                              if "submit" in endpoints else [])
                get_ids = support.ids_file(tmp, "get", support.clone_orders(settings, template, 1000))
                anchor_ids = support.ids_file(tmp, "anchor-get", support.anchor_rows(anchor, 1000))
                print(f"# load average before measuring {support.loadavg():.2f}", flush=True)

                def drive(side: str, case: Case, round_index: int, profile: Path | None) -> WrkResult:
                    options: dict[str, object] = {"duration": args.duration, "connections": args.connections,
                                                  "threads": args.threads}
                    if side == "anchor":
                        url, method, path = anchor.url, case.anchor_method, case.anchor_path
                        if method == "POST":
                            options.update(headers=json_headers, body=body)
                        else:
                            options.update(ids_file=anchor_ids)
                    else:
                        url, method, path = shop, case.shop_method, case.shop_path
                        if case.name == "create":
                            options.update(headers=json_headers, body=body,
                                           idempotency_prefix=f"bench-{uuid.uuid4().hex[:8]}")
                        elif case.name == "submit":
                            ids = submit_ids[round_index * per_round:(round_index + 1) * per_round]
                            options.update(headers=auth, ids_file=support.ids_file(tmp, f"submit-{round_index}", ids))
                        else:
                            options.update(headers=auth, ids_file=get_ids)
                    recorder = None
                    if profile is not None:
                        recorder = subprocess.Popen(
                            [pyspy_shares.py_spy(), "record", "--pid", str(shop_pid), "--rate", "250",
                             "--format", "raw", "--duration", str(max(int(args.duration) - 1, 1)),
                             "--nonblocking", "-o", str(profile)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    try:
                        return support.wrk(url, method=method, path=path, **options)  # type: ignore[arg-type]
                    finally:
                        if recorder is not None:
                            recorder.wait(timeout=60)

                if args.warmup > 0:  # connections, prepared statements and caches of both servers
                    for side in ("anchor", "shop"):
                        support.wrk(anchor.url if side == "anchor" else shop, duration=args.warmup, connections=4,
                                    threads=1, method="GET", path="/orders/{id}" if side == "anchor"
                                    else "/api/v1/orders/{id}", headers=auth,
                                    ids_file=anchor_ids if side == "anchor" else get_ids)
                for round_index in range(args.rounds):
                    sides = ("anchor", "shop") if round_index % 2 == 0 else ("shop", "anchor")
                    for name in endpoints:
                        for side in sides:
                            profile = (args.profile / f"{name}.folded"
                                       if args.profile is not None and side == "shop" and round_index == 0 else None)
                            pid = shop_pid if side == "shop" else children.processes["anchor"].pid
                            cpu, writes = support.cpu_seconds(pid), support.write_calls(pid)
                            result = drive(side, CASES[name], round_index, profile)
                            samples[name][side].append(result)
                            if side == "shop":  # the relay's backlog must not load the next run
                                drains[name].append(support.drain_outbox(settings))
                            served = max(result.requests, 1)
                            costs[name][side].append(((support.cpu_seconds(pid) - cpu) * 1000 / served,
                                                      (support.write_calls(pid) - writes) / served))
                submitted = 0
                if "submit" in endpoints:
                    submitted = sum(r.requests for r in samples["submit"]["shop"])
                print(f"# load average after measuring {support.loadavg():.2f}")
            finally:
                children.stop_all()
                anchor.drop()
        rows = []
        for name in endpoints:
            shop_runs, anchor_runs = samples[name]["shop"], samples[name]["anchor"]
            rate = support.median([r.rate for r in shop_runs])
            anchor_rate = support.median([r.rate for r in anchor_runs])
            rows.append((name, rate, support.median([r.p50_ms for r in shop_runs]),
                         support.median([r.p99_ms for r in shop_runs]), sum(r.errors for r in shop_runs),
                         f"{support.median(drains[name]):.1f}", anchor_rate,
                         support.median([r.p50_ms for r in anchor_runs]),
                         support.median([r.p99_ms for r in anchor_runs]),
                         f"{rate / anchor_rate:.3f}" if anchor_rate else "-",
                         *cpu_columns(costs[name])))
        print()
        support.print_table(HEADER, WIDTHS, rows)
        if "submit" in endpoints and submitted > args.submit_orders * args.rounds:
            print(f"# note: {submitted} submits over {args.submit_orders * args.rounds} prepared orders: "
                  "the later ones re-submitted (a no-op); raise --submit-orders")
        if args.profile is not None:
            for name in endpoints:
                path = args.profile / f"{name}.folded"
                if path.exists():
                    print(f"\n# {name}: where the shop process's CPU went (py-spy samples)")
                    pyspy_shares.report(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="anchor/shop pairs per endpoint (medians)")
    parser.add_argument("--endpoints", default="create,submit,get")
    parser.add_argument("--submit-orders", type=int, default=20000, help="orders ready to submit, per round")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per server")
    parser.add_argument("--profile", type=Path, help="record the shop with py-spy into this directory")
    parser.add_argument("--pg-socket", metavar="DIR",
                        help="shop and anchor reach PostgreSQL by its Unix socket in DIR (e.g. /var/run/postgresql)")
    parser.add_argument("--smoke", action="store_true", help="1-second runs, 4 connections (for the test suite)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.connections, args.rounds, args.submit_orders, args.warmup = 1.0, 4, 1, 300, 0.0
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    support.stop_on_sigterm()
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

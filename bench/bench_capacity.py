"""Closed-loop capacity of one shop process: create → upload (small ring STL) → submit, orders per second,
beside the anchor app doing the same three requests with the same bodies in the same run.

Run: .venv/bin/python bench/bench_capacity.py [--duration 15] [--clients 16] [--rounds 1] [--pg-socket DIR]
     [--smoke]

Starts, in a sandbox of its own, one shop process (``alexandrite serve shop``: relay, consumer and
background loops as deployed; throttling off; submit backpressure off, as no mes runs) and the anchor
(bench/anchors/anchor_app.py: INSERT / UPDATE with the upload's sha256 / UPDATE, its own database).
``--clients`` loops each run one order after another through the three requests (a partner's
``X-API-Key``, a new ``Idempotency-Key`` per create, the 2,112-triangle ring as multipart) for
``--duration`` seconds; an order counts when its submit was accepted. The client is plain asyncio
streams with pre-built requests (tests/chaos/loadgen.py), light enough to share the two cores.
``cpu %`` is the server process's CPU over the run (100 = one core). After each shop run the bench waits
until the shop's relay has published what the run left in the outbox. ``--pg-socket DIR``: both servers
reach PostgreSQL by its Unix socket. Everything is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import support  # noqa: E402
from support import AnchorApp, Children  # noqa: E402

from tests.chaos.loadgen import Connections  # noqa: E402

HEADER = ("server", "orders/s", "create p50", "upload p50", "submit p50", "order p99 ms", "errors", "cpu %", "ratio")
WIDTHS = (-7, 9, 11, 11, 11, 13, 7, 6, 7)


@dataclass
class Paths:
    create: str
    upload: str  # with {id}
    submit: str  # with {id}


SHOP = Paths("/api/v1/orders", "/api/v1/orders/{id}/model", "/api/v1/orders/{id}/submit")
ANCHOR = Paths("/orders", "/orders/{id}/model", "/orders/{id}/submit")


@dataclass
class Outcome:
    orders: int = 0
    errors: int = 0
    seconds: float = 0.0
    steps: dict[str, list[float]] = field(default_factory=lambda: {"create": [], "upload": [], "submit": []})
    orders_ms: list[float] = field(default_factory=list)


def _request(method: str, path: str, host: bytes, headers: list[bytes], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + host, b"Content-Length: " + str(len(body)).encode(),
             *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def closed_loop(url: str, paths: Paths, key: str, model: bytes, clients: int, duration: float) -> Outcome:
    parts = urlsplit(url)
    host = parts.netloc.encode()
    auth = [b"X-API-Key: " + key.encode()]
    upload_body, upload_type = support.multipart(model)
    create_body = b'{"alloy": "gold_585"}'
    outcome = Outcome()
    prefix = uuid.uuid4().hex[:8]
    stop_at = time.monotonic() + duration

    async def client(index: int) -> None:
        connections = Connections(parts.hostname or "127.0.0.1", parts.port or 80)
        sent = 0
        try:
            while time.monotonic() < stop_at:
                sent += 1
                began = time.perf_counter()
                steps = [
                    ("create", _request("POST", paths.create, host, [*auth, b"Content-Type: application/json",
                                        f"Idempotency-Key: {prefix}-{index}-{sent}".encode()], create_body)),
                    ("upload", None), ("submit", None)]
                order_id = ""
                ok = True
                for name, prepared in steps:
                    if name == "upload":
                        prepared = _request("PUT", paths.upload.format(id=order_id), host,
                                            [*auth, f"Content-Type: {upload_type}".encode()], upload_body)
                    elif name == "submit":
                        prepared = _request("POST", paths.submit.format(id=order_id), host, auth)
                    assert prepared is not None
                    step_began = time.perf_counter()
                    try:
                        status, _, body = await asyncio.wait_for(connections.exchange(prepared), 60)
                    except (TimeoutError, OSError, asyncio.IncompleteReadError) as error:
                        outcome.errors += 1
                        print(f"# {name}: {type(error).__name__}", file=sys.stderr)
                        ok = False
                        break
                    outcome.steps[name].append((time.perf_counter() - step_began) * 1000)
                    if status >= 300:
                        outcome.errors += 1
                        ok = False
                        break
                    if name == "create":
                        order_id = json.loads(body)["id"]
                if ok:
                    outcome.orders += 1
                    outcome.orders_ms.append((time.perf_counter() - began) * 1000)
        finally:
            connections.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    outcome.seconds = time.perf_counter() - started
    return outcome


def measure(url: str, paths: Paths, key: str, model: bytes, clients: int, duration: float,
            pid: int) -> tuple[Outcome, float]:
    cpu_before, wall_before = support.cpu_seconds(pid), time.monotonic()
    outcome = asyncio.run(closed_loop(url, paths, key, model, clients, duration))
    cpu = (support.cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before) * 100
    return outcome, cpu


def run(args: argparse.Namespace) -> int:
    model = support.ring_stl("small")
    print(support.machine_line())
    print(f"# closed loop, {args.clients} clients x {args.duration:.0f} s, {args.rounds} round(s); "
          f"model {support.stl_triangles(model):,} triangles ({len(model) / 1000:.0f} kB)", flush=True)
    with support.workdir("bench-capacity") as tmp:
        results: dict[str, list[tuple[Outcome, float]]] = {"anchor": [], "shop": []}
        with support.sandbox("bench-capacity") as settings:
            children = Children(tmp / "logs")
            anchor = AnchorApp(settings, children, socket_dir=args.pg_socket)
            try:
                anchor.start()
                shop = support.start_shop(settings, children,
                                          **({"ALEX_PG_SOCKET_DIR": args.pg_socket} if args.pg_socket else {}))
                key = support.partner_key(settings)
                targets = {"anchor": (anchor.url, ANCHOR, children.processes["anchor"].pid),
                           "shop": (shop, SHOP, children.processes["shop"].pid)}
                if args.warmup > 0:
                    for url, paths, pid in targets.values():
                        measure(url, paths, key, model, 2, args.warmup, pid)
                print(f"# load average before measuring {support.loadavg():.2f}", flush=True)
                for round_index in range(args.rounds):
                    order = ("anchor", "shop") if round_index % 2 == 0 else ("shop", "anchor")
                    for side in order:
                        url, paths, pid = targets[side]
                        results[side].append(measure(url, paths, key, model, args.clients, args.duration, pid))
                        if side == "shop":  # the relay's backlog must not load the anchor's run
                            support.drain_outbox(settings)
                print(f"# load average after measuring {support.loadavg():.2f}")
            finally:
                children.stop_all()
                anchor.drop()
        rates = {side: support.median([o.orders / o.seconds for o, _ in runs]) for side, runs in results.items()}
        rows = []
        for side in ("shop", "anchor"):
            runs = results[side]
            steps = {name: [v for o, _ in runs for v in o.steps[name]] for name in ("create", "upload", "submit")}
            orders_ms = [v for o, _ in runs for v in o.orders_ms]
            rows.append((side, rates[side], support.percentile(steps["create"], 50),
                         support.percentile(steps["upload"], 50), support.percentile(steps["submit"], 50),
                         support.percentile(orders_ms, 99), sum(o.errors for o, _ in runs),
                         support.median([c for _, c in runs]),
                         f"{rates[side] / rates['anchor']:.3f}" if rates["anchor"] else "-"))
        print()
        support.print_table(HEADER, WIDTHS, rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per run")
    parser.add_argument("--clients", type=int, default=16, help="closed-loop clients (orders in flight)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--pg-socket", metavar="DIR",
                        help="shop and anchor reach PostgreSQL by its Unix socket in DIR (e.g. /var/run/postgresql)")
    parser.add_argument("--smoke", action="store_true", help="2-second runs, 2 clients (for the test suite)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.clients, args.rounds, args.warmup = 2.0, 2, 1, 0.0
    support.stop_on_sigterm()
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

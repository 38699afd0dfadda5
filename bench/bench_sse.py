"""Watching orders: server-sent event streams against polling, on one shop process, in one run.

Run: .venv/bin/python bench/bench_sse.py [--watchers 1000] [--seconds 20] [--rate 25] [--interval 2] [--smoke]

Starts one shop process in a sandbox of its own and clones ``--watchers`` submitted partner orders. Then,
for each variant, one watcher per order for ``--seconds`` while orders move (``--rate`` status changes a
second, applied the way the shop's consumer applies production's events: the same handler, committed,
then announced to the shop's Redis stream):

- ``sse``: each watcher holds ``GET /api/v1/orders/{id}/events`` open;
- ``polling`` (the anchor): each watcher asks ``GET /api/v1/orders/{id}`` every ``--interval`` seconds
  (what the order page did every 2 s; production, which the poll asks for the queue position, is not
  running here, so its share of a poll's cost is missing and the polling figures are on the low side).

A first variant, ``none``, runs the same flow with nobody watching: "watching s" is each variant's CPU
beyond it (the relay and the event handler cost the same in every variant), and the polling/SSE ratio is
taken on that. It prints the shop's CPU (user + system, all threads, from ``/proc``) over the window, the memory an open
stream costs (shop RSS with every stream open minus before, per watcher), and the delivery time: from just
before a change's transaction starts to the watcher seeing the new status (p50/p95). The watchers use a
minimal HTTP/1.1 client on asyncio streams, so the load generator costs little beside the server on a
shared machine. Everything is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import support  # noqa: E402
from support import Children  # noqa: E402

from alexandrite.contracts.events import StatusChanged, status_envelope  # noqa: E402
from alexandrite.contracts.order_status import OrderStatus  # noqa: E402
from alexandrite.kit.db import Database  # noqa: E402
from alexandrite.kit.live.announce import Announcer, stream_key  # noqa: E402
from alexandrite.kit.messaging.consumer import Delivery  # noqa: E402
from alexandrite.kit.redis_clients import redis_client  # noqa: E402
from alexandrite.kit.settings import Settings  # noqa: E402
from alexandrite.shop.consumers import handle_event  # noqa: E402

HEADER = ("variant", "watchers", "changes", "polls/s", "cpu s", "watching s", "% of a core", "MB/watcher", "p50 ms",
          "p95 ms", "seen", "polling/sse cpu", "at full poll rate")
WIDTHS = (-8, 8, 7, 7, 7, 10, 11, 10, 8, 8, 9, 15, 17)
S = OrderStatus
STEPS = {S.SUBMITTED: (S.PRICE_CALCULATING, 4), S.PRICE_CALCULATING: (S.PRICE_CALCULATED, 5)}


@dataclass
class Tally:
    started: dict[tuple[str, str], float] = field(default_factory=dict)  # (order, status) -> before its commit
    delays: list[float] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)
    requests: int = 0  # polls answered while measuring
    measuring: bool = False

    def saw(self, order_id: str, status: str) -> None:
        key = (order_id, status)
        began = self.started.get(key)
        if began is not None and key not in self.seen:
            self.seen.add(key)
            self.delays.append((time.perf_counter() - began) * 1000)


async def _head(reader: asyncio.StreamReader) -> dict[str, str]:
    status = await reader.readline()
    if not status.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"answer {status!r}")
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def _request(path: str, key: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\nX-API-Key: {key}\r\n{extra}\r\n".encode()


async def watch(host: str, port: int, key: str, order_id: str, tally: Tally, ready: asyncio.Event,
                counter: list[int], total: int, stop: asyncio.Event) -> None:
    """One open event stream (chunked), read until ``stop``."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(_request(f"/api/v1/orders/{order_id}/events", key, "Accept: text/event-stream\r\n"))
        await _head(reader)
        buffer = b""
        opened = False
        while not stop.is_set():
            size_line = await reader.readline()
            if not size_line:
                return
            size = int(size_line.strip() or b"0", 16)
            if size == 0:
                return
            buffer += await reader.readexactly(size + 2)
            buffer = buffer.replace(b"\r\n", b"")  # the chunk's own CRLF; events end in a blank line
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if line.startswith(b"data: "):
                        order = json.loads(line[6:])
                        if not opened:
                            opened = True
                            counter[0] += 1
                            if counter[0] == total:
                                ready.set()
                        tally.saw(order["id"], order["status"])
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


async def poll(host: str, port: int, key: str, order_id: str, tally: Tally, interval: float,
               stop: asyncio.Event) -> None:
    """Asks for the order every ``interval`` seconds on one keep-alive connection."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await asyncio.sleep(random.uniform(0, interval))
        while not stop.is_set():
            began = time.monotonic()
            writer.write(_request(f"/api/v1/orders/{order_id}", key))
            headers = await _head(reader)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            tally.requests += tally.measuring
            tally.saw(order_id, json.loads(body)["status"])
            await asyncio.sleep(max(interval - (time.monotonic() - began), 0.0))
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


async def flow(settings: Settings, orders: list[str], statuses: dict[str, S], rate: float, tally: Tally,
               stop: asyncio.Event) -> int:
    """Moves orders one step each, ``rate`` a second, as the shop's consumer would; returns how many."""
    db = Database(settings.database_url("shop"), pool_size=2)
    redis = redis_client(settings)
    db.order_listeners.append(Announcer(redis, stream_key(settings.redis.prefix, "shop"), 10000))
    moved = 0
    try:
        queue = [o for o in orders if statuses[o] in STEPS]
        random.shuffle(queue)
        next_at = time.monotonic()
        for order_id in queue:
            if stop.is_set():
                break
            await asyncio.sleep(max(next_at - time.monotonic(), 0.0))
            next_at += 1 / rate
            target, seq = STEPS[statuses[order_id]]
            envelope = status_envelope(producer="mes", order_id=uuid.UUID(order_id), seq=seq, change=StatusChanged(
                status=target, previous_status=statuses[order_id], actor="mes:pricing",
                **({"progress": {"queue_position": 3, "eta_seconds": 40}} if target is S.PRICE_CALCULATING
                   else {"quote": {"total": "100.00", "currency": "EUR"}})))
            tally.started[(order_id, target.value)] = time.perf_counter()
            await handle_event(db, Delivery(body=envelope.model_dump_json().encode(), headers={},
                                            routing_key=envelope.type, message_id=str(envelope.event_id),
                                            attempt=0, redelivered=False))
            statuses[order_id] = target
            moved += 1
    finally:
        await db.dispose()
        await redis.aclose()
    return moved


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def variant(name: str, url: str, pid: int, key: str, settings: Settings, orders: list[str],
                  statuses: dict[str, S], args: argparse.Namespace) -> dict[str, object]:
    host, port = url.removeprefix("http://").split(":")
    tally, stop, ready = Tally(), asyncio.Event(), asyncio.Event()
    counter = [0]
    rss_before = rss_mb(pid)
    watchers: list[asyncio.Task[None]] = []
    if name == "sse":
        watchers = [asyncio.create_task(watch(host, int(port), key, o, tally, ready, counter, len(orders), stop))
                    for o in orders]
        await asyncio.wait_for(ready.wait(), 120)
    elif name == "polling":
        watchers = [asyncio.create_task(poll(host, int(port), key, o, tally, args.interval, stop)) for o in orders]
        await asyncio.sleep(args.interval)  # every poller under way
    per_watcher = (rss_mb(pid) - rss_before) / len(orders) if name == "sse" else None
    cpu_before, began = support.cpu_seconds(pid), time.monotonic()
    tally.measuring = True
    halt = asyncio.Event()
    mover = asyncio.create_task(flow(settings, orders, statuses, args.rate, tally, halt))
    await asyncio.sleep(args.seconds)
    halt.set()
    tally.measuring = False
    cpu = support.cpu_seconds(pid) - cpu_before
    wall = time.monotonic() - began
    moved = await mover
    await asyncio.sleep(args.interval + 0.5)  # the last changes reach the pollers too (not measured for CPU)
    stop.set()
    for task in watchers:
        task.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    return {"variant": name, "watchers": len(orders), "changes": moved, "cpu": cpu, "share": cpu / wall * 100,
            "mb": per_watcher, "p50": support.percentile(tally.delays, 50) if tally.delays else None,
            "p95": support.percentile(tally.delays, 95) if tally.delays else None,
            "seen": f"{len(tally.seen)}/{moved}" if watchers else "-", "rps": tally.requests / wall,
            "nominal": len(orders) / args.interval, "watchers_n": len(watchers)}


def run(args: argparse.Namespace) -> int:
    print(support.machine_line())
    print(f"# {args.watchers} watchers, {args.seconds:.0f} s per variant, {args.rate:g} changes/s, "
          f"polling every {args.interval:g} s", flush=True)
    with support.workdir("bench-sse") as tmp, support.sandbox("bench-sse") as settings:
        children = Children(tmp / "logs")
        try:
            url = support.start_shop(settings, children, ALEX_LIVE_MAX_STREAMS=str(args.watchers * 2),
                                     ALEX_LIVE_MAX_STREAMS_PER_CLIENT=str(args.watchers * 2),
                                     ALEX_MAX_IN_FLIGHT_REQUESTS="4096",
                                     ALEX_MES_URL=f"http://127.0.0.1:{support.free_port()}",
                                     ALEX_RUN_CONSUMER="false", ALEX_RUN_WEBHOOKS="false")
            pid = children.processes["shop"].pid
            key = support.partner_key(settings)
            template = support.uploaded_order(url, key, support.ring_stl())
            import httpx

            httpx.post(f"{url}/api/v1/orders/{template}/submit", headers={"X-API-Key": key},
                       timeout=30).raise_for_status()
            orders = support.clone_orders(settings, template, args.watchers)
            statuses = dict.fromkeys(orders, S.SUBMITTED)
            results = [asyncio.run(variant(name, url, pid, key, settings, orders, statuses, args))
                       for name in ("none", "sse", "polling")]
        finally:
            children.stop_all()
    none, sse, polling = results
    # What watching costs: the variant's CPU beyond the same flow with nobody watching (relay, handlers).
    for r in results:
        r["watching"] = max(r["cpu"] - none["cpu"], 0.0)  # type: ignore[operator]
    ratio = polling["watching"] / sse["watching"] if sse["watching"] else float("inf")  # type: ignore[operator]
    # On a busy machine the pollers may not reach one request per interval each: scaled to that rate,
    # polling's CPU grows with the requests it did not get to make (SSE's does not depend on it).
    shortfall = polling["nominal"] / polling["rps"] if polling["rps"] else 1.0  # type: ignore[operator]
    rows = []
    for r in results:
        rows.append((r["variant"], r["watchers_n"], r["changes"], f"{r['rps']:.0f}", f"{r['cpu']:.2f}",
                     f"{r['watching']:.2f}",
                     f"{r['share']:.1f}", f"{r['mb']:.3f}" if r["mb"] is not None else "-",
                     f"{r['p50']:.0f}" if r["p50"] is not None else "-",
                     f"{r['p95']:.0f}" if r["p95"] is not None else "-", r["seen"],
                     f"{ratio:.1f}" if r is sse else ("1.0 (anchor)" if r is polling else "-"),
                     f"{ratio * max(shortfall, 1.0):.1f}" if r is sse else
                     (f"{polling['nominal']:.0f} polls/s" if r is polling else "-")))
    print()
    support.print_table(HEADER, WIDTHS, rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per variant")
    parser.add_argument("--rate", type=float, default=25.0, help="status changes a second while measuring")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between one poller's requests")
    parser.add_argument("--smoke", action="store_true", help="20 watchers, 2 s per variant (for the test suite)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.watchers, args.seconds, args.rate = 20, 2.0, 5.0
    support.stop_on_sigterm()
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

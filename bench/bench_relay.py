"""The outbox relay alone: CPU per message and messages per second, beside a bare confirmed publish + ack loop.

Run: .venv/bin/python bench/bench_relay.py [--messages 3000] [--batch-sizes 10,200] [--rounds 3] [--smoke]

In a sandbox of its own (the shop's database migrated with the project's code, a vhost, the platform's
topology, one queue bound to every event so that each message is routed), per round and batch size:
``--messages`` outbox rows are committed in one unit of work, then one ``OutboxRelay`` (the service's
class, on uvloop as the services run it) publishes them with ``publish_once`` until none is left. The
figures are this process's CPU per message (user + system) and messages per second while publishing.
The anchor, in the same round: ``bench/anchors/bare_amqp.py`` (the same number of persistent messages
published with confirms, 100 in flight, to a quorum queue and consumed with manual acks), its CPU per
message counted the same way. ratio = relay messages/s ÷ bare messages/s; cpu x = relay CPU per message ÷
bare CPU per message. Medians over the rounds. Everything the run made is dropped at the end.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

import support  # noqa: E402
from anchors import bare_amqp  # noqa: E402

from alexandrite.contracts.events import EVENTS_EXCHANGE, Envelope  # noqa: E402
from alexandrite.kit.db import Database, UnitOfWork  # noqa: E402
from alexandrite.kit.messaging.relay import OutboxRelay  # noqa: E402
from alexandrite.kit.messaging.topology import setup_topology  # noqa: E402
from alexandrite.kit.settings import Settings  # noqa: E402

HEADER = ("batch", "messages", "relay msg/s", "relay cpu µs", "bare msg/s", "bare cpu µs", "ratio", "cpu x")
WIDTHS = (-6, 9, 12, 13, 11, 12, 7, 7)
SINK = "bench.relay.sink"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def relay_round(settings: Settings, messages: int, batch_size: int) -> tuple[float, float]:
    """(messages/s, CPU µs per message) of one relay publishing ``messages`` committed rows."""
    db = Database(settings.database_url("shop"), pool_size=2)
    connection = await aio_pika.connect(settings.broker.url)
    relay = OutboxRelay(db, settings.broker.url, service="shop", listen=False, batch_size=batch_size)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(SINK, durable=True)
        await queue.bind(await channel.get_exchange(EVENTS_EXCHANGE), routing_key="#")
        order_id = uuid.uuid4()
        async with UnitOfWork(db) as uow:  # one row first: pool, codecs and broker connection warm
            uow.emit(Envelope(type="bench.order.touched", order_id=order_id, seq=1, producer="bench", payload={}))
            await uow.commit()
        while await relay.publish_once():
            pass
        async with UnitOfWork(db) as uow:
            for seq in range(2, messages + 2):
                uow.emit(Envelope(type="bench.order.touched", order_id=order_id, seq=seq, producer="bench",
                                  payload={"n": seq}))
            await uow.commit()
        began_cpu, began = cpu_seconds(), time.perf_counter()
        published = 0
        while published < messages:
            done = await relay.publish_once()
            if not done:
                raise RuntimeError(f"the relay stopped at {published} of {messages} messages")
            published += done
        seconds, cpu = time.perf_counter() - began, cpu_seconds() - began_cpu
        await queue.purge()
        return published / seconds, cpu * 1e6 / published
    finally:
        await relay.close()
        await connection.close()
        await db.dispose()


def bare_round(messages: int) -> tuple[float, float]:
    began_cpu = cpu_seconds()
    result = bare_amqp.measure(messages)
    return result.messages / result.seconds, (cpu_seconds() - began_cpu) * 1e6 / result.messages


def run(args: argparse.Namespace) -> int:
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    print(support.machine_line())
    print(f"# {args.messages} messages per run, {args.rounds} round(s), batch sizes {batch_sizes}; "
          f"anchor: bare confirmed publish + ack, the same number of messages", flush=True)
    relay: dict[int, list[tuple[float, float]]] = {b: [] for b in batch_sizes}
    bare: list[tuple[float, float]] = []
    with support.sandbox("bench-relay") as settings:
        uvloop.run(setup_topology(settings))
        for round_index in range(args.rounds):
            bare.append(bare_round(args.messages))
            for batch_size in batch_sizes:
                relay[batch_size].append(uvloop.run(relay_round(settings, args.messages, batch_size)))
            print(f"# round {round_index + 1}: bare {bare[-1][0]:,.0f} msg/s; relay "
                  + ", ".join(f"batch {b} {relay[b][-1][0]:,.0f} msg/s {relay[b][-1][1]:.0f} µs" for b in batch_sizes),
                  flush=True)
    bare_rate = support.median([r[0] for r in bare])
    bare_cpu = support.median([r[1] for r in bare])
    rows = []
    for batch_size in batch_sizes:
        rate = support.median([r[0] for r in relay[batch_size]])
        cpu = support.median([r[1] for r in relay[batch_size]])
        rows.append((batch_size, args.messages, rate, f"{cpu:.0f}", bare_rate, f"{bare_cpu:.0f}",
                     f"{rate / bare_rate:.2f}", f"{cpu / bare_cpu:.2f}"))
    print()
    support.print_table(HEADER, WIDTHS, rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--batch-sizes", default="10,200")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="200 messages, one round")
    args = parser.parse_args(argv)
    if args.smoke:
        args.messages, args.rounds = 200, 1
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

"""Broker frames written in one loop turn leave in one socket write; the relay gathers rows between batches.

The writer is tested on a real loopback socket (what arrives, in what order, in how many transport
writes), the relay on the real broker (a batch of publishes leaves in a few writes, every message with
the properties aio-pika gave it before), the gathering pause on the relay's own loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from sqlalchemy import select

from alexandrite.contracts.events import EVENTS_EXCHANGE, Envelope
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.loops import poll_until_stopped
from alexandrite.kit.messaging.coalesced_writes import (
    FLUSH_BYTES,
    CoalescedStreamWriter,
    CoalescedTcpTransport,
    WriteCounts,
)
from alexandrite.kit.messaging.connection import connect
from alexandrite.kit.messaging.relay import OutboxRelay
from alexandrite.kit.messaging.tables import OUTBOX
from alexandrite.kit.messaging.topology import declare_consumer_queue
from alexandrite.kit.settings import Settings
from bench.pgwire import CountingProxy


class Sink:
    """A loopback TCP server that keeps every byte it receives."""

    def __init__(self, hold_seconds: float = 0.0) -> None:
        self.received = bytearray()
        self.closed = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.hold_seconds = hold_seconds

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            self.received += chunk
        self.closed.set()
        writer.close()

    async def __aenter__(self) -> tuple[asyncio.StreamReader, CoalescedStreamWriter, WriteCounts]:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.create_connection(lambda: protocol, "127.0.0.1", port)
        counts = WriteCounts()
        return reader, CoalescedStreamWriter(transport, protocol, reader, loop, counts, self.hold_seconds), counts

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def until(self, size: int) -> bytes:
        for _ in range(500):
            if len(self.received) >= size:
                break
            await asyncio.sleep(0.01)
        return bytes(self.received)


async def test_writes_of_one_turn_leave_together_in_order() -> None:
    sink = Sink()
    async with sink as (_, writer, counts):
        chunks = [f"frame-{i:03d};".encode() for i in range(50)]
        for chunk in chunks:
            writer.write(chunk)
        await writer.drain()  # flow control only: what waits still leaves with the turn
        assert (counts.writes, counts.flushes) == (50, 0) and writer.waiting_bytes == sum(map(len, chunks))
        await asyncio.sleep(0)
        assert (counts.writes, counts.flushes) == (50, 1) and writer.waiting_bytes == 0
        writer.writelines([b"late-a;", b"late-b;"])  # a later turn: a write of its own
        expected = b"".join(chunks) + b"late-a;late-b;"
        assert await sink.until(len(expected)) == expected
        assert counts.flushes == 2
        writer.write(b"")  # nothing to send: nothing scheduled
        await asyncio.sleep(0)
        assert counts.flushes == 2


async def test_held_writes_of_several_turns_leave_together_in_order() -> None:
    """With a hold, writes of later loop turns join the first's (acks finishing one by one), and leave
    once the hold is over."""
    sink = Sink(hold_seconds=0.05)
    async with sink as (_, writer, counts):
        chunks = [f"ack-{i:02d};".encode() for i in range(10)]
        for chunk in chunks:
            writer.write(chunk)
            await asyncio.sleep(0)  # each in a turn of its own
        assert (counts.writes, counts.flushes) == (10, 0)
        expected = b"".join(chunks)
        assert await sink.until(len(expected)) == expected
        assert counts.flushes == 1


async def test_a_large_turn_is_sent_without_waiting_and_closing_sends_what_waits() -> None:
    sink = Sink()
    async with sink as (_, writer, counts):
        big = b"x" * (FLUSH_BYTES + 1)
        writer.write(big)
        assert counts.flushes == 1 and writer.waiting_bytes == 0  # over the bound: handed on at once
        writer.write(b"last words")
        writer.close()  # before the turn ends: sent, then closed
        await writer.wait_closed()
        await asyncio.wait_for(sink.closed.wait(), 10)
        assert bytes(sink.received) == big + b"last words"
        assert counts.flushes == 2


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url("shop"), pool_size=3)
    yield database
    await database.dispose()


async def test_connections_use_the_coalescing_transport_on_plain_amqp(settings: Settings) -> None:
    robust = await connect(settings.broker.url, robust=True)
    plain = await connect(settings.broker.url)
    try:
        for connection in (robust, plain):
            factory = connection.kwargs["transport_factory"]  # type: ignore[attr-defined]
            assert isinstance(factory, CoalescedTcpTransport)
            channel = await connection.channel()
            await channel.declare_queue(exclusive=True)  # a round trip through the coalescing writer
            assert factory.counts.flushes >= 3  # protocol header, handshake, channel, declare
    finally:
        await robust.close()
        await plain.close()


async def test_a_relay_batch_leaves_in_few_writes_with_every_property(db: Database, settings: Settings) -> None:
    order_id = uuid.uuid4()
    key = f"t{uuid.uuid4().hex[:6]}.order.touched"
    count = 40
    connection = await aio_pika.connect(settings.broker.url)
    async with connection:
        channel = await connection.channel()
        queue = await declare_consumer_queue(channel, f"test.{uuid.uuid4().hex[:8]}", settings.broker.retry_delays_ms)
        exchange = await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        await queue.bind(exchange, routing_key=key)
        relay = OutboxRelay(db, settings.broker.url, service="shop")
        try:
            async with UnitOfWork(db) as uow:  # one warm-up message: connection, channel and exchange ready
                uow.emit(Envelope(type=key, order_id=order_id, seq=1, producer="test", payload={"n": 1}))
                await uow.commit()
            assert await relay.publish_once() >= 1
            assert relay._connection is not None
            counts = relay._connection.kwargs["transport_factory"].counts  # type: ignore[attr-defined]
            async with UnitOfWork(db) as uow:
                for seq in range(2, count + 2):
                    uow.emit(Envelope(type=key, order_id=order_id, seq=seq, producer="test", payload={"n": seq}))
                await uow.commit()
            writes, flushes = counts.writes, counts.flushes
            published = 0
            while published < count:
                published += await relay.publish_once()
            # One frame set per publish; they start in waves of eight, each wave one socket write.
            assert counts.writes - writes == count
            assert counts.flushes - flushes <= count // 4
        finally:
            await relay.close()
        got = []
        for _ in range(500):
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                if len(got) == count + 1:
                    break
                await asyncio.sleep(0.02)
                continue
            got.append(message)
    assert [Envelope.model_validate_json(m.body).seq for m in got] == list(range(1, count + 2))
    for message in got:
        assert message.content_type == "application/json"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.type == key and message.routing_key == key
        assert message.message_id and uuid.UUID(message.message_id)
        assert message.headers["order_id"] == str(order_id) and message.headers["seq"] >= 1
    assert len({m.message_id for m in got}) == count + 1


async def test_after_work_the_loop_gathers_before_its_next_step_whatever_wakes_it() -> None:
    stop, wake = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    started: list[float] = []

    async def step() -> int:
        started.append(loop.time())
        if len(started) == 1:
            wake.set()  # work arrives while the first batch is out
            return 1
        stop.set()
        return 0

    await asyncio.wait_for(poll_until_stopped(stop, step, idle_seconds=30, error_event="test", wake=wake,
                                              gather_seconds=0.3), 10)
    assert len(started) == 2
    assert started[1] - started[0] >= 0.29  # the pause is kept although the wake-up came at once


async def test_a_relay_batch_is_three_round_trips_and_a_failed_publish_keeps_its_row(settings: Settings) -> None:
    """BEGIN, the claim, then the confirmed rows' delete and the commit in one simple query. A batch with
    an unroutable message marks that row (one more round trip) and deletes the others."""
    prefix, _, rest = settings.database_url("shop").rpartition("@")
    address, _, database = rest.partition("/")
    host, _, port = address.partition(":")
    proxy = await CountingProxy((host, int(port or 5432))).start()
    db = Database(f"{prefix}@127.0.0.1:{proxy.port}/{database}", pool_size=1)
    relay = OutboxRelay(db, settings.broker.url, service="shop", listen=False)
    order_id, lost = uuid.uuid4(), uuid.uuid4()
    key = f"t{uuid.uuid4().hex[:6]}.order.touched"
    connection = await aio_pika.connect(settings.broker.url)
    try:
        channel = await connection.channel()
        queue = await declare_consumer_queue(channel, f"test.{uuid.uuid4().hex[:8]}", settings.broker.retry_delays_ms)
        exchange = await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        await queue.bind(exchange, routing_key=key)

        async def emit(*envelopes: Envelope) -> None:
            async with UnitOfWork(db) as uow:
                for item in envelopes:
                    uow.emit(item)
                await uow.commit()

        await emit(Envelope(type=key, order_id=order_id, seq=1, producer="test", payload={}))
        while await relay.publish_once():  # warm-up: pool, codecs, broker connection
            pass
        await emit(*(Envelope(type=key, order_id=order_id, seq=seq, producer="test", payload={})
                     for seq in range(2, 7)))
        before = proxy.counts.copy()
        assert await relay.publish_once() == 5
        assert (proxy.counts - before).round_trips == 3
        before = proxy.counts.copy()
        assert await relay.publish_once() == 0
        assert (proxy.counts - before).round_trips == 3  # BEGIN, an empty claim, COMMIT

        trips = []
        for seq in (7, 8):  # the second time round: the failure's statement is prepared already
            await emit(Envelope(type=key, order_id=order_id, seq=seq, producer="test", payload={}),
                       Envelope(type=f"nobody.listens.{uuid.uuid4().hex[:6]}", order_id=lost, seq=seq,
                                producer="test", payload={}))
            before = proxy.counts.copy()
            assert await relay.publish_once() == 1
            trips.append((proxy.counts - before).round_trips)
            async with db.sessions() as session:
                left = (await session.execute(select(OUTBOX.c.order_id, OUTBOX.c.attempts).where(
                    OUTBOX.c.order_id.in_([order_id, lost])))).all()
                assert [(row.order_id, row.attempts) for row in left] == [(lost, 1)]
                await session.execute(OUTBOX.delete().where(OUTBOX.c.order_id == lost))
                await session.commit()
        assert trips[1] == 4
        got = []
        for _ in range(500):
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                if len(got) == 8:
                    break
                await asyncio.sleep(0.02)
                continue
            got.append(Envelope.model_validate_json(message.body).seq)
        assert got == list(range(1, 9))
    finally:
        await connection.close()
        await relay.close()
        await db.dispose()
        await proxy.close()

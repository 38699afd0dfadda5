"""Outbox, relay, consumer, retries, dead letters and in-order application, on the real broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from sqlalchemy import func, select, text

from alexandrite.contracts.events import EVENTS_EXCHANGE, Envelope
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.messaging.consumer import Consumer, Delivery, PermanentError
from alexandrite.kit.messaging.dlq import list_dead_letters, replay
from alexandrite.kit.messaging.relay import OutboxRelay
from alexandrite.kit.messaging.tables import INBOX, OUTBOX
from alexandrite.kit.messaging.topology import declare_consumer_queue
from alexandrite.kit.settings import Settings
from alexandrite.orders.sequencing import accept_in_order


def envelope(order_id: uuid.UUID, seq: int, kind: str = "test.order.touched") -> Envelope:
    return Envelope(type=kind, order_id=order_id, seq=seq, producer="test", payload={"n": seq})


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url("shop"), pool_size=3)
    yield database
    await database.dispose()


@pytest.fixture
async def channel(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(settings.broker.url)
    async with connection:
        yield await connection.channel()


async def bound_queue(channel: aio_pika.abc.AbstractChannel, settings: Settings, pattern: str) -> str:
    name = f"test.{uuid.uuid4().hex[:8]}"
    queue = await declare_consumer_queue(channel, name, settings.broker.retry_delays_ms)
    exchange = await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    await queue.bind(exchange, routing_key=pattern)
    return name


async def drain(channel: aio_pika.abc.AbstractChannel, queue_name: str, expected: int,
                timeout: float = 10) -> list[aio_pika.abc.AbstractIncomingMessage]:
    queue = await channel.get_queue(queue_name)
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(got) < expected and asyncio.get_running_loop().time() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        got.append(message)
    return got


async def outbox_count(db: Database, order_id: uuid.UUID) -> int:
    async with db.sessions() as session:
        return int((await session.execute(
            select(func.count()).select_from(OUTBOX).where(OUTBOX.c.order_id == order_id))).scalar_one())


async def test_events_leave_only_with_the_commit(db: Database, settings: Settings, channel) -> None:
    order_id = uuid.uuid4()
    key = f"t{uuid.uuid4().hex[:6]}.order.touched"
    queue_name = await bound_queue(channel, settings, key)
    async with UnitOfWork(db) as uow:
        uow.emit(envelope(order_id, 1, key))
        # leaving without commit: rolled back, nothing in the outbox
    assert await outbox_count(db, order_id) == 0

    async with UnitOfWork(db) as uow:
        uow.emit(envelope(order_id, 1, key))
        uow.emit(envelope(order_id, 2, key))
        await uow.commit()
    assert await outbox_count(db, order_id) == 2

    relay = OutboxRelay(db, settings.broker.url, service="shop")
    while await outbox_count(db, order_id):
        await relay.publish_once()
    await relay.close()
    messages = await drain(channel, queue_name, 2)
    received = sorted(Envelope.model_validate_json(m.body).seq for m in messages)
    assert received == [1, 2]
    assert all(m.headers["order_id"] == str(order_id) for m in messages)


async def test_relay_keeps_messages_while_the_broker_is_unreachable(db: Database, settings: Settings,
                                                                    channel) -> None:
    order_id = uuid.uuid4()
    key = f"t{uuid.uuid4().hex[:6]}.order.touched"
    queue_name = await bound_queue(channel, settings, key)
    async with UnitOfWork(db) as uow:
        uow.emit(envelope(order_id, 1, key))
        await uow.commit()
    broken = OutboxRelay(db, "amqp://guest:guest@127.0.0.1:1/", service="shop")
    with pytest.raises(Exception):
        await broken.publish_once()
    assert await outbox_count(db, order_id) == 1  # nothing lost

    relay = OutboxRelay(db, settings.broker.url, service="shop")
    while await outbox_count(db, order_id):
        await relay.publish_once()
    await relay.close()
    assert len(await drain(channel, queue_name, 1)) == 1


async def wait_listening(relay: OutboxRelay, timeout: float = 15) -> None:
    assert relay.wakeups is not None
    deadline = asyncio.get_running_loop().time() + timeout
    while not relay.wakeups.alive():
        assert asyncio.get_running_loop().time() < deadline, "the relay never listened"
        await asyncio.sleep(0.05)


async def test_relay_wakes_on_the_commit_and_listens_again_after_losing_its_connection(
        db: Database, settings: Settings, channel) -> None:
    """With a safety poll of ten minutes, only the notification of the commit can get a message out in
    time; a LISTEN connection killed by the server is opened again and heard from again."""
    order_id = uuid.uuid4()
    key = f"t{uuid.uuid4().hex[:6]}.order.touched"
    queue_name = await bound_queue(channel, settings, key)
    relay = OutboxRelay(db, settings.broker.url, service="shop", idle_seconds=600)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await wait_listening(relay)
        await asyncio.sleep(0.2)  # the first round (published what was there) is over: it sleeps now
        async with UnitOfWork(db) as uow:
            uow.emit(envelope(order_id, 1, key))
            await uow.commit()
        assert len(await drain(channel, queue_name, 1, timeout=30)) == 1

        assert relay.wakeups is not None and relay.wakeups._connection is not None
        pid = relay.wakeups._connection.get_server_pid()
        async with db.sessions() as session:
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        async with UnitOfWork(db) as uow:
            uow.emit(envelope(order_id, 2, key))
            await uow.commit()
        messages = await drain(channel, queue_name, 1, timeout=30)
        assert [Envelope.model_validate_json(m.body).seq for m in messages] == [2]
        await wait_listening(relay)
        assert relay.wakeups._connection.get_server_pid() != pid

        async with UnitOfWork(db) as uow:
            uow.emit(envelope(order_id, 3, key))
            await uow.commit()
        messages = await drain(channel, queue_name, 1, timeout=30)
        assert [Envelope.model_validate_json(m.body).seq for m in messages] == [3]
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    assert relay.wakeups is not None and not relay.wakeups.alive()


async def test_unroutable_message_stays_in_the_outbox(db: Database, settings: Settings) -> None:
    order_id = uuid.uuid4()
    async with UnitOfWork(db) as uow:
        uow.emit(envelope(order_id, 1, f"nobody.listens.{uuid.uuid4().hex[:6]}"))
        await uow.commit()
    relay = OutboxRelay(db, settings.broker.url, service="shop")
    with pytest.raises(RuntimeError):
        for _ in range(5):
            await relay.publish_once()
    await relay.close()
    assert await outbox_count(db, order_id) == 1
    async with db.sessions() as session:  # the failed attempt is recorded on the row, with its error
        attempts, last_error = (await session.execute(
            select(OUTBOX.c.attempts, OUTBOX.c.last_error).where(OUTBOX.c.order_id == order_id))).one()
    assert attempts >= 1 and last_error
    async with UnitOfWork(db) as uow:  # clean up so other tests' relays are not blocked
        await uow.session.execute(OUTBOX.delete().where(OUTBOX.c.order_id == order_id))
        await uow.commit()


async def publish(channel: aio_pika.abc.AbstractChannel, queue: str, body: bytes, message_id: str) -> None:
    await channel.default_exchange.publish(
        aio_pika.Message(body=body, message_id=message_id, headers={"event_type": "test"}), routing_key=queue)


async def run_consumer(consumer: Consumer, until, timeout: float = 15) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not until():
            assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_failures_are_retried_with_backoff_then_succeed(settings: Settings, channel) -> None:
    name = f"test.{uuid.uuid4().hex[:8]}"
    await declare_consumer_queue(channel, name, settings.broker.retry_delays_ms)
    attempts: list[int] = []

    async def flaky(delivery: Delivery) -> str:
        attempts.append(delivery.attempt)
        if delivery.attempt < 2:
            raise RuntimeError("database hiccup")
        return "ok"

    await publish(channel, name, b"{}", "m-1")
    await run_consumer(Consumer(settings.broker.url, name, flaky, retry_delays_ms=settings.broker.retry_delays_ms),
                       lambda: len(attempts) >= 3)
    assert attempts == [0, 1, 2]
    assert await list_dead_letters(settings.broker.url, [name]) == []


async def test_held_acks_leave_together_and_every_message_is_acked(settings: Settings, channel) -> None:
    """A consumer whose acks are held (several leave in one socket write: test_coalesced_writes.py): 40
    messages handled one by one, every one acked, none back in the queue once the consumer stopped."""
    name = f"test.{uuid.uuid4().hex[:8]}"
    await declare_consumer_queue(channel, name, settings.broker.retry_delays_ms)
    seen: list[str] = []

    async def handler(delivery: Delivery) -> str:
        await asyncio.sleep(0.002)  # each finishes in a loop turn of its own
        seen.append(delivery.message_id or "")
        return "ok"

    for i in range(40):
        await publish(channel, name, b"{}", f"held-{i}")
    consumer = Consumer(settings.broker.url, name, handler, prefetch=40, ack_hold_seconds=0.05)
    await run_consumer(consumer, lambda: len(seen) == 40)
    assert sorted(seen) == sorted(f"held-{i}" for i in range(40))
    queue = await channel.declare_queue(name, passive=True)
    assert queue.declaration_result.message_count == 0  # every ack reached the broker before the close


async def test_a_consumer_holds_more_deliveries_than_it_runs_handlers(settings: Settings, channel) -> None:
    """Deliveries waiting for a handler's place (or for their held ack to leave) keep a prefetch slot, not
    a handler's place: eight in hand at once, never more than two handled at once, every one acked."""
    name = f"test.{uuid.uuid4().hex[:8]}"
    await declare_consumer_queue(channel, name, settings.broker.retry_delays_ms)
    seen: list[str] = []
    most = {"running": 0, "in_hand": 0}

    async def handler(delivery: Delivery) -> str:
        most["running"] = max(most["running"], consumer.running)
        most["in_hand"] = max(most["in_hand"], consumer.in_flight)
        await asyncio.sleep(0.01)
        seen.append(delivery.message_id or "")
        return "ok"

    for i in range(8):
        await publish(channel, name, b"{}", f"slot-{i}")
    consumer = Consumer(settings.broker.url, name, handler, prefetch=8, concurrency=2, ack_hold_seconds=0.05)
    await run_consumer(consumer, lambda: len(seen) == 8)
    assert sorted(seen) == sorted(f"slot-{i}" for i in range(8))
    assert most == {"running": 2, "in_hand": 8} and consumer.running == 0
    queue = await channel.declare_queue(name, passive=True)
    assert queue.declaration_result.message_count == 0  # every held ack left before the close


async def test_poison_message_goes_to_dlq_and_replays(settings: Settings, channel) -> None:
    name = f"test.{uuid.uuid4().hex[:8]}"
    await declare_consumer_queue(channel, name, settings.broker.retry_delays_ms)
    seen: list[bytes] = []
    fixed = {"value": False}

    async def strict(delivery: Delivery) -> str:
        seen.append(delivery.body)
        if not fixed["value"]:
            raise PermanentError("payload does not match schema")
        return "ok"

    await publish(channel, name, b'{"bad": true}', "poison-1")
    await run_consumer(Consumer(settings.broker.url, name, strict), lambda: len(seen) >= 1)
    await asyncio.sleep(0.2)
    letters = await list_dead_letters(settings.broker.url, [name])
    assert [(letter.message_id, json.loads(letter.body)) for letter in letters] == [("poison-1", {"bad": True})]
    assert "payload does not match schema" in (letters[0].error or "")
    # listing does not consume: still there
    assert len(await list_dead_letters(settings.broker.url, [name])) == 1

    fixed["value"] = True  # the bug is fixed: replay
    assert await replay(settings.broker.url, [name], {"poison-1"}) == 1
    await run_consumer(Consumer(settings.broker.url, name, strict), lambda: len(seen) >= 2)
    assert seen == [b'{"bad": true}', b'{"bad": true}']
    assert await list_dead_letters(settings.broker.url, [name]) == []


async def test_exhausted_retries_end_in_the_dlq(settings: Settings, channel) -> None:
    name = f"test.{uuid.uuid4().hex[:8]}"
    delays = (50, 50)
    await declare_consumer_queue(channel, name, delays)
    calls: list[int] = []

    async def always_fails(delivery: Delivery) -> str:
        calls.append(delivery.attempt)
        raise RuntimeError("still broken")

    await publish(channel, name, b"{}", "doomed")
    await run_consumer(Consumer(settings.broker.url, name, always_fails, retry_delays_ms=delays),
                       lambda: len(calls) >= 3)
    await asyncio.sleep(0.3)
    letters = await list_dead_letters(settings.broker.url, [name])
    assert [letter.message_id for letter in letters] == ["doomed"]
    assert calls == [0, 1, 2]


async def test_unacked_message_is_redelivered_after_a_crash(settings: Settings) -> None:
    name = f"test.{uuid.uuid4().hex[:8]}"
    first = await aio_pika.connect(settings.broker.url)
    channel = await first.channel()
    await declare_consumer_queue(channel, name, settings.broker.retry_delays_ms)
    await publish(channel, name, b"job", "job-1")
    queue = await channel.get_queue(name)
    taken = None
    for _ in range(50):
        taken = await queue.get(no_ack=False, fail=False)
        if taken:
            break
        await asyncio.sleep(0.05)
    assert taken is not None and not taken.redelivered
    await first.close()  # the consumer dies before acking

    got: list[Delivery] = []

    async def handler(delivery: Delivery) -> str:
        got.append(delivery)
        return "ok"

    await run_consumer(Consumer(settings.broker.url, name, handler), lambda: len(got) == 1)
    assert got[0].body == b"job" and got[0].redelivered


async def test_in_order_application_parks_gaps_and_drops_duplicates(db: Database) -> None:
    order_id = uuid.uuid4()
    applied: list[int] = []
    state = {"seq": 0}

    async def current(_: uuid.UUID) -> int:
        return state["seq"]

    async def apply(env: Envelope) -> None:
        applied.append(env.seq)
        state["seq"] = env.seq

    events = {n: envelope(order_id, n) for n in range(1, 5)}
    outcomes = []
    for n in (1, 3, 4, 3, 2, 2):
        async with UnitOfWork(db) as uow:
            outcomes.append(await accept_in_order(uow.session, events[n], current_seq=current, apply=apply))
            await uow.commit()
    assert outcomes == ["ok", "deferred", "deferred", "duplicate", "ok", "duplicate"]
    assert applied == [1, 2, 3, 4]
    async with db.sessions() as session:
        pending = (await session.execute(select(func.count()).select_from(INBOX).where(
            INBOX.c.order_id == order_id, INBOX.c.applied_at.is_(None)))).scalar_one()
    assert pending == 0


async def test_rolled_back_application_is_not_marked_seen(db: Database) -> None:
    order_id = uuid.uuid4()
    event = envelope(order_id, 1)

    async def current(_: uuid.UUID) -> int:
        return 0

    async def broken(_: Envelope) -> None:
        raise RuntimeError("crash while applying")

    async with UnitOfWork(db) as uow:
        with pytest.raises(RuntimeError):
            await accept_in_order(uow.session, event, current_seq=current, apply=broken)
    applied: list[int] = []

    async def apply(env: Envelope) -> None:
        applied.append(env.seq)

    async with UnitOfWork(db) as uow:  # the redelivered event is applied, not taken for a duplicate
        assert await accept_in_order(uow.session, event, current_seq=current, apply=apply) == "ok"
        await uow.commit()
    assert applied == [1]


async def test_an_outage_does_not_use_up_attempts_or_dead_letter(settings: Settings, channel) -> None:
    from sqlalchemy.exc import OperationalError

    name = f"test.{uuid.uuid4().hex[:8]}"
    delays = (50, 50)
    await declare_consumer_queue(channel, name, delays)
    calls: list[int] = []

    async def database_down_for_a_while(delivery: Delivery) -> str:
        calls.append(delivery.attempt)
        if len(calls) <= 5:  # more failures than there are retry tiers
            raise OperationalError("SELECT 1", None, ConnectionRefusedError("database away"))
        return "ok"

    await publish(channel, name, b"{}", "patient")
    await run_consumer(Consumer(settings.broker.url, name, database_down_for_a_while, retry_delays_ms=delays),
                       lambda: len(calls) >= 6)
    await asyncio.sleep(0.3)
    assert await list_dead_letters(settings.broker.url, [name]) == []
    assert calls == [0] * 6  # the outage never counted against the message


async def test_a_commit_writes_all_its_messages_in_one_statement_and_wakes_the_relays(db: Database) -> None:
    """Events and plain messages (no order) reach the outbox with their headers as JSON, in one statement on
    the unit's own connection (no SQLAlchemy statement), and the relays' channel hears of it at the commit."""
    from sqlalchemy import event

    from alexandrite.kit.db import OutgoingMessage
    from alexandrite.kit.messaging.tables import OUTBOX_CHANNEL

    listener = await db.raw()
    heard: list[str] = []
    async with listener.acquire() as conn:
        def _heard(_conn: object, _pid: int, channel: str, _payload: str) -> None:
            heard.append(channel)

        await conn.add_listener(OUTBOX_CHANNEL, _heard)
        order_id, job_id = uuid.uuid4(), uuid.uuid4()
        through_sqlalchemy: list[str] = []

        def _seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            through_sqlalchemy.append(statement)

        event.listen(db.engine.sync_engine, "before_cursor_execute", _seen)
        try:
            async with UnitOfWork(db) as uow:
                uow.emit(envelope(order_id, 1))
                uow.send(OutgoingMessage(exchange="", routing_key="somewhere", body=b"\x00\x01 raw",
                                         headers={"nested": {"a": [1, 2.5, None]}, "n": 3}, message_id=job_id))
                await uow.commit()
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", _seen)
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.02)
        await conn.remove_listener(OUTBOX_CHANNEL, _heard)
    assert through_sqlalchemy == []
    assert heard == [OUTBOX_CHANNEL]
    async with db.sessions() as session:
        rows = (await session.execute(select(OUTBOX).where(OUTBOX.c.message_id.in_([job_id]))
                                      .union_all(select(OUTBOX).where(OUTBOX.c.order_id == order_id))
                                      )).all()
        plain, event_row = rows
        assert (plain.exchange, plain.routing_key, plain.body, plain.order_id) == ("", "somewhere", b"\x00\x01 raw",
                                                                                   None)
        assert plain.headers == {"nested": {"a": [1, 2.5, None]}, "n": 3}
        assert event_row.exchange == EVENTS_EXCHANGE and Envelope.model_validate_json(event_row.body).seq == 1
        assert event_row.headers["order_id"] == str(order_id) and event_row.headers["seq"] == 1
        await session.execute(OUTBOX.delete().where(OUTBOX.c.id.in_([plain.id, event_row.id])))
        await session.commit()


async def test_a_batch_leaves_what_was_confirmed_and_keeps_the_rest_with_its_error(
        db: Database, settings: Settings, channel) -> None:
    """One batch with an unroutable message between two routable ones: those two are published (with their
    headers) and deleted, the third stays with one attempt and its error; two relays at once publish every
    message once (the rows stay locked while they are published)."""
    order_id, lost = uuid.uuid4(), uuid.uuid4()
    key = f"t{uuid.uuid4().hex[:6]}.order.touched"
    queue_name = await bound_queue(channel, settings, key)
    async with UnitOfWork(db) as uow:
        uow.emit(envelope(order_id, 1, key))
        uow.emit(envelope(lost, 1, f"nobody.listens.{uuid.uuid4().hex[:6]}"))
        uow.emit(envelope(order_id, 2, key))
        await uow.commit()
    relay, other = (OutboxRelay(db, settings.broker.url, service="shop") for _ in range(2))
    try:
        assert await relay.publish_once() >= 2
        assert await outbox_count(db, order_id) == 0
        async with db.sessions() as session:
            attempts, last_error = (await session.execute(
                select(OUTBOX.c.attempts, OUTBOX.c.last_error).where(OUTBOX.c.order_id == lost))).one()
        assert attempts == 1 and "NO_ROUTE" in last_error.upper().replace(" ", "_")
        async with UnitOfWork(db) as uow:
            await uow.session.execute(OUTBOX.delete().where(OUTBOX.c.order_id == lost))
            for seq in range(3, 23):
                uow.emit(envelope(order_id, seq, key))
            await uow.commit()
        while await outbox_count(db, order_id):
            await asyncio.gather(relay.publish_once(), other.publish_once())
    finally:
        await relay.close()
        await other.close()
    messages = await drain(channel, queue_name, 22)
    assert sorted(Envelope.model_validate_json(m.body).seq for m in messages) == list(range(1, 23))
    assert all(m.headers["order_id"] == str(order_id) and m.message_id for m in messages)
    assert await drain(channel, queue_name, 1, timeout=1) == []

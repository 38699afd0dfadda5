"""Trace context rides the outbox: emitted in a request's span, published and consumed as its children."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import select

from alexandrite.contracts.events import EVENTS_EXCHANGE, Envelope
from alexandrite.kit.db import UnitOfWork
from alexandrite.kit.messaging.consumer import Consumer, Delivery
from alexandrite.kit.messaging.relay import OutboxRelay
from alexandrite.kit.messaging.tables import OUTBOX
from alexandrite.kit.settings import Settings
from alexandrite.kit.tracing import message_span, spans_possible, trace_headers, use_provider


def probe(kind: str, order_id: uuid.UUID) -> Envelope:
    return Envelope(type=f"tracetest.order.{kind}", order_id=order_id, seq=1, producer="tracetest", payload={})


async def test_one_trace_from_request_to_second_consumer(settings: Settings, db_factory) -> None:  # type: ignore[no-untyped-def]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    shop_db, mes_db = db_factory("shop"), db_factory("mes")
    order_id = uuid.uuid4()
    queues = {kind: f"tracetest.{kind}.{uuid.uuid4().hex[:8]}" for kind in ("first", "second")}
    connection = await aio_pika.connect(settings.broker.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        for kind, name in queues.items():
            queue = await channel.declare_queue(name, auto_delete=False)
            await queue.bind(exchange, routing_key=f"tracetest.order.{kind}")
        seen: dict[str, Delivery] = {}
        relays = {"shop": OutboxRelay(shop_db, settings.broker.url, service="shop"),
                  "mes": OutboxRelay(mes_db, settings.broker.url, service="mes")}
        done = asyncio.Event()

        async def first(delivery: Delivery) -> str:  # "mes": consumes, emits the next event
            seen["first"] = delivery
            async with UnitOfWork(mes_db) as uow:
                uow.emit(probe("second", order_id))
                await uow.commit()
            await relays["mes"].publish_once()
            return "ok"

        async def second(delivery: Delivery) -> str:  # "crm"
            seen["second"] = delivery
            done.set()
            return "ok"

        with use_provider(provider):
            stop = asyncio.Event()
            consumers = [Consumer(settings.broker.url, queues["first"], first),
                         Consumer(settings.broker.url, queues["second"], second)]
            tasks = [asyncio.create_task(c.run(stop)) for c in consumers]
            try:
                tracer = provider.get_tracer("test")
                with tracer.start_as_current_span("POST /api/v1/orders/{order_id}/submit", kind=SpanKind.SERVER):
                    root = trace_headers()["traceparent"]
                    async with UnitOfWork(shop_db) as uow:
                        uow.emit(probe("first", order_id))
                        await uow.commit()
                async with shop_db.sessions() as session:
                    row = (await session.execute(select(OUTBOX.c.headers, OUTBOX.c.body).where(
                        OUTBOX.c.order_id == order_id))).one()
                assert row.headers["traceparent"] == root  # stored at emit time, in the outbox row
                assert Envelope.model_validate_json(row.body).traceparent == root
                await relays["shop"].publish_once()
                await asyncio.wait_for(done.wait(), timeout=30)
            finally:
                stop.set()
                await asyncio.gather(*tasks)
                for relay in relays.values():
                    await relay.close()
        for name in queues.values():
            await channel.queue_delete(name)

    spans = exporter.get_finished_spans()
    trace_id = int(root.split("-")[1], 16)
    mine = [s for s in spans if s.context.trace_id == trace_id]
    by_name = {s.name: s for s in mine}
    assert set(by_name) >= {"POST /api/v1/orders/{order_id}/submit", "tracetest.order.first publish",
                            f"{queues['first']} process", "tracetest.order.second publish",
                            f"{queues['second']} process"}
    chain = ["POST /api/v1/orders/{order_id}/submit", "tracetest.order.first publish", f"{queues['first']} process",
             "tracetest.order.second publish", f"{queues['second']} process"]
    for parent, child in zip(chain, chain[1:], strict=False):
        assert by_name[child].parent.span_id == by_name[parent].context.span_id, (parent, child)
    assert by_name[f"{queues['second']} process"].kind is SpanKind.CONSUMER
    assert by_name[f"{queues['first']} process"].attributes["alexandrite.order_id"] == str(order_id)
    # The consumer saw the publish span's context in the message headers, not the emitting one.
    publish = by_name["tracetest.order.first publish"].context
    assert seen["first"].headers["traceparent"].split("-")[2] == format(publish.span_id, "016x")


def test_without_a_recording_span_nothing_is_added() -> None:
    assert trace_headers() == {}


@pytest.mark.parametrize("stored", [
    {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "vendor=x",
     "order_id": "o-1", "seq": 3},
    {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "seq": 1},
    {"order_id": "o-2"},
])
def test_without_tracing_a_producer_span_hands_the_stored_context_back(stored: dict[str, object]) -> None:
    """What lets the relay skip the span when tracing is off: the headers come out as they went in."""
    assert not spans_possible()
    headers = dict(stored)
    with message_span("x publish", SpanKind.PRODUCER, headers):
        headers.update(trace_headers())
    assert headers == stored
    with use_provider(TracerProvider()):
        assert spans_possible()  # a provider given: the relay records its span

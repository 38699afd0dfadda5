"""Several broker addresses: connect skips one that is down, and a robust connection that loses its
node moves on to the next address and resumes consuming there (real broker, behind the test's proxies:
each proxy stands for one node)."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest

from alexandrite.kit.messaging.connection import amqp_addresses, amqp_vhost, connect
from alexandrite.kit.settings import Settings
from tests.chaos.proxy import CuttableProxy
from tests.e2e.processes import free_port

pytestmark = pytest.mark.ha


def via(port: int, settings: Settings) -> str:
    return f"amqp://guest:guest@127.0.0.1:{port}/{amqp_vhost(settings.broker.url)}"


def test_addresses_are_split_on_commas() -> None:
    assert amqp_addresses(" amqp://a:1/v ,amqp://b:2/v,") == ["amqp://a:1/v", "amqp://b:2/v"]
    assert amqp_vhost("amqp://a:1/shop,amqp://b:2/shop") == "shop"
    assert amqp_vhost("amqp://a:1/") == "/"
    with pytest.raises(ValueError, match="no AMQP URL"):
        amqp_addresses(" , ")


async def test_connect_tries_every_address_until_one_answers(settings: Settings) -> None:
    dead = via(free_port(), settings)  # nothing listens there
    for robust in (False, True):
        for _ in range(2):  # whichever address the round robin starts at
            connection = await connect(f"{dead},{dead},{via(5672, settings)}", robust=robust, timeout=5)
            try:
                assert str(connection.url.port) == "5672"  # type: ignore[attr-defined]
            finally:
                await connection.close()
    with pytest.raises(ConnectionError):
        await connect(f"{dead},{dead}", timeout=5)


async def test_robust_connection_moves_to_the_next_address_and_keeps_consuming(settings: Settings) -> None:
    nodes = [CuttableProxy(5672).start(), CuttableProxy(5672).start()]
    queue_name = f"ha.test.{uuid.uuid4().hex[:8]}"
    try:
        connection = await connect(",".join(via(p.port, settings) for p in nodes), robust=True, timeout=5)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
            received: asyncio.Queue[bytes] = asyncio.Queue()

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                await message.ack()
                await received.put(message.body)

            await queue.consume(on_message)
            await channel.default_exchange.publish(aio_pika.Message(b"before"), routing_key=queue_name)
            assert await asyncio.wait_for(received.get(), 10) == b"before"

            first = connection.url.port
            lost = next(p for p in nodes if p.port == first)
            lost.cut()  # that node is gone: its connections drop, it refuses new ones
            for _ in range(100):
                if connection.connected.is_set() and connection.url.port != first:
                    break
                await asyncio.sleep(0.1)
            assert connection.url.port != first, "the connection stayed with the lost address"

            sender = await connect(via(5672, settings))
            async with sender:
                out = await sender.channel()
                await out.default_exchange.publish(aio_pika.Message(b"after"), routing_key=queue_name)

            async def after() -> None:  # "before" may come again: its ack can be lost with the node (at least once)
                while await received.get() != b"after":
                    pass

            await asyncio.wait_for(after(), 30)  # the consumer resumed on the other address
            await queue.delete(if_unused=False, if_empty=False)
    finally:
        for proxy in nodes:
            proxy.close()

"""Inspect and replay dead letters.

Listing takes the messages without acknowledging them and then closes the channel, so
every message goes back to its dead-letter queue untouched. Replay republishes a message
(attempt counter reset) to the queue it came from, waits for the broker's confirm, and only
then removes it from the dead-letter queue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aio_pika

from alexandrite.kit.messaging.connection import connect
from alexandrite.kit.messaging.consumer import ATTEMPT_HEADER
from alexandrite.kit.messaging.topology import consumer_queues, dead_letter_queue


@dataclass
class DeadLetter:
    queue: str
    message_id: str | None
    type: str | None
    error: str | None
    order_id: str | None
    body: bytes

    def as_dict(self) -> dict[str, Any]:
        try:
            body: Any = json.loads(self.body)
        except ValueError:
            body = self.body[:200].decode("utf-8", "replace")
        return {"queue": self.queue, "message_id": self.message_id, "type": self.type, "error": self.error,
                "order_id": self.order_id, "body": body}


def _dead_letter(queue: str, message: aio_pika.abc.AbstractIncomingMessage) -> DeadLetter:
    headers = dict(message.headers or {})
    return DeadLetter(
        queue=queue,
        message_id=message.message_id,
        type=str(headers.get("event_type") or message.type or "") or None,
        error=str(headers.get("x-error") or headers.get("x-last-error") or "") or None,
        order_id=str(headers.get("order_id") or "") or None,
        body=message.body,
    )


async def list_dead_letters(amqp_url: str, queues: list[str] | None = None, limit: int = 1000) -> list[DeadLetter]:
    found: list[DeadLetter] = []
    connection = await connect(amqp_url, timeout=10)
    async with connection:
        for queue_name in queues or consumer_queues():
            channel = await connection.channel()
            queue = await channel.get_queue(dead_letter_queue(queue_name), ensure=True)
            while len(found) < limit:
                message = await queue.get(no_ack=False, fail=False, timeout=5)
                if message is None:
                    break
                found.append(_dead_letter(queue_name, message))
            await channel.close()  # unacknowledged: all go back to the dead-letter queue
    return found


async def replay(amqp_url: str, queues: list[str] | None = None, message_ids: set[str] | None = None) -> int:
    replayed = 0
    connection = await connect(amqp_url, timeout=10)
    async with connection:
        for queue_name in queues or consumer_queues():
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            queue = await channel.get_queue(dead_letter_queue(queue_name), ensure=True)
            while True:
                message = await queue.get(no_ack=False, fail=False, timeout=5)
                if message is None:
                    break
                if message_ids is not None and message.message_id not in message_ids:
                    continue  # left unacknowledged: returns to the DLQ when the channel closes
                headers = {k: v for k, v in dict(message.headers or {}).items()
                           if k not in (ATTEMPT_HEADER, "x-error", "x-last-error", "x-death")}
                headers["x-replayed"] = True
                await channel.default_exchange.publish(
                    aio_pika.Message(body=message.body, headers=headers, message_id=message.message_id,
                                     content_type=message.content_type, type=message.type,
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queue_name, mandatory=True, timeout=10,
                )
                await message.ack()
                replayed += 1
            await channel.close()
    return replayed

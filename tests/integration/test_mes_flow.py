"""The MES service wired up in-process: events in from the broker, outbox relay, a pricing worker.

Real PostgreSQL, RabbitMQ and storage. The shop's and CRM's events are published to the
events exchange; production's own events are captured from it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx
import numpy as np
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import delete

from alexandrite.contracts.events import EVENTS_EXCHANGE, Envelope, StatusChanged, status_envelope
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.db import Database
from alexandrite.kit.messaging.tables import OUTBOX
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.storage import LocalStorage
from alexandrite.kit.tokens import issue_token
from alexandrite.mes.app import create_app
from alexandrite.mes.worker import run_worker
from alexandrite.models3d.rings import ring
from alexandrite.models3d.writers import to_binary_stl

S = OrderStatus


@pytest.fixture
async def broker(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(settings.broker.url)
    async with connection:
        yield await connection.channel(publisher_confirms=True)


async def publish(channel: aio_pika.abc.AbstractChannel, envelope: Envelope) -> None:
    exchange = await channel.get_exchange(EVENTS_EXCHANGE)
    await exchange.publish(
        aio_pika.Message(envelope.model_dump_json().encode(), message_id=str(envelope.event_id),
                         headers={"event_type": envelope.type}, content_type="application/json",
                         delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        routing_key=envelope.type, mandatory=True,
    )


async def poll(client: httpx.AsyncClient, url: str, headers: dict[str, str], status: str,
               timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(url, headers=headers)
        if response.status_code == 200 and response.json()["status"] == status:
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"{url}: still {response.status_code} {response.text[:300]}, wanted {status}")
        await asyncio.sleep(0.1)


async def test_an_order_flows_from_submission_to_shipping(settings: Settings, broker: aio_pika.abc.AbstractChannel,
                                                          ) -> None:
    # Earlier tests' outbox rows were checked where they were written; do not publish them here.
    db = Database(settings.database_url("mes"), pool_size=2)
    try:
        async with db.sessions() as session, session.begin():
            await session.execute(delete(OUTBOX))
    finally:
        await db.dispose()

    # Production's own events, as the shop and the CRM receive them.
    captured = await broker.declare_queue(exclusive=True)
    await captured.bind(EVENTS_EXCHANGE, routing_key="mes.order.*")

    triangles = np.asarray(ring(inner_diameter_mm=18.1, band_width_mm=3.0, thickness_mm=1.6, segments=64))
    data = to_binary_stl(triangles)
    key, digest = LocalStorage.model_key(data, "stl")
    await LocalStorage(settings.uploads.storage_dir).put(key, data)
    model = {"key": key, "filename": "band.stl", "format": "stl_binary", "triangles": len(triangles),
             "bytes": len(data), "sha256": digest}

    order_id = uuid.uuid4()
    t0 = datetime.now(UTC)
    actor = "customer:cust-flow"
    shop_steps = [
        StatusChanged(status=S.INITIATED, actor=actor, at=t0, alloy="platinum_950", created_at=t0,
                      owner={"kind": "partner", "id": "p-1", "name": "Partner Jewels"}),
        StatusChanged(status=S.FILE_UPLOADED, actor=actor, at=t0, model=model),
        StatusChanged(status=S.SUBMITTED, actor=actor, at=t0, model=model, alloy="platinum_950"),
    ]
    envelopes = [status_envelope(producer="shop", order_id=order_id, seq=seq, change=change)
                 for seq, change in enumerate(shop_steps, start=1)]
    operator = {"Authorization": "Bearer " + issue_token(settings, Principal(role="operator", subject="ivan", name="ivan"), 600)}
    url = f"/api/v1/production/orders/{order_id}"

    app = create_app(settings)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop, worker_name="flow-worker"))
    try:
        async with LifespanManager(app, startup_timeout=30, shutdown_timeout=40), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://mes.test"
        ) as client:
            for envelope in reversed(envelopes):  # newest first: production must restore the order
                await publish(broker, envelope)
            priced = await poll(client, url, operator, "PRICE_CALCULATED")
            assert priced["quote"]["volume_mm3"] > 0 and priced["pricing_jobs"][0]["worker"] == "flow-worker"
            assert priced["owner"] == {"kind": "partner", "name": "Partner Jewels"}

            await publish(broker, status_envelope(producer="crm", order_id=order_id, seq=6, change=StatusChanged(
                status=S.MANUFACTURING_APPROVED, previous_status=S.PRICE_CALCULATED, actor="seller:bob",
                quote=priced["quote"], alloy="platinum_950")))
            await poll(client, url, operator, "MANUFACTURING_APPROVED")
            dashboard = (await client.get("/api/v1/production/orders", headers=operator, params={"limit": 200})).json()
            assert str(order_id) in [i["id"] for i in dashboard["items"]]

            for action in ("take", "complete", "package"):
                assert (await client.post(f"{url}/{action}", headers=operator)).status_code == 200
            shipped = await client.post(f"{url}/ship", headers=operator,
                                        json={"tracking_number": "TRK-FLOW-1", "carrier": "La Poste"})
            assert shipped.status_code == 200 and shipped.json()["status"] == "SHIPPED"

            seen: dict[int, Envelope] = {}
            deadline = time.monotonic() + 30
            while len(seen) < 6 and time.monotonic() < deadline:
                message = await captured.get(no_ack=True, fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                envelope = Envelope.model_validate_json(message.body)
                if envelope.order_id == order_id:
                    seen[envelope.seq] = envelope
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=30)

    assert [(seq, seen[seq].type) for seq in sorted(seen)] == [
        (4, "mes.order.price_calculating"), (5, "mes.order.price_calculated"),
        (7, "mes.order.manufacturing_started"), (8, "mes.order.manufacturing_completed"),
        (9, "mes.order.packaging"), (10, "mes.order.shipped")]
    assert seen[4].payload["progress"]["queue_position"] >= 1
    assert seen[5].payload["quote"]["volume_mm3"] == priced["quote"]["volume_mm3"]
    assert seen[10].payload["tracking_number"] == "TRK-FLOW-1"

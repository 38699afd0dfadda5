"""Orders brought into MES the way it happens live: the shop's and CRM's events, the service's handlers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from alexandrite.contracts.events import Envelope, StatusChanged, status_envelope
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.db import Database
from alexandrite.kit.messaging.consumer import Delivery
from alexandrite.mes.consumers import handle_event
from alexandrite.mes.pricing import jobs
from alexandrite.mes.progress import QueueEstimate
from alexandrite.mes.tables import pricing_jobs

S = OrderStatus
MODEL = {"key": "models/ab/abc.stl", "filename": "ring.stl", "format": "stl_binary", "triangles": 1280,
         "bytes": 64084, "sha256": "ab" * 32}
QUOTE = {"total": 812.4, "currency": "EUR", "volume_mm3": 310.2, "surface_mm2": 880.0, "metal_mass_g": 4.8,
         "breakdown": {"metal": 600.0}, "pricing_version": "2025-01"}


async def feed(db: Database, envelope: Envelope) -> str:
    return await handle_event(db, Delivery(body=envelope.model_dump_json().encode(), headers={},
                                           routing_key=envelope.type, message_id=None, attempt=0,
                                           redelivered=False), QueueEstimate())


async def submitted_order(db: Database, *, created_at: datetime | None = None) -> uuid.UUID:
    """An order the shop submitted: production has queued it for pricing (PRICE_CALCULATING, seq 4)."""
    order_id = uuid.uuid4()
    t0 = created_at or datetime.now(UTC)
    actor = "customer:cust-9"
    steps = [
        StatusChanged(status=S.INITIATED, actor=actor, at=t0, alloy="silver_925", created_at=t0,
                      owner={"kind": "customer", "id": "cust-9", "name": "Ada Buyer"}),
        StatusChanged(status=S.FILE_UPLOADED, actor=actor, at=t0, model=MODEL),
        StatusChanged(status=S.SUBMITTED, actor=actor, at=t0, model=MODEL, alloy="silver_925"),
    ]
    for seq, change in enumerate(steps, start=1):
        assert await feed(db, status_envelope(producer="shop", order_id=order_id, seq=seq, change=change)) == "ok"
    return order_id


async def priced_order(db: Database, **kwargs: Any) -> uuid.UUID:
    order_id = await submitted_order(db, **kwargs)
    async with db.sessions() as session:
        job_id = (await session.execute(select(pricing_jobs.c.id).where(pricing_jobs.c.order_id == order_id))).scalar_one()
    started = await jobs.begin_job(db, job_id, worker="w-api")
    assert isinstance(started, jobs.StartedJob)
    assert await jobs.finish_job(db, started, worker="w-api", duration_ms=40, quote=QUOTE) == "priced"
    return order_id


async def approved_order(db: Database, **kwargs: Any) -> uuid.UUID:
    order_id = await priced_order(db, **kwargs)
    approve = status_envelope(producer="crm", order_id=order_id, seq=6, change=StatusChanged(
        status=S.MANUFACTURING_APPROVED, previous_status=S.PRICE_CALCULATED, actor="seller:bob", quote=QUOTE))
    assert await feed(db, approve) == "ok"
    return order_id

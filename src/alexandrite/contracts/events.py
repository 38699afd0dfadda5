"""Versioned event contracts shared by the services.

Every message on the bus is an :class:`Envelope`. Order status changes use the payload
:class:`StatusChanged` (type ``<producer>.order.<status in lower case>``, version 1).

Version 1 grows only by optional fields, so consumers of any release read every event:
``StatusChanged.confirm`` (SUBMITTED: what the customer confirmed, e.g. ``["scale"]``) and
``Failure.details`` (PRICE_CALCULATION_FAILED: the measurements behind the reason) were added so.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alexandrite.contracts.order_status import OrderStatus

EVENTS_EXCHANGE = "alexandrite.events"
STATUS_EVENT_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """What travels on the bus; ``seq`` orders the events of one order."""

    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str = Field(min_length=3, max_length=120)
    version: int = Field(default=1, ge=1)
    occurred_at: datetime = Field(default_factory=utcnow)
    order_id: uuid.UUID
    seq: int = Field(ge=1)
    producer: str
    correlation_id: str | None = None
    traceparent: str | None = None
    payload: dict[str, Any]


class ModelRef(BaseModel):
    key: str
    filename: str | None = None
    format: str
    triangles: int
    bytes: int
    sha256: str


class Progress(BaseModel):
    queue_position: int
    eta_seconds: float


class Failure(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None  # e.g. {"confirm": "scale", ...} or open edges' locations


class Party(BaseModel):
    """Who the order belongs to; no personal data beyond a display name."""

    kind: str  # "customer" | "partner"
    id: str
    name: str


class StatusChanged(BaseModel):
    status: OrderStatus
    previous_status: OrderStatus | None = None
    actor: str
    at: datetime = Field(default_factory=utcnow)
    alloy: str | None = None
    owner: Party | None = None
    created_at: datetime | None = None
    model: ModelRef | None = None
    progress: Progress | None = None
    quote: dict[str, Any] | None = None
    failure: Failure | None = None
    tracking_number: str | None = None
    carrier: str | None = None
    reason: str | None = None
    confirm: list[str] | None = None  # SUBMITTED: measurements the customer confirmed ("scale")

    @model_validator(mode="after")
    def _required_per_status(self) -> "StatusChanged":
        need = {
            OrderStatus.INITIATED: ("alloy", "owner", "created_at"),
            OrderStatus.FILE_UPLOADED: ("model",),
            OrderStatus.SUBMITTED: ("model", "alloy"),
            OrderStatus.PRICE_CALCULATED: ("quote",),
            OrderStatus.PRICE_CALCULATION_FAILED: ("failure",),
            OrderStatus.SHIPPED: ("tracking_number",),
        }.get(self.status, ())
        missing = [name for name in need if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{self.status} event needs {', '.join(missing)}")
        return self


def status_event_type(producer: str, status: OrderStatus) -> str:
    return f"{producer}.order.{OrderStatus(status).value.lower()}"


def status_envelope(
    *,
    producer: str,
    order_id: uuid.UUID,
    seq: int,
    change: StatusChanged,
    correlation_id: str | None = None,
    traceparent: str | None = None,
) -> Envelope:
    return Envelope(
        type=status_event_type(producer, change.status),
        version=STATUS_EVENT_VERSION,
        order_id=order_id,
        seq=seq,
        producer=producer,
        correlation_id=correlation_id,
        traceparent=traceparent,
        payload=change.model_dump(mode="json", exclude_none=True),
    )


def parse_status_change(envelope: Envelope) -> StatusChanged:
    return StatusChanged.model_validate(envelope.payload)


# --- Delay notices ------------------------------------------------------------------------------

ORDER_DELAYED_TYPE = "mes.order.delayed"
ORDER_DELAYED_VERSION = 1
DELIVERY_STAGE = "DELIVERY"  # the promised delivery, counted from the seller's approval


class OrderDelayed(BaseModel):
    """Payload of ``mes.order.delayed`` (v1): an order stayed in a stage longer than its SLA.

    Emitted once per order and stage by the MES SLA watchdog. ``seq`` of its envelope is the
    order's sequence number when the delay was found; it is not a status change and does not
    advance the sequence. The shop e-mails the customer; partner orders go to the partner's
    webhook. ``stage`` is a status name, or ``DELIVERY`` for the promised delivery date.
    """

    stage: str
    status: OrderStatus  # the order's status when the delay was found
    since: datetime  # when the order entered the stage (approval for DELIVERY)
    sla_seconds: float
    detected_at: datetime
    new_eta: datetime  # the new estimate for shipping
    owner_kind: str | None = None  # "customer" | "partner"


def order_delayed_envelope(*, order_id: uuid.UUID, seq: int, delay: OrderDelayed) -> Envelope:
    return Envelope(
        type=ORDER_DELAYED_TYPE,
        version=ORDER_DELAYED_VERSION,
        order_id=order_id,
        seq=max(seq, 1),
        producer="mes",
        payload=delay.model_dump(mode="json", exclude_none=True),
    )


def is_order_delayed(routing_key: str, headers: dict[str, Any]) -> bool:
    return str(headers.get("event_type") or routing_key) == ORDER_DELAYED_TYPE


def creation_columns(change: StatusChanged) -> dict[str, Any]:
    """Columns every projection takes from an order's INITIATED event (alloy, owner, creation time)."""
    if change.owner is None or change.created_at is None:  # the contract requires both
        raise ValueError("an INITIATED event needs owner and created_at")
    created_at = change.created_at
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return {
        "alloy": change.alloy,
        "owner_kind": change.owner.kind,
        "owner_id": change.owner.id,
        "owner_name": change.owner.name,
        "created_at": created_at,
    }

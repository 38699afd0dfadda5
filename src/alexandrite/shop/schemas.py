"""HTTP request and response bodies of the shop's public API v1."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from alexandrite.contracts.alloys import AlloyName
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.contracts.order_views import DelayNotice, ModelFacts, PricingFailure, PricingProgress, Quote

Alloy = AlloyName


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignUp(Strict):
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    password: str = Field(min_length=8, max_length=256)
    name: str = Field(min_length=1, max_length=120)


class SignIn(Strict):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=256)


class ChangePassword(Strict):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=8, max_length=256)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class CustomerOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str


class CreateOrder(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"alloy": "gold_585"}]})

    alloy: Alloy


class SubmitOrder(Strict):
    """Optional body of ``POST /orders/{id}/submit``: measurements the customer confirms are right."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"confirm": ["scale"]}]})

    confirm: list[Literal["scale"]] = Field(default_factory=list, max_length=5, description=(
        "'scale': the model's size or weight is unusual for its kind of piece (a pricing failure "
        "'scale_check' said so) and it is right: price it as it is"))


class CancelOrder(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "The customer changed "
                                                                                        "their mind."}]})

    reason: str | None = Field(default=None, max_length=500)


class InternalCancel(Strict):
    requested_by: Literal["shop", "crm"]
    actor: str = Field(min_length=1, max_length=200)
    reason: str | None = Field(default=None, max_length=500)


class HistoryEntry(BaseModel):
    status: OrderStatus
    at: datetime
    by: str = Field(description="Who or what made the change (a service, a person, a partner)")


_ORDER_EXAMPLE: dict[str, Any] = {
    "id": "0f9d3c1e-2b4a-4c6d-8e0f-1a2b3c4d5e6f", "status": "PRICE_CALCULATED", "alloy": "gold_585",
    "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:01:05Z",
    "history": [{"status": "INITIATED", "at": "2026-12-01T10:00:00Z", "by": "partner:acme"},
                {"status": "PRICE_CALCULATED", "at": "2026-12-01T10:01:05Z", "by": "mes"}],
    "progress": None, "quote": {"total": 412.85, "currency": "EUR"}, "failure": None,
    "model": {"key": "models/3f/3fa1c2e4b5d6.stl", "filename": "ring.stl", "format": "stl_binary", "triangles": 2304,
              "bytes": 115284, "sha256": "3fa1c2e4b5d6" + "0" * 52},
    "tracking_number": None, "carrier": None, "delay": None,
}


class OrderOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_ORDER_EXAMPLE]})

    id: uuid.UUID
    status: OrderStatus
    alloy: Alloy
    created_at: datetime
    updated_at: datetime
    history: list[HistoryEntry]
    progress: PricingProgress | None = Field(description="While PRICE_CALCULATING; null otherwise")
    quote: Quote | None = Field(description="Once PRICE_CALCULATED")
    failure: PricingFailure | None = Field(description="When PRICE_CALCULATION_FAILED")
    model: ModelFacts | None = Field(description="Once a model is attached")
    tracking_number: str | None = None
    carrier: str | None = None
    delay: DelayNotice | None = None


class OrderSummary(BaseModel):
    id: uuid.UUID
    status: OrderStatus
    alloy: Alloy
    created_at: datetime
    updated_at: datetime
    total: float | None = None
    currency: str | None = None


class OrderPage(BaseModel):
    items: list[OrderSummary]
    next_cursor: str | None


# --- partner webhooks ---------------------------------------------------------------------------

class WebhookIn(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"url": "https://partner.example/alexandrite"}]})

    url: str = Field(min_length=8, max_length=2000, description="http(s) URL that receives order events")


class WebhookRegistered(BaseModel):
    url: str
    secret: str = Field(description="HMAC-SHA256 signing secret; shown on every registration, keep it")
    signature_header: str
    timestamp_header: str


class WebhookOut(BaseModel):
    url: str | None
    deliveries: dict[str, int]


class WebhookDelivery(BaseModel):
    delivery_id: uuid.UUID
    partner: str
    order_id: uuid.UUID
    event_type: str
    state: Literal["pending", "delivered", "dead"]
    attempts: int
    last_status: int | None = Field(description="HTTP status the endpoint answered on the last attempt")
    last_error: str | None = Field(description='"unreachable" when the endpoint could not be reached, '
                                               '"no_endpoint" when none was registered')
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None


class WebhookDeliveryPage(BaseModel):
    items: list[WebhookDelivery]


class WebhookReplayIn(Strict):
    delivery_ids: list[uuid.UUID] | None = Field(default=None, max_length=1000)
    all: bool = False


class WebhookReplayOut(BaseModel):
    replayed: int

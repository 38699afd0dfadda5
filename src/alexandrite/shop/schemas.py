"""HTTP request and response bodies of the shop's public API v1."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from alexandrite.contracts.alloys import AlloyName

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
    alloy: Alloy


class SubmitOrder(Strict):
    """Optional body of ``POST /orders/{id}/submit``: measurements the customer confirms are right."""

    confirm: list[Literal["scale"]] = Field(default_factory=list, max_length=5, description=(
        "'scale': the model's size or weight is unusual for its kind of piece (a pricing failure "
        "'scale_check' said so) and it is right: price it as it is"))


class CancelOrder(Strict):
    reason: str | None = Field(default=None, max_length=500)


class InternalCancel(Strict):
    requested_by: Literal["shop", "crm"]
    actor: str = Field(min_length=1, max_length=200)
    reason: str | None = Field(default=None, max_length=500)


class HistoryEntry(BaseModel):
    status: str
    at: datetime
    by: str


class ProgressOut(BaseModel):
    queue_position: int
    eta_seconds: float


class FailureOut(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class DelayOut(BaseModel):
    """Production reported the order late: ``stage`` (a status, or DELIVERY) is past its SLA."""

    stage: str
    since: datetime
    sla_seconds: float
    detected_at: datetime
    new_eta: datetime


class OrderOut(BaseModel):
    id: uuid.UUID
    status: str
    alloy: str
    created_at: datetime
    updated_at: datetime
    history: list[HistoryEntry]
    progress: ProgressOut | None
    quote: dict[str, Any] | None
    failure: FailureOut | None
    model: dict[str, Any] | None
    tracking_number: str | None = None
    carrier: str | None = None
    delay: DelayOut | None = None


class OrderSummary(BaseModel):
    id: uuid.UUID
    status: str
    alloy: str
    created_at: datetime
    updated_at: datetime
    total: float | None = None
    currency: str | None = None


class OrderPage(BaseModel):
    items: list[OrderSummary]
    next_cursor: str | None


# --- partner webhooks ---------------------------------------------------------------------------

class WebhookIn(Strict):
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

"""HTTP request and response bodies of the CRM API (sellers, carriers, peers)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alexandrite.contracts.alloys import AlloyName
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.contracts.order_views import ModelFacts, PricingFailure, Quote


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reason(Strict):
    reason: str | None = Field(default=None, max_length=500)


class NoteIn(Strict):
    text: str = Field(min_length=1, max_length=2000)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the note is empty")
        return value


class InternalCancel(Strict):
    requested_by: Literal["shop", "crm"]
    actor: str = Field(min_length=1, max_length=200)
    reason: str | None = Field(default=None, max_length=500)


class CarrierEvent(BaseModel):
    # Carriers add fields of their own: ignore what we do not use.
    model_config = ConfigDict(extra="ignore")

    tracking_number: str = Field(min_length=1, max_length=100)
    event: str = Field(min_length=1, max_length=100)
    occurred_at: datetime

    @field_validator("tracking_number", "event")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class Owner(BaseModel):
    kind: str
    id: str
    name: str


class HistoryEntry(BaseModel):
    status: OrderStatus
    at: datetime
    by: str


class NoteOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    author: str
    text: str
    at: datetime


class OrderSummary(BaseModel):
    id: uuid.UUID
    status: OrderStatus
    alloy: AlloyName | None
    owner: Owner
    total: str | None = Field(description="Quoted total as a decimal string, e.g. \"1234.50\"")
    currency: str | None
    tracking_number: str | None
    created_at: datetime
    updated_at: datetime
    status_since: datetime


class OrderOut(OrderSummary):
    seq: int
    model: ModelFacts | None
    quote: Quote | None
    failure: PricingFailure | None
    carrier: str | None
    closed_reason: str | None
    cancel_reason: str | None
    history: list[HistoryEntry]
    notes: list[NoteOut] = Field(description="Newest first (the latest 200)")


class OrderPage(BaseModel):
    items: list[OrderSummary]
    next_cursor: str | None


class WaitingOrder(OrderSummary):
    sla_seconds: float | None = Field(description="The approval SLA (ALEX_SLA_SECONDS[\"PRICE_CALCULATED\"])")
    due_at: datetime | None = Field(description="status_since + sla_seconds")
    time_in_stage_seconds: int = Field(description="How long it has been waiting for approval")
    late_by_seconds: int = Field(description="How far past the approval SLA; 0 when on time")
    late: bool


class WaitingCounts(BaseModel):
    waiting: int
    late: int


class WaitingPage(BaseModel):
    items: list[WaitingOrder]
    next_cursor: str | None
    counts: WaitingCounts
    sla_seconds: float | None
    as_of: datetime


class StatusOut(BaseModel):
    id: uuid.UUID
    status: OrderStatus


class CarrierOrderOut(BaseModel):
    id: uuid.UUID
    status: OrderStatus


class CarrierAnswer(BaseModel):
    tracking_number: str
    event: str
    outcome: Literal["closed", "already_closed", "ignored"]
    orders: list[CarrierOrderOut]

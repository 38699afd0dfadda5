"""HTTP request and response bodies of the MES API (operators, peers)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alexandrite.contracts.alloys import AlloyName
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.contracts.order_views import ModelFacts, PricingFailure, PricingProgress, Quote
from alexandrite.mes.domain import TRACKING_NUMBER


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShipIn(Strict):
    tracking_number: str = Field(min_length=1, max_length=64, pattern=TRACKING_NUMBER.pattern,
                                 description="Letters, digits and dashes, 1 to 64 characters")
    carrier: str = Field(min_length=1, max_length=100)

    @field_validator("carrier")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class InternalCancel(Strict):
    requested_by: Literal["shop", "crm"]
    actor: str = Field(min_length=1, max_length=200)
    reason: str | None = Field(default=None, max_length=500)


ProgressOut = PricingProgress


class Owner(BaseModel):
    kind: str
    name: str


class HistoryEntry(BaseModel):
    status: OrderStatus
    at: datetime
    by: str


class PricingJobOut(BaseModel):
    id: uuid.UUID
    submit_seq: int
    state: str
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    worker: str | None
    duration_ms: int | None


class OrderSummary(BaseModel):
    id: uuid.UUID
    status: OrderStatus
    alloy: AlloyName | None
    owner: Owner
    operator: str | None = Field(description="Who took the order into work (actor)")
    total: float | str | None = Field(description="Quoted total")
    currency: str | None
    tracking_number: str | None
    created_at: datetime
    updated_at: datetime
    status_since: datetime = Field(description="When the order entered its current stage (status)")
    approved_at: datetime | None
    sla_seconds: float | None = Field(default=None, description="The current stage's SLA (ALEX_SLA_SECONDS)")
    due_at: datetime | None = Field(default=None, description="status_since + sla_seconds")
    time_in_stage_seconds: int | None = Field(default=None, description="Time in the current stage (board only)")
    late_by_seconds: int | None = Field(default=None, description="How far past the stage SLA; 0 when on time")
    late: bool | None = Field(default=None, description="Past the stage SLA")


class OrderOut(OrderSummary):
    seq: int
    model: ModelFacts | None
    quote: Quote | None
    failure: PricingFailure | None
    progress: ProgressOut | None
    carrier: str | None
    history: list[HistoryEntry]
    pricing_jobs: list[PricingJobOut]


class OrderPage(BaseModel):
    items: list[OrderSummary]
    next_cursor: str | None
    counts: dict[str, int] = Field(description="Orders in each in-work status")
    late_counts: dict[str, int] = Field(description="Of those, how many are past their stage SLA")
    as_of: datetime = Field(description="The instant the stage clocks were read at")


class StatusOut(BaseModel):
    id: uuid.UUID
    status: OrderStatus


class OrderProgressOut(BaseModel):
    status: OrderStatus
    progress: ProgressOut | None


class QueueOut(BaseModel):
    queued: int
    running: int
    workers: int | None = Field(description="Workers consuming the pricing queue; null when the broker "
                                            "cannot be asked")
    broker_ready_messages: int | None
    average_seconds: float = Field(description="Mean duration of the latest finished jobs")
    oldest_queued_seconds: float | None
    eta_seconds_for_new_job: float

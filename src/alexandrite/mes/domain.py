"""Production rules: pricing jobs, queue estimates, operator actions, projection values.

Pure functions and value objects only: no I/O, no web framework, no database.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from alexandrite.contracts.events import StatusChanged, creation_columns
from alexandrite.contracts.order_status import OrderStatus

SERVICE = "mes"
SYSTEM_ACTOR = "system:mes"
S = OrderStatus

# Services whose order events production applies (its own come back to nobody).
PRODUCERS = frozenset({"shop", "crm"})


# --- pricing jobs -------------------------------------------------------------------------------

class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PRICED = "priced"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_JOB_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})
FINAL_JOB_STATES = frozenset({JobState.PRICED, JobState.FAILED, JobState.CANCELLED})

JOB_MESSAGE_TYPE = "pricing.job"
AVERAGE_WINDOW = 50  # finished jobs whose mean duration predicts the next ones


def is_final(state: str) -> bool:
    return JobState(state) in FINAL_JOB_STATES


class PricingJobMessage(BaseModel):
    """The body of a message on the pricing queue. The database row stays the truth."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: uuid.UUID
    order_id: uuid.UUID
    submit_seq: int = Field(ge=1)
    enqueued_at: datetime


def worker_actor(worker: str) -> str:
    """How history records a pricing worker."""
    return f"system:pricing-worker:{worker}"


# --- queue estimates ----------------------------------------------------------------------------

def average_seconds(durations_ms: Iterable[int | float | None], default: float) -> float:
    """Mean duration in seconds of the given finished jobs; ``default`` when there are none."""
    values = [float(d) for d in durations_ms if d is not None and d >= 0]
    if not values:
        return float(default)
    return sum(values) / len(values) / 1000.0


def eta_seconds(position: int, average: float, consumers: int) -> float:
    """Seconds until a job at ``position`` (1 = next) is priced, ``consumers`` workers sharing the queue."""
    position = max(int(position), 1)
    average = max(float(average), 0.0)
    return round(position * average / max(1, int(consumers)), 1)


def remaining_seconds(average: float, elapsed: float) -> float:
    """A running job: what is left of an average job (never negative)."""
    return round(max(float(average) - max(float(elapsed), 0.0), 0.0), 1)


def progress(position: int, average: float, consumers: int, *, running_for: float | None = None) -> dict[str, Any]:
    """``{queue_position, eta_seconds}`` of a queued job, or of a running one (``running_for`` seconds)."""
    if running_for is not None:
        return {"queue_position": 1, "eta_seconds": remaining_seconds(average, running_for)}
    return {"queue_position": max(int(position), 1), "eta_seconds": eta_seconds(position, average, consumers)}


# --- operator actions ---------------------------------------------------------------------------

# action path segment -> the status it moves an order to
OPERATOR_ACTIONS: dict[str, OrderStatus] = {
    "take": S.MANUFACTURING_STARTED,
    "complete": S.MANUFACTURING_COMPLETED,
    "package": S.PACKAGING,
    "ship": S.SHIPPED,
}

TRACKING_NUMBER = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def valid_tracking_number(value: str) -> bool:
    return bool(TRACKING_NUMBER.fullmatch(value))


# --- projection ---------------------------------------------------------------------------------

def creation_values(change: StatusChanged) -> dict[str, Any]:
    """Columns of a new production order from its INITIATED event (production keeps no owner id)."""
    values = creation_columns(change)
    del values["owner_id"]
    return values


def projection_values(change: StatusChanged) -> dict[str, Any]:
    """Columns an event of another service updates besides the status."""
    values: dict[str, Any] = {}
    if change.alloy is not None:
        values["alloy"] = change.alloy
    if change.model is not None:
        values["model"] = change.model.model_dump(mode="json")
    status = change.status
    if status is S.FILE_UPLOADED:
        # A new model: an earlier quote or failure no longer applies.
        values.update(quote=None, failure=None, progress=None)
    elif status is S.MANUFACTURING_APPROVED:
        values["approved_at"] = change.at
        if change.quote is not None:
            values["quote"] = change.quote
    elif status is S.SHIPPED:
        values.update(tracking_number=change.tracking_number, carrier=change.carrier)
    elif status is S.CANCELLED:
        values["progress"] = None
    return values


def quote_summary(quote: dict[str, Any] | None) -> tuple[Any, str | None]:
    """(total, currency) of a stored quote, for lists."""
    if not quote:
        return None, None
    currency = quote.get("currency")
    return quote.get("total"), str(currency) if currency is not None else None

"""Per-stage SLA rules (pure): when a stage is overdue and what the new shipping estimate is.

A *stage* is a status the order sits in (its SLA is the longest it may stay there) or
``DELIVERY``: the promised delivery, counted from the seller's approval until SHIPPED.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from alexandrite.contracts.events import DELIVERY_STAGE
from alexandrite.contracts.order_status import OrderStatus

S = OrderStatus
# The path an order still has to go before it ships, used to re-estimate shipping.
PATH_TO_SHIPPING = (
    S.SUBMITTED, S.PRICE_CALCULATING, S.PRICE_CALCULATED, S.MANUFACTURING_APPROVED, S.MANUFACTURING_STARTED,
    S.MANUFACTURING_COMPLETED, S.PACKAGING,
)
# Statuses during which the promised delivery (from approval) runs.
DELIVERY_RUNS_IN = (S.MANUFACTURING_APPROVED, S.MANUFACTURING_STARTED, S.MANUFACTURING_COMPLETED, S.PACKAGING)


@dataclass(frozen=True)
class StageSlas:
    per_status: dict[str, float]
    delivery_seconds: float

    def for_stage(self, stage: str) -> float | None:
        if stage == DELIVERY_STAGE:
            return self.delivery_seconds
        return self.per_status.get(stage)

    def new_eta(self, status: str, now: datetime) -> datetime:
        """Shipping estimate for an order late in ``status``: one more SLA for the current
        stage (it is already late) plus the SLA of every stage still ahead of it."""
        seconds = self.per_status.get(status, 0.0)
        if status in PATH_TO_SHIPPING:
            ahead = PATH_TO_SHIPPING[PATH_TO_SHIPPING.index(S(status)) + 1:]
            seconds += sum(self.per_status.get(s.value, 0.0) for s in ahead)
        return now + timedelta(seconds=seconds)


def is_overdue(since: datetime, sla_seconds: float, now: datetime) -> bool:
    return (now - since).total_seconds() > sla_seconds

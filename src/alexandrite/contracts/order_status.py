"""The customer-visible order status model: one transition table for every service.

Each status has exactly one *owner*: the service allowed to make the next transition.
A request to change an order that another service owns is forwarded to that owner, so
an order has a single writer at any moment and its per-order sequence never forks.
"""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    INITIATED = "INITIATED"
    FILE_UPLOADED = "FILE_UPLOADED"
    SUBMITTED = "SUBMITTED"
    PRICE_CALCULATING = "PRICE_CALCULATING"
    PRICE_CALCULATED = "PRICE_CALCULATED"
    PRICE_CALCULATION_FAILED = "PRICE_CALCULATION_FAILED"
    MANUFACTURING_APPROVED = "MANUFACTURING_APPROVED"
    MANUFACTURING_STARTED = "MANUFACTURING_STARTED"
    MANUFACTURING_COMPLETED = "MANUFACTURING_COMPLETED"
    PACKAGING = "PACKAGING"
    SHIPPED = "SHIPPED"
    CLOSED = "CLOSED"
    CANCELLED = "CANCELLED"


S = OrderStatus

# (from, to) -> services whose users may ask for this transition.
TRANSITIONS: dict[tuple[OrderStatus, OrderStatus], frozenset[str]] = {
    (S.INITIATED, S.FILE_UPLOADED): frozenset({"shop"}),
    (S.FILE_UPLOADED, S.FILE_UPLOADED): frozenset({"shop"}),  # model replaced
    (S.FILE_UPLOADED, S.SUBMITTED): frozenset({"shop"}),
    (S.SUBMITTED, S.PRICE_CALCULATING): frozenset({"mes"}),
    (S.PRICE_CALCULATING, S.PRICE_CALCULATED): frozenset({"mes"}),
    (S.PRICE_CALCULATING, S.PRICE_CALCULATION_FAILED): frozenset({"mes"}),
    (S.PRICE_CALCULATION_FAILED, S.FILE_UPLOADED): frozenset({"shop"}),  # customer re-uploads
    # the failure asked the customer to confirm a measurement (an unusual scale) and they did
    (S.PRICE_CALCULATION_FAILED, S.SUBMITTED): frozenset({"shop"}),
    (S.PRICE_CALCULATED, S.MANUFACTURING_APPROVED): frozenset({"crm"}),
    (S.MANUFACTURING_APPROVED, S.MANUFACTURING_STARTED): frozenset({"mes"}),
    (S.MANUFACTURING_STARTED, S.MANUFACTURING_COMPLETED): frozenset({"mes"}),
    (S.MANUFACTURING_COMPLETED, S.PACKAGING): frozenset({"mes"}),
    (S.PACKAGING, S.SHIPPED): frozenset({"mes"}),
    (S.SHIPPED, S.CLOSED): frozenset({"crm"}),
}
CANCELLABLE = frozenset(
    {
        S.INITIATED,
        S.FILE_UPLOADED,
        S.SUBMITTED,
        S.PRICE_CALCULATING,
        S.PRICE_CALCULATED,
        S.PRICE_CALCULATION_FAILED,
        S.MANUFACTURING_APPROVED,
    }
)
for _status in CANCELLABLE:
    TRANSITIONS[(_status, S.CANCELLED)] = frozenset({"shop", "crm"})

TERMINAL = frozenset({S.CLOSED, S.CANCELLED})

OWNER: dict[OrderStatus, str] = {
    S.INITIATED: "shop",
    S.FILE_UPLOADED: "shop",
    S.PRICE_CALCULATION_FAILED: "shop",
    S.SUBMITTED: "mes",
    S.PRICE_CALCULATING: "mes",
    S.PRICE_CALCULATED: "crm",
    S.MANUFACTURING_APPROVED: "mes",
    S.MANUFACTURING_STARTED: "mes",
    S.MANUFACTURING_COMPLETED: "mes",
    S.PACKAGING: "mes",
    S.SHIPPED: "crm",
    S.CLOSED: "crm",
    S.CANCELLED: "shop",
}

# Statuses shown on the production dashboard ("in work").
IN_WORK = (
    S.MANUFACTURING_APPROVED,
    S.MANUFACTURING_STARTED,
    S.MANUFACTURING_COMPLETED,
    S.PACKAGING,
)


class IllegalTransition(Exception):
    """A status change the transition table does not allow."""

    code = "illegal_transition"

    def __init__(self, current: OrderStatus, target: OrderStatus, reason: str) -> None:
        self.current = current
        self.target = target
        super().__init__(reason)


def check_transition(current: OrderStatus, target: OrderStatus, requested_by: str) -> None:
    """Raise IllegalTransition unless ``requested_by`` may move an order from current to target."""
    current, target = OrderStatus(current), OrderStatus(target)
    allowed = TRANSITIONS.get((current, target))
    if allowed is None:
        if current in TERMINAL:
            why = f"the order is {current} and can no longer change"
        elif target is S.CANCELLED:
            why = f"the order is {current}: manufacturing has started, it can no longer be cancelled"
        else:
            why = f"an order cannot go from {current} to {target}"
        raise IllegalTransition(current, target, why)
    # The owner of the current status carries out any legal transition, also on behalf of
    # the service that asked (a customer's cancel forwarded to production, say).
    if requested_by not in allowed and requested_by != OWNER[current]:
        raise IllegalTransition(
            current, target, f"{requested_by} may not move an order from {current} to {target}"
        )


def is_allowed(current: OrderStatus, target: OrderStatus) -> bool:
    return (OrderStatus(current), OrderStatus(target)) in TRANSITIONS


def owner_of(status: OrderStatus) -> str:
    return OWNER[OrderStatus(status)]

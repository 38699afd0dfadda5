"""Read side of the order hot paths: one order in ONE statement, answered as pre-serialised JSON.

``GET /api/v1/orders/{id}`` used to cost eight round trips (the partner key in its own transaction,
then BEGIN, the order, its history, its delays, ROLLBACK) and ~3.7 ms of CPU through the ORM; here
the order row, its history and its delays come back from one SELECT on the raw pool (the history and
delays as arrays of rows), and the answer is built in plain Python and serialised by orjson. The
JSON is the same, field for field and byte for byte, as ``OrderOut`` would give (tests compare them).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from alexandrite.contracts.events import DELIVERY_STAGE
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.db import Database
from alexandrite.kit.peers import Peers
from alexandrite.shop.domain import Owner

# Columns the view and the writers need, then history and delays as arrays of anonymous rows.
ORDER_SQL = """
SELECT o.id, o.owner_kind, o.owner_id, o.status, o.seq, o.alloy, o.created_at, o.updated_at, o.status_since,
       o.model, o.quote, o.failure, o.progress, o.tracking_number, o.carrier,
       (SELECT array_agg(ROW(h.status, h.at, h.by) ORDER BY h.seq)
          FROM order_history h WHERE h.order_id = o.id) AS history,
       (SELECT array_agg(ROW(d.stage, d.since, d.sla_seconds, d.detected_at, d.new_eta) ORDER BY d.detected_at DESC)
          FROM order_delays d WHERE d.order_id = o.id) AS delays
  FROM orders o
 WHERE o.id = $1
"""

NO_DELAY_STATUSES = frozenset({"CLOSED", "CANCELLED"})


def owned(row: Any, owner: Owner | None) -> bool:
    """May ``owner`` see the order (None = staff/service: any order)? Someone else's is a missing one."""
    return owner is None or (row["owner_kind"] == owner.kind and str(row["owner_id"]) == owner.id)


async def fetch_order(db: Database, order_id: uuid.UUID, owner: Owner | None) -> dict[str, Any] | None:
    """The order's row (with ``history`` and ``delays``) if ``owner`` may see it; one statement."""
    row = await (await db.raw()).fetchrow(ORDER_SQL, order_id)
    if row is None or not owned(row, owner):
        return None
    return dict(row)


def live_progress(status: str, progress: dict[str, Any] | None, status_since: datetime,
                  now: datetime | None = None) -> dict[str, Any] | None:
    """Progress while pricing: the estimate given when pricing was queued, counted down."""
    if status != OrderStatus.PRICE_CALCULATING.value or not progress:
        return None
    now = now or datetime.now(UTC)
    elapsed = max((now - status_since).total_seconds(), 0.0)
    eta = float(progress.get("eta_seconds", 0.0))
    return {"queue_position": int(progress.get("queue_position", 0)),
            "eta_seconds": float(round(max(eta - elapsed, 0.0), 1))}


def current_delay(status: str, delays: list[tuple[Any, ...]] | None) -> dict[str, Any] | None:
    """The delay to show: the latest one of the current stage or of the delivery (delays newest first)."""
    if not delays or status in NO_DELAY_STATUSES:
        return None
    for stage, since, sla_seconds, detected_at, new_eta in delays:
        if stage == status or stage == DELIVERY_STAGE:
            return {"stage": stage, "since": since, "sla_seconds": float(sla_seconds), "detected_at": detected_at,
                    "new_eta": new_eta}
    return None


def _failure(failure: dict[str, Any] | None) -> dict[str, Any] | None:
    if failure is None:
        return None
    return {"code": failure["code"], "message": failure["message"], "details": failure.get("details")}


def view_of(row: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The order as the API shows it (``OrderOut``'s fields, in its order), from a row of :data:`ORDER_SQL`
    or one the writers built from what they wrote."""
    status = row["status"]
    return {
        "id": row["id"],
        "status": status,
        "alloy": row["alloy"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "history": [{"status": s, "at": at, "by": by} for s, at, by in row["history"] or ()],
        "progress": live_progress(status, row["progress"], row["status_since"], now),
        "quote": row["quote"],
        "failure": _failure(row["failure"]),
        "model": row["model"],
        "tracking_number": row["tracking_number"],
        "carrier": row["carrier"],
        "delay": current_delay(status, row["delays"]),
    }


def _other(value: Any) -> str:
    if isinstance(value, uuid.UUID):  # asyncpg's own UUID type (a subclass orjson does not take)
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def order_json(view: dict[str, Any]) -> bytes:
    """The view as the response body; UTC times end in ``Z`` as pydantic writes them."""
    return orjson.dumps(view, default=_other, option=orjson.OPT_UTC_Z)


async def order_view(db: Database, peers: Peers, order_id: uuid.UUID, owner: Owner | None, *,
                     live: bool = False) -> dict[str, Any] | None:
    """The order view; with ``live``, a priced-right-now queue position asked from production."""
    row = await fetch_order(db, order_id, owner)
    if row is None:
        return None
    view = view_of(row)
    if live and view["status"] == OrderStatus.PRICE_CALCULATING.value:
        # Production knows the queue right now; the estimate from the event is the fallback.
        answer = await peers.get_quick("mes", f"/internal/v1/orders/{order_id}/progress")
        progress = answer.get("progress") if answer else None
        if progress:
            view["progress"] = {"queue_position": int(progress["queue_position"]),
                                "eta_seconds": float(progress["eta_seconds"])}
    return view

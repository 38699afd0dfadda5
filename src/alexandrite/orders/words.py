"""What customers and staff read about orders: status words, the timeline, delay notices, errors in plain
words, and the page templates set up with them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.responses import RedirectResponse

from alexandrite.contracts.alloys import ALLOY_WORDS
from alexandrite.contracts.order_status import IllegalTransition, OrderStatus
from alexandrite.kit.errors import ApiError
from alexandrite.kit.web.render import Pages, when

STATUS_WORDS = {
    "INITIATED": "Order started",
    "FILE_UPLOADED": "Model uploaded",
    "SUBMITTED": "Submitted",
    "PRICE_CALCULATING": "Calculating the price",
    "PRICE_CALCULATED": "Price ready",
    "PRICE_CALCULATION_FAILED": "Could not be priced",
    "MANUFACTURING_APPROVED": "Approved for making",
    "MANUFACTURING_STARTED": "Being made",
    "MANUFACTURING_COMPLETED": "Made",
    "PACKAGING": "Being packed",
    "SHIPPED": "Shipped",
    "CLOSED": "Delivered and closed",
    "CANCELLED": "Cancelled",
}


def status_words(status: str | None) -> str:
    return STATUS_WORDS.get(status or "", status or "")


def timeline(history: list[dict[str, Any]], now: datetime | None = None) -> list[dict[str, Any]]:
    """History entries with how long the order stayed in each status."""
    now = now or datetime.now(UTC)
    out = []
    for index, entry in enumerate(history):
        at = entry["at"] if isinstance(entry["at"], datetime) else datetime.fromisoformat(str(entry["at"]))
        nxt = history[index + 1]["at"] if index + 1 < len(history) else None
        end = (nxt if isinstance(nxt, datetime) else datetime.fromisoformat(str(nxt))) if nxt else now
        out.append({**entry, "at": at, "stayed_seconds": (end - at).total_seconds(), "current": nxt is None})
    return out


def delay_words(delay: Any) -> str:
    """A delay notice for the customer from the order view's ``delay`` (stage past its SLA, new ETA)."""
    if not isinstance(delay, dict):
        return str(delay)
    stage = str(delay.get("stage") or "")
    what = "Delivery" if stage == "DELIVERY" else f"The step “{status_words(stage)}”"
    text = f"{what} is taking longer than we promised"
    if delay.get("since"):
        text += f" (since {when(delay['since'])})"
    text += "."
    if delay.get("new_eta"):
        eta = delay["new_eta"]
        eta = datetime.fromisoformat(eta) if isinstance(eta, str) else eta
        text += f" We now expect to ship it by {eta.astimezone(UTC).strftime('%d %B %Y')}."
    return text + " We are sorry for the wait."


def plain_error(error: Exception) -> str:
    """What went wrong, in words a customer understands."""
    if isinstance(error, IllegalTransition):
        return (f"That is not possible any more: the order is now “{status_words(error.current.value)}”. "
                "Reload the page to see its latest state.")
    if isinstance(error, ApiError):
        if error.code == "illegal_transition" and isinstance(error.details, dict):
            return (f"That is not possible any more: the order is now "
                    f"“{status_words(str(error.details.get('status')))}”.")
        if error.status >= 500 or error.code in ("unavailable", "peer_unavailable"):
            return "The service is busy or unreachable right now; please try again in a minute."
        return error.message
    return "Something went wrong on our side; please try again."


# What a page shows after a redirect: the address carries only a code (``?notice=`` / ``?error=``, and
# for a status change ``&now=<status>``), the page shows these words. A code it does not know shows
# nothing: the address is anyone's to write, and a page must not say what a stranger put in a link.
NOTICES = {
    "submitted": "Thank you — your order is submitted. We are working out its price.",
    "cancelled": "Your order is cancelled.",
    "model_attached": "The new model is attached. Check it and submit the order.",
    "ring_ready": "Your ring is ready to order: check it and submit.",
    "approved": "Approved: the order is now on the production dashboard.",
    "order_cancelled": "The order is cancelled.",
    "closed": "The order is closed.",
    "note_added": "Note added.",
    "moved": "Done: the order is now “{now}”.",
}
BUSY = "The service is busy or unreachable right now; please try again in a minute."
ERRORS = {
    "illegal_transition": "That is not possible any more: the order is now “{now}”. "
                          "Reload the page to see its latest state.",
    "not_found": "There is no such order.",
    "forbidden": "Your account may not do that.",
    "model_required": "Attach a valid 3D model before submitting the order.",
    "confirmation_required": "Pricing needs you to confirm the model's size first, or upload a corrected model.",
    "order_in_transit": "The order is being handed between departments; try again in a few seconds.",
    "conflict": "Someone changed the order at the same time; reload the page and try again.",
    "file_required": "Choose a model file to upload.",
    "empty_note": "The note is empty.",
    "invalid_shipment": "Enter the carrier and a tracking number (letters, digits and dashes).",
    "invalid_request": "Check what you entered and try again.",
    "unavailable": BUSY, "dependency_unavailable": BUSY, "peer_unavailable": BUSY, "pricing_overloaded": BUSY,
    "database_unavailable": BUSY, "database_busy": BUSY, "uploads_busy": BUSY,
    "error": "Something went wrong on our side; please try again.",
}


def error_code(error: Exception) -> tuple[str, str | None]:
    """The code a redirect carries for ``error``, and the order's status when it says "not possible now"."""
    if isinstance(error, IllegalTransition):
        return "illegal_transition", error.current.value
    if isinstance(error, ApiError):
        if error.code == "illegal_transition" and isinstance(error.details, dict):
            return "illegal_transition", str(error.details.get("status"))
        return (error.code, None) if error.code in ERRORS else ("error" if error.status >= 500 else
                                                                  "invalid_request", None)
    return "error", None


def redirect_with(url: str, *, error: Exception | None = None, notice: str = "", now: str | None = None,
                  ) -> RedirectResponse:
    """303 to ``url`` carrying the code of an error or a notice (a key of ERRORS / NOTICES) for the next page."""
    if error is not None:
        code, now = error_code(error)
        query = {"error": code}
    else:
        query = {"notice": notice}
    if now:
        query["now"] = now
    return RedirectResponse(f"{url}?{urlencode(query)}", status_code=303)


def page_messages(error: str, notice: str, now: str = "") -> dict[str, str | None]:
    """The words a page shows for the codes in its address; unknown codes and statuses show nothing."""
    status = STATUS_WORDS.get(now)

    def words(table: dict[str, str], code: str) -> str | None:
        text = table.get(code)
        if text is None or ("{now}" in text and status is None):
            return None
        return text.replace("{now}", status or "")

    return {"error": words(ERRORS, error), "notice": words(NOTICES, notice)}


def alloy_words(alloy: str | None) -> str:
    return ALLOY_WORDS.get(alloy or "", alloy or "")


def order_pages(service: str, template_dir: Path) -> Pages:
    """A service's templates with the order words as filters and globals."""
    return Pages(service, template_dir,
                 filters={"status_words": status_words, "alloy": alloy_words, "delay_words": delay_words},
                 globals_={"STATUS_WORDS": STATUS_WORDS, "ALLOY_WORDS": ALLOY_WORDS, "statuses": list(OrderStatus)})

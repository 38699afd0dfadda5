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


def redirect_with(url: str, *, error: Exception | None = None, notice: str = "") -> RedirectResponse:
    """303 to ``url`` carrying a plain-words error or a notice for the next page to show."""
    query = {"error": plain_error(error)} if error else {"notice": notice}
    return RedirectResponse(f"{url}?{urlencode(query)}", status_code=303)




def alloy_words(alloy: str | None) -> str:
    return ALLOY_WORDS.get(alloy or "", alloy or "")


def order_pages(service: str, template_dir: Path) -> Pages:
    """A service's templates with the order words as filters and globals."""
    return Pages(service, template_dir,
                 filters={"status_words": status_words, "alloy": alloy_words, "delay_words": delay_words},
                 globals_={"STATUS_WORDS": STATUS_WORDS, "ALLOY_WORDS": ALLOY_WORDS, "statuses": list(OrderStatus)})

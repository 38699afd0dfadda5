"""CRM rules: search terms, date filters, carrier webhook signatures, projection values.

Pure functions only: no I/O, no web framework, no database.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from alexandrite.contracts.events import StatusChanged, creation_columns
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.instants import EARLIEST, LATEST, in_range

SERVICE = "crm"
S = OrderStatus

# --- search -----------------------------------------------------------------------------------

MIN_ID_PREFIX = 8  # hex digits: shorter prefixes match too many orders to mean "this order"
_UUID_TEMPLATE = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class SearchTerms:
    """What a seller's free-text query can mean; the repository ORs the parts together."""

    text: str
    id_range: tuple[uuid.UUID, uuid.UUID] | None  # inclusive range of ids starting with the typed hex
    tracking_numbers: tuple[str, ...]
    name_fragment: str  # lower case; matched as a substring of the owner's name


def _canonical_uuid_prefix(text: str) -> str | None:
    """The hex digits of ``text`` if it is a prefix of a canonical UUID (dashes optional)."""
    if len(text) > len(_UUID_TEMPLATE):
        return None
    if "-" in text:
        for char, slot in zip(text, _UUID_TEMPLATE, strict=False):
            if (slot == "-") != (char == "-") or (slot == "x" and char not in _HEX):
                return None
        digits = text.replace("-", "")
    else:
        if len(text) > 32 or any(char not in _HEX for char in text):
            return None
        digits = text
    return digits


def parse_search(raw: str) -> SearchTerms:
    """Split a query into an id prefix (8+ hex digits or a full UUID), a tracking number and a name."""
    text = raw.strip()
    lowered = text.lower()
    digits = _canonical_uuid_prefix(lowered)
    id_range = None
    if digits is not None and len(digits) >= MIN_ID_PREFIX:
        id_range = (
            uuid.UUID(hex=digits.ljust(32, "0")),
            uuid.UUID(hex=digits.ljust(32, "f")),
        )
    tracking = tuple(dict.fromkeys((text, text.upper()))) if text else ()
    return SearchTerms(text=text, id_range=id_range, tracking_numbers=tracking, name_fragment=lowered)


def like_pattern(fragment: str, escape: str = "\\") -> str:
    """``%fragment%`` with LIKE wildcards in the fragment taken literally."""
    escaped = fragment.replace(escape, escape * 2).replace("%", escape + "%").replace("_", escape + "_")
    return f"%{escaped}%"


# --- date filters ------------------------------------------------------------------------------

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LOST_PLUS = re.compile(r" (\d{2}(?::?\d{2})?)$")


class BadFilter(ValueError):
    """A filter value that cannot be understood; ``field`` names the query parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CreatedRange:
    start: datetime | None  # inclusive
    end: datetime | None  # exclusive


def _parse_instant(field: str, value: str, *, end_of_day: bool) -> datetime:
    text = value.strip()
    problem = (f"{field} must be an ISO 8601 date or date-time between {EARLIEST.year} and {LATEST.year - 1}, "
               f"e.g. 2025-03-01 or 2025-03-01T12:00:00Z (got {value[:40]!r})")
    try:
        if _DATE_ONLY.match(text):
            day = date.fromisoformat(text)
            if end_of_day:
                day += timedelta(days=1)
            parsed = datetime.combine(day, time.min, tzinfo=UTC)
        else:
            if "T" in text.upper():
                # "+02:00" sent unencoded in a query string arrives as " 02:00".
                text = _LOST_PLUS.sub(r"+\1", text)
            parsed = datetime.fromisoformat(text.replace("z", "Z"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)  # no offset given: read as UTC
            if end_of_day:
                parsed += timedelta(microseconds=1)  # an instant given as "to" is included
    except (ValueError, OverflowError) as error:
        raise BadFilter(field, problem) from error
    if not in_range(parsed):  # year 1 at +14:00 or 9999-12-31 at -14:00 leave what the database stores
        raise BadFilter(field, problem)
    return parsed


def created_range(created_from: str | None, created_to: str | None) -> CreatedRange:
    """``created_from`` inclusive; ``created_to`` inclusive (a bare date means its whole day)."""
    start = _parse_instant("created_from", created_from, end_of_day=False) if created_from else None
    end = _parse_instant("created_to", created_to, end_of_day=True) if created_to else None
    if start is not None and end is not None and start >= end:
        raise BadFilter("created_to", "created_to must not be before created_from")
    return CreatedRange(start, end)


# --- carrier webhook ---------------------------------------------------------------------------

SIGNATURE_SCHEME = "sha256="
DELIVERED = "delivered"


def carrier_signature(secret: str, body: bytes) -> str:
    """The header value a carrier sends: ``sha256=<hex HMAC-SHA256 of the raw body>``."""
    return SIGNATURE_SCHEME + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_carrier_signature(secret: str, body: bytes, header: str | None) -> bool:
    if not header or not secret:
        return False
    scheme, _, digest = header.strip().partition("=")
    if scheme.lower() != "sha256" or not digest:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), digest.strip().lower().encode("ascii", "replace"))


def carrier_actor(carrier: str | None) -> str:
    name = (carrier or "").strip()
    return f"carrier:{name or 'webhook'}"


def delivery_time(occurred_at: datetime, shipped_since: datetime | None, now: datetime) -> datetime:
    """When the delivery is recorded: the carrier's time, kept between shipping and now."""
    at = occurred_at if occurred_at.tzinfo is not None else occurred_at.replace(tzinfo=UTC)
    at = min(at, now)
    if shipped_since is not None:
        at = max(at, shipped_since)
    return at


# --- projection --------------------------------------------------------------------------------

_MAX_TOTAL = Decimal("9999999999.99")  # numeric(12, 2)


def quote_total(quote: dict[str, Any] | None) -> tuple[Decimal | None, str | None]:
    """(total rounded to cents, currency) of a quote; (None, None) when it has no usable total."""
    if not quote:
        return None, None
    currency = quote.get("currency")
    currency = str(currency) if currency is not None else None
    raw = quote.get("total")
    if raw is None or isinstance(raw, bool):
        return None, currency
    try:
        total = Decimal(str(raw)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return None, currency
    if not total.is_finite() or abs(total) > _MAX_TOTAL:
        return None, currency
    return total, currency


def projection_values(change: StatusChanged) -> dict[str, Any]:
    """Columns of the CRM order that an event of another service updates besides the status."""
    values: dict[str, Any] = {}
    if change.alloy is not None:
        values["alloy"] = change.alloy
    if change.model is not None:
        values["model"] = change.model.model_dump(mode="json")
    status = change.status
    if status is S.FILE_UPLOADED:
        # A new model: any earlier quote or failure no longer applies.
        values.update(quote=None, total=None, currency=None, failure=None)
    elif status is S.PRICE_CALCULATING:
        values["failure"] = None
    elif status is S.PRICE_CALCULATED:
        total, currency = quote_total(change.quote)
        values.update(quote=change.quote, total=total, currency=currency, failure=None)
    elif status is S.PRICE_CALCULATION_FAILED:
        values.update(
            failure=change.failure.model_dump(mode="json", exclude_none=True) if change.failure else None,
            quote=None, total=None, currency=None,
        )
    elif status is S.SHIPPED:
        values.update(tracking_number=change.tracking_number, carrier=change.carrier)
    elif status is S.CANCELLED:
        values["cancel_reason"] = change.reason
    elif status is S.CLOSED:
        values["closed_reason"] = change.reason
    return values


def creation_values(change: StatusChanged) -> dict[str, Any]:
    """Columns of a new CRM order from its INITIATED event."""
    return creation_columns(change)

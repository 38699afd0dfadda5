"""The instants a cursor or a date filter may name (no infrastructure here: domain rules use it too)."""

from __future__ import annotations

from datetime import UTC, datetime

# Far wider than any order's life, narrow enough that every offset and driver conversion of them stays
# inside what Python and PostgreSQL represent (year 1 at +14:00 is year 0 in UTC).
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def in_range(value: datetime) -> bool:
    """``value`` (naive means UTC) lies between EARLIEST and LATEST; never raises for extreme offsets."""
    try:
        instant = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):
        return False
    return EARLIEST <= instant < LATEST

"""Time in the current stage and lateness against the stage SLA, for the staff boards (pure).

An order's stage clock starts at ``status_since`` (set where every status change is applied,
``orders.records.apply_transition``); its stage is *due* at ``status_since + SLA(status)``. The
SLA comes from ``ALEX_SLA_SECONDS`` (the same numbers the watchdog uses), so a board and the delay
notices never disagree. Rows are cached with ``due_at`` and ``sla_seconds`` (fixed until the status
changes); :func:`clock` adds the fields that move with the clock when a page is served.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

# A status without an SLA is never late: its due date is this far ahead.
NO_SLA_SECONDS = 100 * 365 * 86400.0


def sla_seconds(slas: Mapping[str, float], status: str) -> float | None:
    value = slas.get(status)
    return float(value) if value else None


def due_at(since: datetime, sla: float | None) -> datetime:
    return since + timedelta(seconds=sla if sla else NO_SLA_SECONDS)


def clock(since: datetime, sla: float | None, now: datetime) -> dict[str, Any]:
    """``time_in_stage_seconds``, ``late_by_seconds`` (0 when on time) and ``late`` at ``now``."""
    in_stage = max((now - since).total_seconds(), 0.0)
    late_by = max(in_stage - sla, 0.0) if sla else 0.0
    return {"time_in_stage_seconds": math.floor(in_stage), "late_by_seconds": math.floor(late_by),
            "late": late_by > 0}


def duration_words(seconds: float) -> str:
    """A duration as staff read it: "45 s", "12 min", "3 h 20 min", "2 d 4 h"."""
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        if hours:
            return f"{days} d {hours} h"
        return f"{days} d {minutes} min" if minutes else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def parse_bool(value: str | None, name: str) -> bool | None:
    """A ``true``/``false`` query value (also 1/0, yes/no); None when absent; ValueError otherwise."""
    if value is None or value == "":
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"{name} must be true or false")

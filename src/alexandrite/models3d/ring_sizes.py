"""Ring sizes: the one table between sizes and inner diameters, both ways.

US/Canada sizes: inner diameter = 11.63 mm + 0.8128 mm per size (the common jeweller's chart, size 7 is
17.32 mm), offered from 3 to 13 in half sizes. EU sizes (ISO 8653) are the inner circumference in mm,
offered from 44 to 70.
"""

from __future__ import annotations

import math

SYSTEMS = ("us", "eu")
US_SIZES: tuple[float, ...] = tuple(s / 2 for s in range(6, 27))  # 3, 3.5, ... 13
EU_SIZES: tuple[int, ...] = tuple(range(44, 71))
_US_BASE_MM = 11.63
_US_STEP_MM = 0.8128


class RingSizeError(ValueError):
    """A size the chart does not have; the message says what is offered."""


def _positive(size: float) -> float:
    if not math.isfinite(size) or size <= 0:
        raise RingSizeError(f"A ring size must be a positive number, got {size!r}.")
    return float(size)


def inner_diameter_mm(size: float, system: str = "eu") -> float:
    """Inner diameter of any positive size (no chart check): EU circumference / π, US by the linear chart."""
    size = _positive(size)
    if system in ("eu", "iso"):
        return size / math.pi
    if system == "us":
        return _US_BASE_MM + _US_STEP_MM * size
    raise RingSizeError(f"Choose a ring size system: {', '.join(SYSTEMS)}.")


def offered_inner_diameter_mm(size: float, system: str) -> float:
    """Inner diameter of a size the chart offers; RingSizeError for any other."""
    if system == "us" and size not in US_SIZES:
        raise RingSizeError(f"US sizes run from {US_SIZES[0]:g} to {US_SIZES[-1]:g} in half sizes.")
    if system == "eu" and size not in EU_SIZES:
        raise RingSizeError(f"EU sizes run from {EU_SIZES[0]} to {EU_SIZES[-1]}.")
    return inner_diameter_mm(size, system)


def us_size(inner_diameter: float) -> float:
    """The nearest US half size of an inner diameter in mm (may lie outside the offered range)."""
    return round((inner_diameter - _US_BASE_MM) / _US_STEP_MM * 2) / 2


def eu_size(inner_diameter: float) -> int:
    """The nearest EU size (inner circumference in whole mm) of an inner diameter in mm."""
    return round(inner_diameter * math.pi)


def chart() -> list[dict[str, object]]:
    """The sizes offered, for forms: [{system, size, label, inner_diameter_mm}]."""
    rows: list[dict[str, object]] = []
    for system, sizes in (("us", US_SIZES), ("eu", EU_SIZES)):
        for size in sizes:
            diameter = inner_diameter_mm(size, system)
            rows.append({"system": system, "size": float(size),
                         "label": f"{system.upper()} {size:g} — {diameter:.2f} mm", "inner_diameter_mm": diameter})
    return rows

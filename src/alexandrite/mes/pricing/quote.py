"""Prices from real geometry, under a versioned pricing configuration.

total = metal mass × price per gram × (1 + casting loss) + finishing (per cm² of surface)
        + complexity (per 1,000 triangles, capped) + fixed costs

The metal is what :func:`alexandrite.models3d.checks.inspect_model` found: every shell oriented on
its own, overlapping bodies counted once, cavities left out, set stones left out (listed, unpriced:
their price is the seller's). Checks run in the order that tells the customer the most: nothing to
cast, then the size (wrong units show here first), then holes in the surface, then a volume too small
to cast, then a size or mass implausible for the kind of piece (``scale_check``, priced once the
customer confirms ``scale``).

Each component is rounded to cents (half up) and the total is their sum, so a breakdown always adds
up. A quote names its configuration as ``version+fingerprint`` and carries the rates it used.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from alexandrite.contracts.alloys import ALLOY_NAMES, ALLOYS, DENSITIES_G_CM3
from alexandrite.models3d.checks import Inspection, inspect_model, plausibility
from alexandrite.models3d.formats import parse_model
from alexandrite.models3d.geometry import MeshFacts
from alexandrite.models3d.limits import ModelLimits

__all__ = [
    "DEFAULT_PRICING", "PricingConfig", "PricingConfigError", "PricingRejected", "Quote",
    "load_pricing", "price", "price_model",
]

_CENT = Decimal("0.01")
MIN_SIZE_MM = 1.0  # a piece whose largest side is below this is a unit mistake, not jewellery
CONFIRMABLE = frozenset({"scale"})


class PricingConfigError(ValueError):
    """A pricing configuration file that cannot be used (the message says which value and why)."""


@dataclass(frozen=True)
class PricingConfig:
    """One version of the price list. Money in `currency`; lengths in mm."""

    version: str
    currency: str
    density_g_cm3: dict[str, float]
    metal_price_per_g: dict[str, float]
    casting_loss: float
    finishing_per_cm2: float
    complexity_per_1k_triangles: float
    complexity_cap: float
    fixed_costs: float
    max_size_mm: float
    min_volume_mm3: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        """12 hex digits over every value: two configs with the same fingerprint price identically."""
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @functools.cached_property
    def label(self) -> str:
        """`version+fingerprint`, as stamped on every quote; worked out once (a price list is not changed
        once made: a new one is loaded instead)."""
        return f"{self.version}+{self.fingerprint()}"


DEFAULT_PRICING = PricingConfig(
    version="2026-11-01",
    currency="EUR",
    density_g_cm3=dict(DENSITIES_G_CM3),
    metal_price_per_g={"gold_585": 62.0, "gold_750": 79.5, "silver_925": 1.15, "platinum_950": 36.0},
    casting_loss=0.08,
    finishing_per_cm2=1.2,
    complexity_per_1k_triangles=0.05,
    complexity_cap=25.0,
    fixed_costs=35.0,
    max_size_mm=120.0,
    min_volume_mm3=5.0,
)


# --- configuration files -------------------------------------------------------------------------

def _number(where: str, value: Any, *, positive: bool = False, below_one: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PricingConfigError(f"{where} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise PricingConfigError(f"{where} must be {'greater than' if positive else 'at least'} 0, got {value!r}")
    if below_one and value >= 1:
        raise PricingConfigError(f"{where} must be below 1 (a fraction), got {value!r}")
    return float(value)


def _per_alloy(where: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise PricingConfigError(f"{where} must be an object keyed by alloy")
    missing = [a for a in ALLOY_NAMES if a not in value]
    unknown = sorted(set(value) - set(ALLOY_NAMES))
    if missing or unknown:
        raise PricingConfigError(f"{where} must list exactly {', '.join(ALLOY_NAMES)}"
                                 + (f"; missing {', '.join(missing)}" if missing else "")
                                 + (f"; unknown {', '.join(unknown)}" if unknown else ""))
    return {a: _number(f"{where}.{a}", value[a], positive=True) for a in ALLOY_NAMES}


def validate_pricing(values: dict[str, Any], source: str = "pricing") -> PricingConfig:
    """Build a PricingConfig from plain values, explaining the first invalid one."""
    names = {f.name for f in fields(PricingConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise PricingConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    missing = sorted(names - set(values))
    if missing:
        raise PricingConfigError(f"{source}: missing setting(s) {', '.join(missing)}")
    version, currency = values["version"], values["currency"]
    if not isinstance(version, str) or not version.strip() or "+" in version:
        raise PricingConfigError(f"{source}: version must be a non-empty string without '+', got {version!r}")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        raise PricingConfigError(f"{source}: currency must be a 3-letter ISO code such as EUR, got {currency!r}")
    return PricingConfig(
        version=version.strip(),
        currency=currency,
        density_g_cm3=_per_alloy(f"{source}: density_g_cm3", values["density_g_cm3"]),
        metal_price_per_g=_per_alloy(f"{source}: metal_price_per_g", values["metal_price_per_g"]),
        casting_loss=_number(f"{source}: casting_loss", values["casting_loss"], below_one=True),
        finishing_per_cm2=_number(f"{source}: finishing_per_cm2", values["finishing_per_cm2"]),
        complexity_per_1k_triangles=_number(f"{source}: complexity_per_1k_triangles",
                                            values["complexity_per_1k_triangles"]),
        complexity_cap=_number(f"{source}: complexity_cap", values["complexity_cap"]),
        fixed_costs=_number(f"{source}: fixed_costs", values["fixed_costs"]),
        max_size_mm=_number(f"{source}: max_size_mm", values["max_size_mm"], positive=True),
        min_volume_mm3=_number(f"{source}: min_volume_mm3", values["min_volume_mm3"]),
    )


def load_pricing(path: str | None) -> PricingConfig:
    """DEFAULT_PRICING, or a JSON file overriding some or all of its settings (a new version is required)."""
    if path is None:
        return DEFAULT_PRICING
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise PricingConfigError(f"{path}: cannot read the pricing file ({error.strerror or error})") from error
    except json.JSONDecodeError as error:
        raise PricingConfigError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from error
    if not isinstance(raw, dict):
        raise PricingConfigError(f"{path}: the pricing file must hold a JSON object")
    if "version" not in raw:
        raise PricingConfigError(f"{path}: a pricing file must set its own 'version'")
    return validate_pricing({**DEFAULT_PRICING.as_dict(), **raw}, source=path)


# --- quotes --------------------------------------------------------------------------------------

class PricingRejected(Exception):
    """A model that cannot be priced as it is; ``code`` is machine-readable, ``message`` for the customer,
    ``details`` the measurements behind it (JSON-safe)."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class Quote:
    total: float
    currency: str
    volume_mm3: float
    surface_mm2: float
    metal_mass_g: float
    breakdown: dict[str, float]
    pricing_version: str
    facts: dict[str, Any]
    alloy: str = ""
    rates: dict[str, float] = field(default_factory=dict)
    kind: str | None = None  # ring, hoop, bangle, piece or parts
    shells: list[dict[str, Any]] = field(default_factory=list)
    stones: list[dict[str, Any]] = field(default_factory=list)  # unpriced: the seller confirms and prices them
    ring: dict[str, Any] | None = None  # hole axis, inner/outer diameter, width, US/EU size
    wall: dict[str, Any] | None = None
    warnings: list[dict[str, str]] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _money(value: Decimal | float) -> Decimal:
    return Decimal(str(value)).quantize(_CENT, rounding=ROUND_HALF_UP)


def _size_checks(facts: MeshFacts, config: PricingConfig) -> None:
    largest = max(facts.size_mm)
    size = " × ".join(f"{v:,.1f}" for v in facts.size_mm)
    if largest > config.max_size_mm:
        raise PricingRejected(
            "too_large",
            f"The model measures {size} mm; the largest piece we can cast is {config.max_size_mm:,.0f} mm. "
            "Check that it was exported in millimetres (not metres or inches).",
            {"size_mm": list(facts.size_mm)},
        )
    if largest < MIN_SIZE_MM:
        raise PricingRejected(
            "too_small",
            f"The model measures only {size} mm. Check that it was exported in millimetres: a piece "
            "modelled in inches or centimetres comes out 25.4 or 10 times too small. Export it in "
            "millimetres and upload it again.",
            {"size_mm": list(facts.size_mm)},
        )


def _places(locations: list[list[float]]) -> str:
    return "; ".join(f"({', '.join(f'{v:.1f}' for v in p)})" for p in locations[:3])


def _check(facts: MeshFacts, config: PricingConfig, found: Inspection | None = None) -> None:
    if facts.triangles == 0 or facts.degenerate_triangles == facts.triangles:
        raise PricingRejected("empty", "The model has no surface to cast.")
    _size_checks(facts, config)
    problem = found.problem if found is not None else None
    places = f" For example near {_places(problem.locations)} mm." if problem and problem.locations else ""
    details = {"locations_mm": problem.locations} if problem else None
    if facts.boundary_edges:
        raise PricingRejected(
            "not_watertight",
            f"The model is not closed: {facts.boundary_edges:,} open edges.{places} "
            "Close the holes (make it watertight) in your modeller and upload it again.",
            {"open_edges": facts.boundary_edges, **(details or {})},
        )
    if facts.non_manifold_edges:
        raise PricingRejected(
            "non_manifold",
            f"{facts.non_manifold_edges:,} edges are shared by more than two faces.{places} "
            "Merge or separate the overlapping parts and upload the model again.",
            {"shared_edges": facts.non_manifold_edges, **(details or {})},
        )
    if problem is not None:  # closed, but no way of turning its faces makes them agree
        raise PricingRejected(
            "not_watertight",
            f"The model's surface cannot be given an inside and an outside: {facts.misoriented_edges:,} edges "
            "join faces that point in opposite directions, and no way of turning them makes them all agree "
            "(the surface twists like a Möbius strip). Rebuild that part in your modeller and upload it again.",
            {"misoriented_edges": facts.misoriented_edges},
        )
    if found is None and not facts.watertight:
        raise PricingRejected(
            "not_watertight",
            f"The model's surface is inconsistent: {facts.misoriented_edges:,} edges join faces that point "
            "in opposite directions. Recalculate the normals in your modeller and upload it again.",
        )
    volume = found.metal_volume_mm3 if found is not None else facts.volume_mm3
    if volume < config.min_volume_mm3:
        raise PricingRejected(
            "too_small",
            f"The model's metal volume is {volume:,.3g} mm³; the minimum we can cast is "
            f"{config.min_volume_mm3:,.3g} mm³. Check that it was exported in millimetres.",
            {"volume_mm3": volume},
        )


def price(facts: MeshFacts | Inspection, alloy: str, config: PricingConfig = DEFAULT_PRICING,
          confirm: tuple[str, ...] | list[str] = ()) -> Quote:
    """Quote a measured model in `alloy`; raises PricingRejected, or ValueError for an unknown alloy.

    Given an :class:`Inspection` the metal is priced as inspected and its shells, stones, ring, walls and
    warnings go into the quote; given plain :class:`MeshFacts` the whole volume is metal.
    """
    if alloy not in config.metal_price_per_g or alloy not in config.density_g_cm3:
        raise ValueError(f"unknown alloy {alloy!r}; choose one of {', '.join(ALLOY_NAMES)}")
    found = facts if isinstance(facts, Inspection) else None
    mesh = found.facts if found is not None else facts
    assert isinstance(mesh, MeshFacts)
    _check(mesh, config, found)
    density = config.density_g_cm3[alloy]
    confirmed = sorted(set(confirm) & CONFIRMABLE)
    if found is not None:
        concern = plausibility(found, density, ALLOYS[alloy].words if alloy in ALLOYS else alloy)
        if concern is not None and concern.code not in confirmed:
            raise PricingRejected("scale_check", concern.message, concern.details)
    volume = found.metal_volume_mm3 if found is not None else mesh.volume_mm3
    surface = found.metal_surface_mm2 if found is not None else mesh.surface_mm2
    per_gram = config.metal_price_per_g[alloy]
    mass_g = volume / 1000.0 * density
    metal = mass_g * per_gram
    complexity = min(config.complexity_cap, mesh.triangles / 1000.0 * config.complexity_per_1k_triangles)
    breakdown = {
        "metal": _money(metal),
        "casting_loss": _money(metal * config.casting_loss),
        "finishing": _money(surface / 100.0 * config.finishing_per_cm2),
        "complexity": _money(complexity),
        "fixed": _money(config.fixed_costs),
    }
    total = sum(breakdown.values(), Decimal(0))
    extra: dict[str, Any] = {}
    if found is not None:
        extra = {
            "kind": found.kind,
            "shells": [s.as_dict() for s in found.shells],
            "stones": [s.as_dict() for s in found.stones],
            "ring": found.ring(),
            "wall": found.wall.as_dict() if found.wall is not None else None,
            "warnings": list(found.notes),
            "confirmed": confirmed,
        }
        if confirmed:
            extra["warnings"].append({"code": "scale_confirmed", "message": (
                "You confirmed that the model's size is right although it is unusual for this kind of piece.")})
    return Quote(
        total=float(total),
        currency=config.currency,
        volume_mm3=round(volume, 3),
        surface_mm2=round(surface, 3),
        metal_mass_g=round(mass_g, 3),
        breakdown={k: float(v) for k, v in breakdown.items()},
        pricing_version=config.label,
        facts=mesh.as_dict(),
        alloy=alloy,
        rates={
            "density_g_cm3": density,
            "metal_price_per_g": per_gram,
            "casting_loss": config.casting_loss,
            "finishing_per_cm2": config.finishing_per_cm2,
            "complexity_per_1k_triangles": config.complexity_per_1k_triangles,
            "complexity_cap": config.complexity_cap,
            "fixed_costs": config.fixed_costs,
        },
        **extra,
    )


def price_model(data: bytes, filename: str | None, alloy: str, config: PricingConfig = DEFAULT_PRICING,
                limits: ModelLimits | None = None, confirm: tuple[str, ...] | list[str] = ()) -> Quote:
    """Parse, inspect and price an uploaded model (raises ModelFormatError or PricingRejected) under the
    same limits the upload was checked with; walls are checked against the alloy's minimum."""
    if alloy not in config.metal_price_per_g:
        raise ValueError(f"unknown alloy {alloy!r}; choose one of {', '.join(ALLOY_NAMES)}")
    parsed = parse_model(data, filename, limits)
    minimum = ALLOYS[alloy].min_wall_mm if alloy in ALLOYS else None
    return price(inspect_model(parsed.triangles, min_wall_mm=minimum), alloy, config, confirm)

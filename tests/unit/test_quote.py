"""Pricing: hand-computed quotes, versioned configuration files and reasons for refusing a model."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from alexandrite.contracts.alloys import ALLOY_NAMES as ALLOYS
from alexandrite.mes.pricing.jobs import jsonable
from alexandrite.mes.pricing.quote import (
    DEFAULT_PRICING,
    PricingConfig,
    PricingConfigError,
    PricingRejected,
    load_pricing,
    price,
    price_model,
)
from alexandrite.models3d.checks import inspect_model
from alexandrite.models3d.formats import ModelFormatError
from alexandrite.models3d.geometry import analyse
from alexandrite.models3d.rings import ring
from alexandrite.models3d.shapes import box, icosphere
from alexandrite.models3d.writers import to_binary_stl, to_obj

CONFIG = PricingConfig(
    version="test-1",
    currency="EUR",
    density_g_cm3={"gold_585": 13.0, "gold_750": 15.5, "silver_925": 10.36, "platinum_950": 20.7},
    metal_price_per_g={"gold_585": 60.0, "gold_750": 80.0, "silver_925": 1.0, "platinum_950": 35.0},
    casting_loss=0.08,
    finishing_per_cm2=1.5,
    complexity_per_1k_triangles=0.5,
    complexity_cap=20.0,
    fixed_costs=30.0,
    max_size_mm=120.0,
    min_volume_mm3=5.0,
)


def rejected(facts_or_tri: np.ndarray, alloy: str = "gold_750") -> PricingRejected:
    with pytest.raises(PricingRejected) as caught:
        price(analyse(facts_or_tri), alloy, CONFIG)
    return caught.value


def test_cube_quote_by_hand() -> None:
    quote = price(analyse(box(10, 10, 10)), "gold_750", CONFIG)
    # 1 cm³ × 15.5 g/cm³ = 15.5 g; × 80 = 1240.00; loss 8% = 99.20; 6 cm² × 1.5 = 9.00;
    # 12 triangles × 0.5 / 1000 = 0.006 -> 0.01; fixed 30.00.
    assert quote.metal_mass_g == 15.5
    assert quote.breakdown == {"metal": 1240.0, "casting_loss": 99.2, "finishing": 9.0, "complexity": 0.01,
                               "fixed": 30.0}
    assert quote.total == 1378.21
    assert (quote.currency, quote.volume_mm3, quote.surface_mm2, quote.alloy) == ("EUR", 1000.0, 600.0, "gold_750")
    assert quote.pricing_version == f"test-1+{CONFIG.fingerprint()}"
    assert quote.rates["metal_price_per_g"] == 80.0 and quote.rates["density_g_cm3"] == 15.5
    assert quote.facts["watertight"] is True and quote.facts["vertices"] == 8


def test_silver_ring_by_hand() -> None:
    facts = analyse(ring(18.0, 5.0, 2.0, profile="flat", segments=96, profile_segments=16))
    quote = price(facts, "silver_925", CONFIG)
    mass = facts.volume_mm3 / 1000 * 10.36  # 627.87 mm³ -> 6.5047 g
    assert quote.metal_mass_g == pytest.approx(6.505, abs=1e-3)
    assert quote.breakdown["metal"] == round(mass * 1.0, 2) == 6.50
    assert quote.breakdown["casting_loss"] == 0.52
    assert quote.breakdown["finishing"] == round(facts.surface_mm2 / 100 * 1.5, 2)
    assert quote.breakdown["complexity"] == round(3072 * 0.5 / 1000, 2) == 1.54


@pytest.mark.parametrize("alloy", ALLOYS)
def test_breakdown_adds_up_to_the_total(alloy: str) -> None:
    for tri in (ring(segments=77, profile_segments=9), icosphere(4.321, 3), box(7.77, 3.33, 1.11)):
        quote = price(analyse(tri), alloy, DEFAULT_PRICING)
        parts = sum((Decimal(str(v)) for v in quote.breakdown.values()), Decimal(0))
        assert parts == Decimal(str(quote.total))
        assert Decimal(str(quote.total)).as_tuple().exponent >= -2
        assert set(quote.breakdown) == {"metal", "casting_loss", "finishing", "complexity", "fixed"}


def test_default_prices_rank_the_alloys() -> None:
    facts = analyse(ring())
    totals = {alloy: price(facts, alloy).total for alloy in ALLOYS}
    per_cm3 = {a: DEFAULT_PRICING.density_g_cm3[a] * DEFAULT_PRICING.metal_price_per_g[a] for a in ALLOYS}
    assert sorted(ALLOYS, key=totals.__getitem__) == sorted(ALLOYS, key=per_cm3.__getitem__)
    assert totals["gold_750"] > totals["gold_585"] > totals["silver_925"] > DEFAULT_PRICING.fixed_costs
    assert price(facts, "gold_585").metal_mass_g == pytest.approx(facts.volume_mm3 * 13.0 / 1000, abs=1e-3)


def test_complexity_is_capped() -> None:
    facts = analyse(icosphere(5.0, 4))  # 5120 triangles × 0.5 / 1000 = 2.56 (below the cap)
    assert price(facts, "gold_585", CONFIG).breakdown["complexity"] == 2.56
    steep = dataclasses.replace(CONFIG, complexity_per_1k_triangles=10.0)  # 51.20 -> capped at 20
    assert price(facts, "gold_585", steep).breakdown["complexity"] == 20.0


def test_inside_out_model_costs_the_same() -> None:
    tri = ring(segments=64, profile_segments=8)
    assert price(analyse(tri[:, ::-1]), "gold_585", CONFIG).total == price(analyse(tri), "gold_585", CONFIG).total


# --- refusals -------------------------------------------------------------------------------------

def test_ring_in_the_wrong_units_is_too_large() -> None:
    error = rejected(ring() * 1000.0)
    assert error.code == "too_large" and "20,900.0" in error.message and "120 mm" in error.message
    assert "millimetres" in error.message


def test_open_model_is_not_watertight() -> None:
    error = rejected(box(10, 10, 10)[2:])
    assert error.code == "not_watertight" and "4 open edges" in error.message


def test_flipped_faces_are_not_watertight() -> None:
    tri = box(10, 10, 10).copy()
    tri[3] = tri[3][::-1]
    error = rejected(tri)
    assert error.code == "not_watertight" and "3 edges" in error.message


def test_non_manifold_and_too_small_and_empty() -> None:
    tri = box(10, 10, 10)
    fin = np.array([[tri[0][0], tri[0][1], [0.0, 0.0, -20.0]]])
    assert rejected(np.concatenate([tri, tri[:0], fin])).code == "not_watertight"  # the fin also opens 2 edges
    double = np.concatenate([tri, box(10, 10, 10, center=(10, 0, 0))])  # two cubes sharing a face
    error = rejected(double)
    assert error.code == "non_manifold" and "5 edges" in error.message  # the shared square and its diagonal
    small = rejected(box(1, 1, 1))
    assert small.code == "too_small" and "1 mm³" in small.message and "5 mm³" in small.message
    assert rejected(np.zeros((0, 3, 3))).code == "empty"


def test_unknown_alloy() -> None:
    with pytest.raises(ValueError, match="unknown alloy 'gold_999'"):
        price(analyse(box(5, 5, 5)), "gold_999", CONFIG)
    with pytest.raises(ValueError, match="unknown alloy"):
        price_model(to_binary_stl(box(5, 5, 5)), "b.stl", "brass")


def test_price_model_end_to_end() -> None:
    tri = ring(segments=128, profile_segments=16)
    data = to_binary_stl(tri)
    quote = price_model(data, "ring.stl", "platinum_950", CONFIG)
    direct = price(inspect_model(tri.astype(np.float32), min_wall_mm=0.6), "platinum_950", CONFIG)
    assert quote == direct and quote.total > 30
    plain = price(analyse(tri.astype(np.float32)), "platinum_950", CONFIG)  # one closed shell: same metal
    assert (plain.total, plain.volume_mm3, plain.breakdown) == (quote.total, quote.volume_mm3, quote.breakdown)
    assert quote.kind == "ring" and quote.ring is not None and quote.ring["size"]["us"] == 7.0
    assert json.loads(json.dumps(quote.as_dict()))["breakdown"] == quote.breakdown
    assert jsonable(quote) == jsonable(quote.as_dict()) == json.loads(json.dumps(quote.as_dict()))
    with pytest.raises(ModelFormatError) as format_error:
        price_model(b"", "ring.stl", "gold_585")
    assert format_error.value.code == "empty_file"
    with pytest.raises(PricingRejected) as open_error:
        price_model(to_obj(box(10, 10, 10)[1:]), "open.obj", "gold_585")
    assert open_error.value.code == "not_watertight" and "3 open edges" in open_error.value.message


# --- configuration --------------------------------------------------------------------------------

def test_fingerprint_tracks_every_value() -> None:
    assert len(CONFIG.fingerprint()) == 12
    assert dataclasses.replace(CONFIG).fingerprint() == CONFIG.fingerprint()
    prices = {**CONFIG.metal_price_per_g, "silver_925": 1.01}
    changed = [dataclasses.replace(CONFIG, fixed_costs=30.01), dataclasses.replace(CONFIG, metal_price_per_g=prices),
               dataclasses.replace(CONFIG, version="test-2"), dataclasses.replace(CONFIG, max_size_mm=121.0)]
    assert len({c.fingerprint() for c in changed} | {CONFIG.fingerprint()}) == 5
    assert [c.label for c in changed] == [f"{c.version}+{c.fingerprint()}" for c in changed]  # each its own


def test_load_pricing_default_and_override(tmp_path: Path) -> None:
    assert load_pricing(None) is DEFAULT_PRICING
    path = tmp_path / "pricing.json"
    path.write_text(json.dumps({"version": "2027-01-01", "fixed_costs": 40,
                                "metal_price_per_g": {**CONFIG.metal_price_per_g, "gold_750": 90.5}}))
    config = load_pricing(str(path))
    assert (config.version, config.fixed_costs, config.metal_price_per_g["gold_750"]) == ("2027-01-01", 40.0, 90.5)
    assert config.casting_loss == DEFAULT_PRICING.casting_loss
    quote = price(analyse(box(10, 10, 10)), "gold_750", config)
    assert quote.pricing_version.startswith("2027-01-01+") and quote.breakdown["fixed"] == 40.0
    assert quote.breakdown["metal"] == round(15.5 * 90.5, 2)


@pytest.mark.parametrize(("content", "fragment"), [
    ('{"fixed_costs": 1}', "must set its own 'version'"),
    ('{"version": "x", "casting_loss": 1.5}', "casting_loss must be below 1"),
    ('{"version": "x", "fixed_costs": -1}', "fixed_costs must be at least 0"),
    ('{"version": "x", "max_size_mm": 0}', "max_size_mm must be greater than 0"),
    ('{"version": "x", "finishing_per_cm2": "cheap"}', "finishing_per_cm2 must be a finite number"),
    ('{"version": "x", "discount": 0.1}', "unknown setting(s) discount"),
    ('{"version": "x", "density_g_cm3": {"gold_585": 13}}', "missing gold_750, silver_925, platinum_950"),
    ('{"version": "x", "currency": "euro"}', "3-letter ISO code"),
    ('{"version": ""}', "version must be a non-empty string"),
    ("[1, 2]", "must hold a JSON object"),
    ("{not json", "not valid JSON"),
])
def test_load_pricing_explains_bad_files(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "pricing.json"
    path.write_text(content)
    with pytest.raises(PricingConfigError) as caught:
        load_pricing(str(path))
    assert fragment in str(caught.value) and str(path) in str(caught.value)


def test_load_pricing_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PricingConfigError, match="cannot read"):
        load_pricing(str(tmp_path / "nope.json"))

"""One ring-size table and one alloy list, used by the constructor, the size chart and pricing alike."""

from __future__ import annotations

import math

import pytest

from alexandrite.contracts.alloys import ALLOY_NAMES, ALLOY_WORDS, ALLOYS, DENSITIES_G_CM3, AlloyName
from alexandrite.mes.pricing.quote import DEFAULT_PRICING
from alexandrite.models3d import ring_sizes
from alexandrite.models3d.ring_builder import RingSpecError, inner_diameter_mm, size_chart
from alexandrite.shop.schemas import CreateOrder


def test_us_and_eu_sizes_follow_their_definitions() -> None:
    assert ring_sizes.inner_diameter_mm(7, "us") == pytest.approx(11.63 + 0.8128 * 7)  # 17.32 mm
    assert ring_sizes.inner_diameter_mm(54, "eu") == pytest.approx(54 / math.pi)
    assert ring_sizes.US_SIZES[0] == 3 and ring_sizes.US_SIZES[-1] == 13 and len(ring_sizes.US_SIZES) == 21


def test_sizes_round_trip_through_diameters() -> None:
    for size in ring_sizes.US_SIZES:
        assert ring_sizes.us_size(ring_sizes.inner_diameter_mm(size, "us")) == size
    for size in ring_sizes.EU_SIZES:
        assert ring_sizes.eu_size(ring_sizes.inner_diameter_mm(size, "eu")) == size


def test_the_constructor_and_its_chart_use_the_one_table() -> None:
    chart = {(row["system"], row["size"]): row["inner_diameter_mm"] for row in size_chart()}
    for size in ring_sizes.US_SIZES:
        assert chart[("us", size)] == inner_diameter_mm(size, "us") == ring_sizes.inner_diameter_mm(size, "us")
    assert len(chart) == len(ring_sizes.US_SIZES) + len(ring_sizes.EU_SIZES)


@pytest.mark.parametrize(("size", "system", "field"), [(7.25, "us", "size"), (43, "eu", "size"), (7, "uk", "size_system")])
def test_sizes_off_the_chart_are_refused_with_the_field(size: float, system: str, field: str) -> None:
    with pytest.raises(RingSpecError) as refused:
        inner_diameter_mm(size, system)
    assert refused.value.field == field and refused.value.message


@pytest.mark.parametrize("size", [0, -1, float("nan"), float("inf")])
def test_sizes_must_be_positive_numbers(size: float) -> None:
    with pytest.raises(ring_sizes.RingSizeError):
        ring_sizes.inner_diameter_mm(size, "eu")


def test_alloys_are_defined_once_and_everything_agrees() -> None:
    assert set(ALLOY_NAMES) == set(AlloyName.__args__) == set(ALLOYS) == set(ALLOY_WORDS)  # type: ignore[attr-defined]
    assert DEFAULT_PRICING.density_g_cm3 == DENSITIES_G_CM3  # pricing's defaults are the nominal densities
    assert set(DEFAULT_PRICING.metal_price_per_g) == set(ALLOY_NAMES)
    assert all(0.5 <= alloy.min_wall_mm <= 1.0 for alloy in ALLOYS.values())
    for name in ALLOY_NAMES:
        assert CreateOrder(alloy=name).alloy == name  # type: ignore[arg-type]

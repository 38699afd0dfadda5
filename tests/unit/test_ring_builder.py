"""Ring constructor: every profile and setting is one closed, outward mesh with the expected volume."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import trimesh

from alexandrite.models3d import rings
from alexandrite.models3d.geometry import analyse
from alexandrite.models3d.ring_builder import (
    SETTINGS,
    RingSpec,
    RingSpecError,
    build_ring,
    densify_outer,
    extrude,
    inner_diameter_mm,
    size_chart,
)


@pytest.mark.parametrize(("profile", "setting"), list(itertools.product(rings.PROFILES, SETTINGS)))
def test_every_ring_is_watertight_and_measured_alike_by_an_independent_library(profile: str, setting: str) -> None:
    tri = build_ring(RingSpec(size=7, profile=profile, setting=setting, stone_mm=5.0))
    facts = analyse(tri)
    assert facts.watertight and not facts.inverted
    assert facts.boundary_edges == facts.non_manifold_edges == facts.misoriented_edges == 0
    assert facts.degenerate_triangles == 0
    mesh = trimesh.Trimesh(**trimesh.triangles.to_kwargs(tri), process=True)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert facts.volume_mm3 == pytest.approx(mesh.volume, rel=1e-9)
    # The band's hole is the size chart's inner diameter (US 7: 17.32 mm).
    band = rings.ring_profile(17.32, 4.0, 1.8, profile, 16)
    assert band[:, 0].min() == pytest.approx(17.32 / 2)


def test_settings_add_metal_and_height_on_the_plus_x_side() -> None:
    plain, bezel, prongs = (analyse(build_ring(RingSpec(setting=s, profile="flat"))) for s in SETTINGS)
    assert plain.volume_mm3 < prongs.volume_mm3 < bezel.volume_mm3
    assert bezel.bbox_max[0] > plain.bbox_max[0] and bezel.bbox_min[0] == pytest.approx(plain.bbox_min[0])
    assert prongs.bbox_max[0] > bezel.bbox_max[0]  # prongs stand taller than a bezel
    assert bezel.size_mm[1] == pytest.approx(plain.size_mm[1]) and bezel.size_mm[2] == pytest.approx(4.0)


def test_extrusion_adds_the_closed_form_volume() -> None:
    """A patch of K steps x the whole flat outer face lifted by h adds K wedges of the annulus (r, r + h)."""
    n, d, w, t, h = 64, 18.0, 5.0, 2.0, 1.5
    profile = densify_outer(rings.ring_profile(d, w, t, "flat", 16))
    verts, quads = rings.revolve_indexed(profile, n)
    base = analyse(rings.quads_to_triangles(verts, quads)).volume_mm3
    r_out = d / 2 + t
    outer = [j for j in range(len(profile)) if profile[j, 0] == r_out and profile[(j + 1) % len(profile), 0] == r_out]
    steps = [62, 63, 0, 1, 2]  # across the seam of the revolution
    selected = np.zeros(len(quads), dtype=bool)
    selected[[i * len(profile) + j for i in steps for j in outer]] = True
    v2, q2, inside = extrude(verts, quads, selected, h)
    facts = analyse(rings.quads_to_triangles(v2, q2))
    wedge = 0.5 * math.sin(2 * math.pi / n) * ((r_out + h) ** 2 - r_out**2) * w
    assert facts.watertight
    assert facts.volume_mm3 - base == pytest.approx(len(steps) * wedge, rel=1e-10)
    assert len(inside) == (len(steps) - 1) * (len(outer) - 1)  # the patch's inner vertices


def test_densify_keeps_the_solid() -> None:
    profile = rings.ring_profile(17.0, 4.0, 1.8, "comfort", 16)
    dense = densify_outer(profile)
    assert len(dense) > len(profile)
    a = analyse(rings.revolve(profile, 48)).volume_mm3
    b = analyse(rings.revolve(dense, 48)).volume_mm3
    assert a == pytest.approx(b, rel=1e-12)


def test_size_chart_and_bad_parameters() -> None:
    assert inner_diameter_mm(7, "us") == pytest.approx(17.3196)
    assert inner_diameter_mm(54, "eu") == pytest.approx(17.189, abs=1e-3)
    chart = size_chart()
    assert {"system": "us", "size": 7.0} == {k: chart[8][k] for k in ("system", "size")}
    cases = [
        (RingSpec(size=7.25), "size"),
        (RingSpec(size=80, size_system="eu"), "size"),
        (RingSpec(size_system="uk"), "size_system"),
        (RingSpec(profile="square"), "profile"),
        (RingSpec(setting="halo"), "setting"),
        (RingSpec(band_width_mm=0.5), "band_width_mm"),
        (RingSpec(thickness_mm=float("nan")), "thickness_mm"),
        (RingSpec(setting="bezel", band_width_mm=2.0, stone_mm=8.0), "stone_mm"),
    ]
    for spec, field in cases:
        with pytest.raises(RingSpecError) as caught:
            build_ring(spec)
        assert caught.value.field == field and caught.value.message.endswith(".")

"""Mesh generators and writers, checked against closed-form volumes and areas.

The expected values come from Pappus' theorem for polygons revolved in n straight steps (the solid
between two steps is a wedge whose cross-section is the profile scaled by cos(pi/n)):

    V = n * sin(2 pi / n) * A * r_c          (A: profile area, r_c: its centroid radius)
    S = n * sum over profile edges of (r_a + r_b) * sin(pi / n) * hypot((r_b - r_a) cos(pi / n), z_b - z_a)

computed here from the 2D profile only, never from the triangles.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile

import numpy as np
import pytest

from alexandrite.models3d import ring_sizes, rings, shapes, writers
from alexandrite.models3d.geometry import analyse


def shoelace(profile: np.ndarray) -> tuple[float, float]:
    """(area, centroid r) of a counter-clockwise (r, z) polygon."""
    r, z = profile[:, 0], profile[:, 1]
    r2, z2 = np.roll(r, -1), np.roll(z, -1)
    cross = r * z2 - r2 * z
    area = cross.sum() / 2
    return float(area), float(((r + r2) * cross).sum() / (6 * area))


def revolved_volume(profile: np.ndarray, n: int) -> float:
    area, centroid = shoelace(profile)
    return n * math.sin(2 * math.pi / n) * area * centroid


def revolved_area(profile: np.ndarray, n: int) -> float:
    a, b = profile, np.roll(profile, -1, axis=0)
    half = math.pi / n
    height = np.hypot((b[:, 0] - a[:, 0]) * math.cos(half), b[:, 1] - a[:, 1])
    return float(n * ((a[:, 0] + b[:, 0]) * math.sin(half) * height).sum())


def test_flat_ring_volume_is_the_closed_form() -> None:
    n, d, w, t = 96, 18.0, 5.0, 2.0
    facts = analyse(rings.ring(d, w, t, profile="flat", segments=n, profile_segments=16))
    # Rectangle w x t whose centroid sits at d/2 + t/2.
    expected = n * math.sin(2 * math.pi / n) * w * t * (d / 2 + t / 2)
    assert facts.volume_mm3 == pytest.approx(expected, rel=1e-12)
    assert facts.volume_mm3 == pytest.approx(627.870, abs=1e-3)  # vs 628.319 for the smooth ring
    assert facts.watertight and not facts.inverted
    assert facts.size_mm[2] == pytest.approx(5.0)
    assert facts.triangles == 2 * n * 16


@pytest.mark.parametrize("profile", rings.PROFILES)
@pytest.mark.parametrize(("segments", "profile_segments"), [(32, 4), (128, 16), (300, 7)])
def test_ring_volume_and_area_match_pappus(profile: str, segments: int, profile_segments: int) -> None:
    shape = rings.ring_profile(17.3, 4.0, 1.8, profile, profile_segments)
    facts = analyse(rings.ring(17.3, 4.0, 1.8, profile, segments, profile_segments))
    assert facts.watertight and not facts.inverted
    assert facts.boundary_edges == facts.non_manifold_edges == facts.degenerate_triangles == 0
    assert facts.volume_mm3 == pytest.approx(revolved_volume(shape, segments), rel=1e-11)
    assert facts.surface_mm2 == pytest.approx(revolved_area(shape, segments), rel=1e-11)
    assert facts.vertices == segments * len(shape)
    assert facts.triangles == 2 * segments * len(shape)


@pytest.mark.parametrize("profile", rings.PROFILES)
def test_ring_profiles_respect_the_requested_dimensions(profile: str) -> None:
    shape = rings.ring_profile(20.0, 6.0, 2.5, profile, 32)
    assert shape[:, 0].min() == pytest.approx(10.0)
    assert shape[:, 0].max() == pytest.approx(12.5)
    assert shape[:, 1].min() == pytest.approx(-3.0) and shape[:, 1].max() == pytest.approx(3.0)
    facts = analyse(rings.ring(20.0, 6.0, 2.5, profile, segments=512, profile_segments=32))
    assert facts.size_mm[0] == pytest.approx(25.0, rel=1e-4)
    # Shaped profiles remove metal from the flat band's 6 x 2.5 rectangle.
    flat = 2 * math.pi * 6.0 * 2.5 * 11.25
    if profile == "flat":
        assert facts.volume_mm3 == pytest.approx(flat, rel=1e-4)
    else:
        assert 0.6 * flat < facts.volume_mm3 < 0.97 * flat


def test_smooth_ring_limit() -> None:
    """Many segments approach the smooth comfort-fit volume from the exact profile integral."""
    d, w, t = 17.3, 4.0, 1.8
    relief = rings.COMFORT_RELIEF * t
    # Comfort inner edge r(theta) = Ri + relief (1 - cos theta), z = w/2 sin theta; integrate 2 pi r dA.
    theta = np.linspace(-math.pi / 2, math.pi / 2, 200_001)
    r_inner = d / 2 + relief * (1 - np.cos(theta))
    dz = w / 2 * np.cos(theta) * (theta[1] - theta[0])
    ro = d / 2 + t
    integrand = math.pi * (ro**2 - r_inner**2) * dz
    smooth = float(np.sum((integrand[1:] + integrand[:-1]) / 2))
    facts = analyse(rings.ring(d, w, t, "comfort", segments=2048, profile_segments=256))
    assert facts.volume_mm3 == pytest.approx(smooth, rel=1e-4)


def test_torus_volume_closed_form() -> None:
    big, small, n_major, n_minor = 20.0, 3.0, 64, 24
    facts = analyse(shapes.torus(big, small, n_major, n_minor))
    polygon_area = n_minor / 2 * small**2 * math.sin(2 * math.pi / n_minor)
    expected = n_major * math.sin(2 * math.pi / n_major) * big * polygon_area
    assert facts.volume_mm3 == pytest.approx(expected, rel=1e-12)
    assert facts.volume_mm3 == pytest.approx(2 * math.pi**2 * big * small**2, rel=0.02)
    assert facts.vertices == n_major * n_minor and facts.triangles == 2 * n_major * n_minor
    assert facts.watertight


def test_icosahedron_closed_form_and_icosphere_convergence() -> None:
    radius = 5.0
    edge = 4 * radius / math.sqrt(10 + 2 * math.sqrt(5))
    facts = analyse(shapes.icosphere(radius, 0))
    assert facts.volume_mm3 == pytest.approx(5 / 12 * (3 + math.sqrt(5)) * edge**3, rel=1e-12)
    assert facts.surface_mm2 == pytest.approx(5 * math.sqrt(3) * edge**2, rel=1e-12)
    assert (facts.triangles, facts.vertices) == (20, 12)
    previous = facts.volume_mm3
    for level in range(1, 5):
        facts = analyse(shapes.icosphere(radius, level))
        assert facts.watertight and facts.triangles == 20 * 4**level
        assert facts.vertices == 10 * 4**level + 2  # Euler: V = F/2 + 2
        assert previous < facts.volume_mm3 < 4 / 3 * math.pi * radius**3
        previous = facts.volume_mm3
    assert previous == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.01)


def test_box_and_tetrahedron() -> None:
    facts = analyse(shapes.box(10, 8, 3, center=(100, -50, 7)))
    assert (facts.volume_mm3, facts.surface_mm2) == (240.0, 2 * (80 + 30 + 24))
    assert facts.bbox_min == (95.0, -54.0, 5.5) and facts.size_mm == (10.0, 8.0, 3.0)
    points = [[1, 2, 3], [4, 2, 3], [1, 7, 3], [1, 2, 9]]
    assert analyse(shapes.tetrahedron(points)).volume_mm3 == pytest.approx(3 * 5 * 6 / 6)
    assert not analyse(shapes.tetrahedron(points[::-1])).inverted


def test_ring_sizes() -> None:
    assert ring_sizes.inner_diameter_mm(54) == pytest.approx(17.189, abs=1e-3)
    assert ring_sizes.inner_diameter_mm(7, "us") == pytest.approx(17.3196)
    with pytest.raises(ValueError, match="system"):
        ring_sizes.inner_diameter_mm(7, "uk")
    with pytest.raises(ValueError, match="profile"):
        rings.ring(profile="square")
    with pytest.raises(ValueError):
        rings.ring(segments=2)


def test_writers_produce_well_formed_files() -> None:
    tri = shapes.box(10, 8, 3)
    binary = writers.to_binary_stl(tri)
    assert len(binary) == 84 + 50 * 12 and struct.unpack("<I", binary[80:84]) == (12,)
    normals = np.frombuffer(binary[84:], dtype=np.dtype([("n", "<f4", 3), ("v", "<f4", 9), ("a", "<u2")]))["n"]
    assert np.allclose(np.abs(normals).sum(axis=1), 1.0)
    ascii_stl = writers.to_ascii_stl(tri, name="cube").decode()
    assert ascii_stl.startswith("solid cube\n") and ascii_stl.endswith("endsolid cube\n")
    assert ascii_stl.count("vertex") == 36
    obj = writers.to_obj(tri).decode()
    assert obj.count("\nv ") == 8 and obj.count("\nf ") == 12
    with zipfile.ZipFile(io.BytesIO(writers.to_3mf(tri))) as zf:
        assert set(zf.namelist()) == {"[Content_Types].xml", "_rels/.rels", "3D/3dmodel.model"}
        assert zf.read("3D/3dmodel.model").count(b"<vertex ") == 8

"""What the inspection finds, on the corpus's problem models, against closed forms and trimesh."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from alexandrite.mes.pricing.quote import DEFAULT_PRICING, PricingRejected, price
from alexandrite.models3d.checks import inspect_model, plausibility
from alexandrite.models3d.geometry import analyse, merge_vertices
from alexandrite.models3d.rings import ring
from alexandrite.models3d.shapes import box, icosphere, torus
from alexandrite.models3d.walls import cast_inward, check_walls
from alexandrite.models3d.writers import shared_vertices
from tests.fixtures import corpus


def trimesh_volume(tri: np.ndarray) -> float:
    vertices, faces = shared_vertices(tri)
    return float(trimesh.Trimesh(vertices=vertices, faces=faces, process=False).volume)


# --- merge ------------------------------------------------------------------------------------------

def test_mirrored_coordinates_do_not_collide_in_the_hash() -> None:
    """(x, y, z) and (-x, -y, z) once hashed alike: every centred mesh left the fast path."""
    rng = np.random.default_rng(3)
    points = rng.normal(size=(50_000, 3))
    both = np.concatenate([points, points * [-1.0, -1.0, 1.0], points * [-1.0, 1.0, -1.0]])
    from alexandrite.models3d.geometry import _coordinate_bits, _hash

    hashes = _hash(_coordinate_bits(both))
    assert len(np.unique(hashes)) == len(both)
    ids, count = merge_vertices(both)
    assert count == len(both)


def test_cad_noise_at_1e16_merges_and_the_mesh_is_closed() -> None:
    band = corpus.ring_with_volume(profile="flat")
    noisy = corpus.with_cad_noise(band.triangles)
    assert (noisy == -2.7e-16).any()
    exact = analyse(noisy, tolerance=0.0)
    assert exact.boundary_edges > 0  # bit-identical merging sees holes that are not there
    facts = analyse(noisy)
    assert facts.watertight and facts.vertices == 96 * 12  # segments × profile points
    assert facts.volume_mm3 == pytest.approx(band.volume_mm3, rel=1e-12)


# --- shells and orientation -------------------------------------------------------------------------

def test_mirrored_pair_is_priced_per_shell() -> None:
    pair, volume = corpus.mirrored_pair()
    left, left_volume = corpus.earring()
    assert left_volume == pytest.approx(trimesh_volume(left), rel=1e-12)
    assert analyse(pair).volume_mm3 < 1e-9  # summed signed volumes cancel
    found = inspect_model(pair)
    assert found.metal_volume_mm3 == pytest.approx(volume, rel=1e-12)
    assert [s.role for s in found.shells] == ["metal", "metal"] and found.turned_shells == 1
    assert found.kind == "piece" and [n["code"] for n in found.notes] == ["shells_turned"]


def test_a_flipped_patch_is_repaired_and_priced() -> None:
    band = corpus.ring_with_volume()
    broken = corpus.flipped_patch(band.triangles)
    assert analyse(broken).misoriented_edges > 0
    found = inspect_model(broken)
    assert found.problem is None and found.repaired_faces == 60
    assert found.metal_volume_mm3 == pytest.approx(band.volume_mm3, rel=1e-12)
    quote = price(found, "gold_585")
    assert quote.volume_mm3 == pytest.approx(band.volume_mm3, abs=1e-3)
    assert quote.warnings[0]["code"] == "faces_repaired" and "60 faces" in quote.warnings[0]["message"]


def test_a_whole_shell_inside_out_with_a_flipped_patch() -> None:
    band = corpus.ring_with_volume()
    found = inspect_model(corpus.flipped_patch(band.triangles[:, ::-1], 0, 30))
    assert found.metal_volume_mm3 == pytest.approx(band.volume_mm3, rel=1e-12)


def test_a_cavity_stays_a_cavity() -> None:
    hollow = np.concatenate([box(10, 10, 10), box(6, 6, 6)[:, ::-1]])
    found = inspect_model(hollow)
    assert found.metal_volume_mm3 == pytest.approx(1000 - 216)
    assert [s.role for s in found.shells] == ["metal", "void"] and found.turned_shells == 0
    assert any(n["code"] == "cavity" for n in found.notes)


def test_overlapping_bodies_are_united() -> None:
    tri, united, summed = corpus.overlapping_bodies()
    assert analyse(tri).volume_mm3 == pytest.approx(summed)
    found = inspect_model(tri)
    assert found.metal_volume_mm3 == pytest.approx(united, rel=1e-9)
    assert found.overlap_mm3 == pytest.approx(summed - united, rel=1e-9)
    assert found.stones == [] and any(n["code"] == "overlaps_united" for n in found.notes)


def test_separate_shells_far_apart_are_not_united() -> None:
    tri = np.concatenate([box(4, 4, 4), box(4, 4, 4, center=(10, 0, 0))])
    found = inspect_model(tri)
    assert found.metal_volume_mm3 == pytest.approx(128.0) and found.united_shells == 0


# --- stones -----------------------------------------------------------------------------------------

def test_set_stones_are_listed_and_not_metal() -> None:
    tri, metal, count = corpus.ring_with_stones()
    stone, stone_volume = corpus.brilliant(2.0)
    assert stone_volume == pytest.approx(trimesh_volume(stone), rel=1e-12)
    found = inspect_model(tri)
    assert len(found.stones) == count == 14
    assert found.metal_volume_mm3 == pytest.approx(metal, rel=1e-12)
    first = found.stones[0]
    assert first.shape == "round" and first.length_mm == pytest.approx(2.0, abs=0.05)
    assert first.depth_mm == pytest.approx(0.61 * 2.0, abs=0.01) and first.volume_mm3 == pytest.approx(stone_volume, abs=1e-3)
    ring_facts = found.ring()
    assert ring_facts is not None and ring_facts["size"]["us"] == 7.0


def test_a_small_metal_block_or_ball_is_not_a_stone() -> None:
    plate = box(20, 20, 2)
    tri = np.concatenate([plate, box(1, 1, 1, center=(0, 0, 1.4)), icosphere(0.6, 2) + [5, 5, 1.5]])
    found = inspect_model(tri)
    assert found.stones == []  # a block fills its box; a ball has no table


# --- rings ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["flat", "comfort", "d_shape", "court"])
def test_ring_hole_axis_and_size(profile: str) -> None:
    tri = ring(18.1, 5.0, 2.0, profile=profile, segments=128)
    tilt = np.array([[1, 0, 0], [0, math.cos(0.7), -math.sin(0.7)], [0, math.sin(0.7), math.cos(0.7)]])
    found = inspect_model(tri @ tilt.T + [3.0, -2.0, 7.0])
    facts = found.ring()
    assert facts is not None and facts["kind"] == "ring"
    assert facts["inner_diameter_mm"] == pytest.approx(18.1, abs=0.01)
    assert abs(np.dot(facts["axis"], tilt[:, 2])) == pytest.approx(1.0, abs=1e-6)
    assert facts["size"] == {"us": 8.0, "eu": 57, "in_chart": True}


def test_no_ring_in_a_disc_a_ball_or_a_pendant() -> None:
    assert inspect_model(box(20, 20, 2)).hole is None
    assert inspect_model(icosphere(5, 2)).hole is None
    pendant = np.concatenate([box(20, 30, 2), torus(4, 1, 32, 12) @ np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]]) + [0, 18, 0]])
    assert inspect_model(pendant).kind in ("piece", "parts")


def test_the_tenfold_ring_asks_to_confirm_its_scale() -> None:
    big = corpus.tenfold_ring()
    found = inspect_model(big.triangles)
    assert found.facts.size_mm == pytest.approx((117.0, 117.0, 25.0))
    concern = plausibility(found, 13.0, "Gold 585 (14k)")
    assert concern is not None and concern.code == "scale"
    assert "90.0 mm across" in concern.message and "confirm it" in concern.message
    assert "millimetres" in concern.message and concern.details["confirm"] == "scale"
    with pytest.raises(PricingRejected) as caught:
        price(found, "gold_585")
    assert caught.value.code == "scale_check" and caught.value.details["inner_diameter_mm"] == 90.0
    quote = price(found, "gold_585", DEFAULT_PRICING, confirm=("scale",))
    assert quote.confirmed == ["scale"] and quote.volume_mm3 == pytest.approx(big.volume_mm3, abs=1e-3)


def test_a_ring_of_usual_size_needs_no_confirmation() -> None:
    found = inspect_model(corpus.ring_with_volume().triangles)
    assert found.kind == "ring" and plausibility(found, 20.7, "Platinum") is None


def test_a_large_pendant_asks_to_confirm() -> None:
    concern = plausibility(inspect_model(box(90, 40, 3)), 13.0, "Gold")
    assert concern is not None and "90.0 mm long" in concern.message


# --- walls ------------------------------------------------------------------------------------------

def test_wall_thickness_by_ray_matches_the_plate() -> None:
    thickness = cast_inward(box(10, 10, 0.5), np.arange(12), 2.0)
    top_and_bottom = thickness[:4]
    assert np.allclose(top_and_bottom, 0.5)
    assert np.isinf(thickness[4:]).all()  # across the plate the wall is 10 mm: beyond the reach


def test_thin_band_is_flagged_with_places() -> None:
    band = corpus.thin_band()
    report = check_walls(band.triangles, 0.7, max_rays=10_000)  # every face measured
    assert not report.sampled and report.thinnest_mm == pytest.approx(0.45, abs=1e-6) and report.thin
    inner_outer = math.pi * 3.0 * (17.3 + 17.3 + 0.9)  # the band's inside and outside (polygonal: slightly less)
    assert report.thin_area_mm2 == pytest.approx(inner_outer, rel=0.01)
    assert 1 <= len(report.locations) <= 5 and all(loc["thinnest_mm"] < 0.7 for loc in report.locations)
    quote = price(inspect_model(band.triangles, min_wall_mm=0.7), "gold_585")
    assert quote.wall is not None and quote.wall["thinnest_mm"] == pytest.approx(0.45, abs=1e-3)
    thin = [w for w in quote.warnings if w["code"] == "thin_walls"]
    assert thin and "0.45 mm" in thin[0]["message"] and "0.7 mm" in thin[0]["message"]


def test_a_sound_ring_has_no_thin_walls() -> None:
    report = check_walls(ring(segments=96), 0.7)
    assert not report.thin and report.thinnest_mm is None  # every wall is beyond the 1.4 mm reach


def test_large_meshes_are_sampled_and_say_so() -> None:
    report = check_walls(corpus.thin_band().triangles, 0.7, max_rays=200)
    assert report.sampled and report.measured_faces <= 200 and report.thin
    assert report.thin_share == pytest.approx(0.87, abs=0.1)


# --- refusals and their order -------------------------------------------------------------------------

def test_an_inch_scale_open_part_is_told_about_units_not_holes() -> None:
    tiny_open = (ring(segments=64) / 25.4)[3:]
    assert analyse(tiny_open).boundary_edges > 0
    with pytest.raises(PricingRejected) as caught:
        price(inspect_model(tiny_open), "gold_585")
    assert caught.value.code == "too_small" and "inches" in caught.value.message


def test_open_edges_are_counted_and_located() -> None:
    open_box = box(10, 10, 10, center=(5, 5, 5))[2:]
    found = inspect_model(open_box)
    assert found.problem is not None and found.problem.open_edges == 4
    with pytest.raises(PricingRejected) as caught:
        price(found, "gold_585")
    error = caught.value
    assert error.code == "not_watertight" and "4 open edges" in error.message and "near (" in error.message
    assert error.details is not None and error.details["open_edges"] == 4
    assert all(p[2] == 0.0 for p in error.details["locations_mm"])  # the missing face is the bottom


def test_non_manifold_edges_are_located() -> None:
    double = np.concatenate([box(10, 10, 10), box(10, 10, 10, center=(10, 0, 0))])
    with pytest.raises(PricingRejected) as caught:
        price(inspect_model(double), "gold_585")
    assert caught.value.code == "non_manifold" and "near (5.0" in caught.value.message


def klein_bottle(n: int = 12, m: int = 10) -> np.ndarray:
    """A closed, non-orientable surface: a grid whose rows wrap with a flip (vertices placed at random)."""
    def index(i: int, j: int) -> int:
        if j == m:
            i, j = -i, 0
        return (i % n) * m + j

    faces = []
    for i in range(n):
        for j in range(m):
            a, b, c, d = index(i, j), index(i + 1, j), index(i + 1, j + 1), index(i, j + 1)
            faces += [[a, b, c], [a, c, d]]
    points = np.random.default_rng(5).normal(size=(n * m, 3)) * 5
    return points[np.array(faces)]


def test_a_surface_that_cannot_be_oriented_is_refused_in_words() -> None:
    tri = klein_bottle()
    facts = analyse(tri)
    assert facts.boundary_edges == 0 and facts.non_manifold_edges == 0 and facts.misoriented_edges > 0
    found = inspect_model(tri)
    assert found.problem is not None and found.problem.code == "not_orientable"
    with pytest.raises(PricingRejected) as caught:
        price(found, "gold_585")
    assert caught.value.code == "not_watertight" and "Möbius" in caught.value.message
    assert "upload it again" in caught.value.message

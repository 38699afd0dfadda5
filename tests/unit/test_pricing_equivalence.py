"""The faster checks give the same answers: quotes pinned as the earlier code priced them, and each fast
path against the plain formulation it replaced (the reference implementations live here)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alexandrite.mes.pricing.quote import price_model
from alexandrite.models3d import geometry, rings_detect, walls
from alexandrite.models3d.bvh import LEAF, build_tree, leaf_facing, segment_candidates
from alexandrite.models3d.geometry import distinct_points, face_areas, face_normal_rows, measure
from alexandrite.models3d.rings import ring
from alexandrite.models3d.rings_detect import find_hole
from alexandrite.models3d.shapes import box, torus
from alexandrite.models3d.writers import to_binary_stl
from tests.fixtures import corpus

PINS = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "pricing_pins.json").read_text())
PINNED_KEYS = ("total", "volume_mm3", "surface_mm2", "metal_mass_g", "breakdown", "facts", "kind", "ring", "wall",
               "stones", "shells")


def pinned_models() -> dict[str, np.ndarray]:
    return {
        "small_ring": ring(segments=96, profile_segments=8),
        "offset_court_ring": ring(19.0, 3.0, 1.6, "court", 160, 12) + (7.3, -3.1, 11.7),
        "ring_with_stones": corpus.ring_with_stones(6, 2.5)[0],
        "thin_band": corpus.thin_band().triangles,
        "mirrored_pair": corpus.mirrored_pair()[0],
    }


# The pins were made on one CPU; NumPy's sums and LAPACK's eigenvectors take other kernels on another and
# differ in the last bits (seen: a volume 389.52489443796304 against ...316, an axis component 1e-18
# against 0.0, a mirrored pair's cancelling volume 2.9e-15 against 6.9e-16). Floats are compared to 1e-9.
CLOSE = {"rel_tol": 1e-9, "abs_tol": 1e-9}


def differences(actual: Any, pinned: Any, path: str = "") -> list[str]:
    """Where ``actual`` differs from ``pinned``: structure, strings, ints and flags exactly, floats to 1e-9."""
    if isinstance(pinned, dict) and isinstance(actual, dict):
        if set(actual) != set(pinned):
            return [f"{path}: keys {sorted(set(actual) ^ set(pinned))}"]
        return [d for key in pinned for d in differences(actual[key], pinned[key], f"{path}/{key}")]
    if isinstance(pinned, list) and isinstance(actual, list):
        if len(actual) != len(pinned):
            return [f"{path}: {len(actual)} items, pinned {len(pinned)}"]
        return [d for i, (a, p) in enumerate(zip(actual, pinned, strict=True)) for d in differences(a, p, f"{path}[{i}]")]
    if isinstance(pinned, float) and type(actual) in (float, int) and not isinstance(actual, bool):
        return [] if math.isclose(actual, pinned, **CLOSE) else [f"{path}: {actual!r}, pinned {pinned!r}"]
    return [] if actual == pinned and type(actual) is type(pinned) else [f"{path}: {actual!r}, pinned {pinned!r}"]


@pytest.mark.parametrize("name", sorted(PINS))
def test_the_quote_is_the_one_the_earlier_checks_gave(name: str) -> None:
    """Every figure of the quote as the code before the faster checks priced it (floats to 1e-9)."""
    quote = price_model(to_binary_stl(pinned_models()[name]), "model.stl", "silver_925", confirm=("scale",)).as_dict()
    assert differences({key: quote[key] for key in PINNED_KEYS}, PINS[name]) == []


def test_the_comparison_catches_what_matters() -> None:
    pinned = PINS["small_ring"]
    assert differences(json.loads(json.dumps(pinned)), pinned) == []
    changed = json.loads(json.dumps(pinned))
    changed["total"] = pinned["total"] + 0.01  # a cent
    changed["facts"]["triangles"] += 1
    changed["ring"]["axis"] = [-v for v in pinned["ring"]["axis"]]
    found = differences(changed, pinned)
    assert any(d.startswith("/total") for d in found) and any("/facts/triangles" in d for d in found)
    assert any(d.startswith("/ring/axis[2]") for d in found)


def test_a_ring_axis_points_up_whatever_the_eigenvector_sign() -> None:
    """The reported axis has its largest component positive: the same ring mirrored top to bottom (its
    principal axes' eigenvectors then come out with the other sign on some builds) reports the same axis."""
    band = ring(segments=96, profile_segments=8)
    for tri in (band, band * np.array([1.0, 1.0, -1.0]), band[:, ::-1] * np.array([1.0, -1.0, -1.0])):
        hole = find_hole(np.ascontiguousarray(tri), 1)
        assert hole is not None
        assert max(hole.axis, key=abs) > 0 and math.isclose(max(map(abs, hole.axis)), 1.0, rel_tol=1e-9)
    assert rings_detect._pointing_up(np.array([0.1, -0.2, -0.9])).tolist() == [-0.1, 0.2, 0.9]
    assert rings_detect._pointing_up(np.array([0.0, 0.6, 0.8])).tolist() == [0.0, 0.6, 0.8]


def normal_rows(tri: np.ndarray) -> np.ndarray:
    return np.stack(face_normal_rows(tri))


# --- walls: the tree search and the ray-triangle test --------------------------------------------

def level_by_level(tri: np.ndarray, origins: np.ndarray, directions: np.ndarray,
                   reach: float) -> set[tuple[int, int]]:
    """The (ray, triangle) candidates of a descent through every level, boxes as (nodes, 3) rows."""
    tree = build_tree(tri)
    lo = [level.T for level in tree.lo]
    hi = [level.T for level in tree.hi]
    inverse = 1.0 / np.where(directions == 0.0, 1e-300, directions)
    ray, node = np.arange(len(origins)), np.zeros(len(origins), dtype=np.int64)
    for level in range(len(lo) - 1, -1, -1):
        t1 = (lo[level][node] - origins[ray]) * inverse[ray]
        t2 = (hi[level][node] - origins[ray]) * inverse[ray]
        near, far = np.minimum(t1, t2).max(axis=1), np.maximum(t1, t2).min(axis=1)
        meets = (far >= np.maximum(near, 0.0)) & (near <= reach)
        ray, node = ray[meets], node[meets]
        if level:
            ray = np.repeat(ray, 2)
            node = (node[:, None] * 2 + np.array([0, 1])).reshape(-1)
            ray, node = ray[node < len(lo[level - 1])], node[node < len(lo[level - 1])]
    return {(int(r), int(t)) for r, n in zip(ray, node, strict=True)
            for t in tree.order[n * LEAF:min((n + 1) * LEAF, len(tri))]}


def rays(tri: np.ndarray, every: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    faces = np.arange(0, len(tri), every)
    chosen = tri[faces]
    normal = np.cross(chosen[:, 1] - chosen[:, 0], chosen[:, 2] - chosen[:, 0])
    return faces, chosen.mean(axis=1), -normal / np.linalg.norm(normal, axis=1)[:, None]


SHAPES = {
    "ring": lambda: ring(segments=96, profile_segments=8).astype(np.float32).astype(np.float64),
    "thin band": lambda: corpus.thin_band().triangles,
    "stones": lambda: corpus.ring_with_stones(4, 2.0)[0],
    "box": lambda: box(20, 10, 2),
    "torus": lambda: torus(12.0, 2.0, 64, 16) + (3.0, -2.0, 1.0),
}
# Shapes whose normals do not all point the usual way: CAD noise (slivers, near-degenerate faces, one
# collapsed to a line) and a patch of faces turned inside out.
def _noisy_ring() -> np.ndarray:
    tri = corpus.with_cad_noise(ring(segments=96, profile_segments=8))
    tri[5, 2] = tri[5, 0] + 0.5 * (tri[5, 1] - tri[5, 0])  # a triangle with no area
    return tri


ODD_SHAPES = {
    "noisy ring": _noisy_ring,
    "flipped patch": lambda: corpus.flipped_patch(ring(segments=96, profile_segments=8)),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("reach", [0.3, 1.4, 6.0])
def test_skipping_levels_and_testing_boxes_above_the_leaves_finds_the_same_candidates(shape: str, reach: float) -> None:
    tri = SHAPES[shape]()
    _, origins, directions = rays(tri, 3)
    ray, triangle = segment_candidates(build_tree(tri), origins, directions, reach)
    found = set(zip(ray.tolist(), triangle.tolist(), strict=True))
    assert len(found) == len(ray)  # no pair twice
    assert found == level_by_level(tri, origins, directions, reach)


def einsum_hits(tri: np.ndarray, origins: np.ndarray, directions: np.ndarray, ray: np.ndarray, face: np.ndarray,
                source: np.ndarray, reach: float) -> np.ndarray:
    """Möller–Trumbore over (n, 3) rows with einsum dot products: the earlier formulation."""
    out = np.full(len(origins), np.inf)
    keep = face != source[ray]
    ray, face = ray[keep], face[keep]
    a, d = tri[face, 0], directions[ray]
    e1, e2 = tri[face, 1] - a, tri[face, 2] - a
    p = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, p)
    back = det < -1e-12 * np.sqrt(np.einsum("ij,ij->i", e1, e1) * np.einsum("ij,ij->i", e2, e2))
    inv = np.divide(1.0, det, out=np.zeros_like(det), where=back)
    s = origins[ray] - a
    u = np.einsum("ij,ij->i", s, p) * inv
    q = np.cross(s, e1)
    v = np.einsum("ij,ij->i", d, q) * inv
    dist = np.einsum("ij,ij->i", e2, q) * inv
    ok = back & (u >= -1e-9) & (v >= -1e-9) & (u + v <= 1 + 1e-9) & (dist > 1e-9 * reach) & (dist <= reach)
    np.minimum.at(out, ray[ok], dist[ok])
    return out


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_wall_thickness_is_bit_for_bit_the_einsum_formulation(shape: str) -> None:
    tri = SHAPES[shape]()
    faces, origins, directions = rays(tri, 1)
    reach = 4.5
    ray, face = segment_candidates(build_tree(tri), origins, directions, reach)
    fast = walls._hits(tri, origins, directions, ray, face, faces, reach)
    assert np.isfinite(fast).any()
    assert np.array_equal(fast, einsum_hits(tri, origins, directions, ray, face, faces, reach))


@pytest.mark.parametrize("shape", sorted({**SHAPES, **ODD_SHAPES}))
@pytest.mark.parametrize("reach", [0.3, 1.4, 6.0])
def test_skipping_front_faces_changes_no_wall(shape: str, reach: float) -> None:
    """Leaves whose triangles all face the ray, and front faces, are dropped before the exact test: the
    walls are bit for bit those of every candidate through the earlier formulation, from fewer pairs."""
    tri = {**SHAPES, **ODD_SHAPES}[shape]()
    faces, origins, directions = rays(tri, 1)
    tree = build_tree(tri)
    normals = normal_rows(tri)
    ray, face = segment_candidates(tree, origins, directions, reach)
    culled_ray, culled_face = segment_candidates(tree, origins, directions, reach, leaf_facing(tree, normals))
    culled = set(zip(culled_ray.tolist(), culled_face.tolist(), strict=True))
    assert culled <= set(zip(ray.tolist(), face.tolist(), strict=True))
    reference = einsum_hits(tri, origins, directions, ray, face, faces, reach)
    assert np.array_equal(walls._hits(tri, origins, directions, culled_ray, culled_face, faces, reach, normals),
                          reference)
    assert np.array_equal(walls._hits(tri, origins, directions, ray, face, faces, reach, normals), reference)
    if reach == 6.0:  # every shape has walls thinner than that: the comparison is not all inf
        assert np.isfinite(reference).any()
    if shape == "ring" and reach == 1.4:  # the pricing case (a wall check reaches twice the 0.7 mm minimum)
        assert len(culled_ray) < 0.7 * len(ray)


def test_a_leaf_with_faces_turned_opposite_ways_is_never_skipped() -> None:
    strip = np.array([[[x, 0.0, 0.0], [x + 1.0, 0.0, 0.0], [x, 1.0, 0.0]] for x in range(LEAF)],
                     dtype=np.float64)
    flat = leaf_facing(build_tree(strip), normal_rows(strip))  # one leaf, every normal +z
    assert flat.axis[:, 0].tolist() == [0.0, 0.0, 1.0]
    assert -1e-8 < flat.limit[0] < 0.0  # a ray going down (-z) skips it, one a hair off horizontal does not
    strip[-1] = strip[-1][::-1]  # one face turned over
    assert leaf_facing(build_tree(strip), normal_rows(strip)).limit.tolist() == [-2.0]


def test_row_dot_products_sum_in_einsum_order() -> None:
    rng = np.random.default_rng(11)
    u, v = (rng.normal(size=(5_000, 3)) * 10.0 ** rng.integers(-4, 4, size=(5_000, 3)) for _ in range(2))
    assert np.array_equal(walls._dot(*u.T, *v.T), np.einsum("ij,ij->i", u, v))


def test_face_areas_are_the_cross_product_norms() -> None:
    tri = SHAPES["torus"]()
    assert np.array_equal(face_areas(tri), np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]),
                                                            axis=1) / 2.0)


def test_sampled_faces_are_the_ones_numpys_choice_draws() -> None:
    rng = np.random.default_rng(9)
    for _ in range(200):
        area = rng.uniform(0.0, 3.0, int(rng.integers(2, 6_000)))
        area[rng.random(len(area)) < 0.2] = 0.0  # degenerate faces are never drawn
        area[0] = max(area[0], 1e-3)
        rays = int(rng.integers(1, len(area) + 2))
        faces, sampled = walls._chosen_faces(area, rays)
        if len(area) <= rays:
            assert not sampled and np.array_equal(faces, np.arange(len(area)))
            continue
        reference = np.unique(np.random.default_rng(walls._SAMPLE_SEED).choice(len(area), size=rays,
                                                                                 p=area / area.sum()))
        assert sampled and np.array_equal(faces, reference)
        assert not np.any(area[faces] == 0.0)
    with pytest.raises(ValueError, match="face areas sum to"):  # as NumPy's choice refuses such weights
        walls._chosen_faces(np.zeros(2_000), 1_024)


# --- the ring's hole -----------------------------------------------------------------------------

def test_innermost_points_are_what_a_sort_by_sector_and_distance_puts_first() -> None:
    """Near ties (radii 1e-15 apart) and exact ones (repeated points: the lower index wins)."""
    rng = np.random.default_rng(5)
    angle = rng.uniform(-np.pi, np.pi, 4_000)
    radius = rng.choice([7.0, 7.0 + 1e-15, 8.0, 9.5], size=4_000)
    ox, oy = radius * np.cos(angle), radius * np.sin(angle)
    ox = np.concatenate([ox, ox[:500]])  # exact duplicates: the lower index must win
    oy = np.concatenate([oy, oy[:500]])
    sector = np.minimum(((np.arctan2(oy, ox) + np.pi) / (2 * np.pi) * rings_detect.BINS).astype(np.int64),
                        rings_detect.BINS - 1)
    order = np.lexsort((np.hypot(ox, oy), sector))
    first = np.concatenate(([0], np.flatnonzero(np.diff(sector[order])) + 1))
    assert np.array_equal(rings_detect._innermost(ox, oy, sector), order[first])
    distance = np.hypot(ox, oy)
    assert rings_detect._extreme_distances(ox, oy) == (float(distance.min()), float(distance.max()))


def sorted_hole(tri: np.ndarray, genus: int) -> dict[str, Any] | None:
    """find_hole with every point's distance and a full sort per round: the earlier formulation."""
    original = rings_detect._innermost, rings_detect._extreme_distances

    def innermost(ox: np.ndarray, oy: np.ndarray, sector: np.ndarray) -> np.ndarray:
        order = np.lexsort((np.hypot(ox, oy), sector))
        return order[np.concatenate(([0], np.flatnonzero(np.diff(sector[order])) + 1))]

    def extremes(ox: np.ndarray, oy: np.ndarray) -> tuple[float, float]:
        distance = np.hypot(ox, oy)
        return float(distance.min()), float(distance.max())

    rings_detect._innermost, rings_detect._extreme_distances = innermost, extremes  # type: ignore[assignment]
    try:
        hole = find_hole(tri, genus)
    finally:
        rings_detect._innermost, rings_detect._extreme_distances = original  # type: ignore[assignment]
    return None if hole is None else hole.as_dict()


HOLE_MODELS = {
    "comfort": lambda: ring(segments=96, profile_segments=8),
    "flat-offset": lambda: ring(17.3, 4.0, 1.8, "flat", 96, 8) + (7.3, -3.1, 11.7),
    "tenfold": lambda: corpus.tenfold_ring().triangles,
    "noise": lambda: corpus.with_cad_noise(corpus.ring_with_volume(profile="comfort").triangles),
    "torus": lambda: torus(12.0, 2.0, 64, 16),
    "stones": lambda: corpus.ring_with_stones()[0],
    # a head off to one side: the first centre (the middle of the box around it all) is off the hole's
    "signet": lambda: np.concatenate([ring(segments=96, profile_segments=8), box(8.0, 5.0, 4.0, (0.0, 13.0, 0.0))]),
}


@pytest.mark.parametrize("model", sorted(HOLE_MODELS))
def test_the_hole_is_the_one_the_full_sort_finds(model: str) -> None:
    tri = HOLE_MODELS[model]()
    hole = find_hole(tri, 1)
    assert (None if hole is None else hole.as_dict()) == sorted_hole(tri, 1)
    if model != "stones":  # the stones sit in the hole's way along no axis but their own
        assert hole is not None


@pytest.mark.parametrize("model", sorted(HOLE_MODELS))
def test_the_hole_fitted_to_the_distinct_corners_is_the_one_every_corner_gives(model: str) -> None:
    tri = np.ascontiguousarray(HOLE_MODELS[model](), dtype=np.float64)
    merge = measure(tri)[1]
    points = distinct_points(tri.reshape(-1, 3), merge)
    if model == "noise":  # the merge joined corners a few ulps apart: every corner is fitted
        assert points is None
    else:
        assert points is not None and len(points) < len(tri)
    hole, fitted = find_hole(tri, 1), find_hole(tri, 1, merge)
    assert (None if hole is None else hole.as_dict()) == (None if fitted is None else fitted.as_dict())


def test_distinct_points_are_each_corner_once_in_the_order_they_first_occur() -> None:
    tri = np.ascontiguousarray(ring(segments=24, profile_segments=6), dtype=np.float64)
    corners = tri.reshape(-1, 3)
    rows = corners.view(np.dtype((np.void, 24))).ravel()  # a row's bytes: equal exactly when bit-identical
    _, first = np.unique(rows, return_index=True)
    points = distinct_points(corners, measure(tri)[1])
    assert points is not None and np.array_equal(points, corners[np.sort(first)])
    signed = corners.copy()
    zero = np.flatnonzero((signed == 0.0).any(axis=1))
    signed[zero[0]] = np.where(signed[zero[0]] == 0.0, -0.0, signed[zero[0]])  # one copy of a repeated corner
    assert any(np.array_equal(signed[zero[0]], corners[k]) for k in zero[1:])  # merged with its 0.0 copies
    # The merge takes -0.0 for 0.0; the fit would not (arctan2 tells them apart).
    assert distinct_points(signed, measure(signed.reshape(-1, 3, 3))[1]) is None


@pytest.mark.parametrize("model", sorted(HOLE_MODELS))
def test_stopping_the_fit_at_a_fixed_point_finds_the_hole_every_round_finds(
        model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tri = HOLE_MODELS[model]()
    fits = []
    circle = rings_detect._circle

    def counted(points: np.ndarray) -> tuple[np.ndarray, float]:
        fits.append(1)
        return circle(points)

    monkeypatch.setattr(rings_detect, "_circle", counted)
    early = find_hole(tri, 1)
    stopped_early = len(fits)
    monkeypatch.setattr(rings_detect, "_settled", lambda centre, before: False)
    every_round = find_hole(tri, 1)
    assert (None if early is None else early.as_dict()) == (None if every_round is None else every_round.as_dict())
    all_rounds = len(fits) - stopped_early
    assert stopped_early <= all_rounds
    if model == "comfort":  # a clean ring settles after its second fit: two of the four rounds are skipped
        assert all_rounds - stopped_early >= 2
    if model == "signet":  # the centre moves in the first rounds: stopping after the first fit would be wrong
        assert stopped_early >= 3


def covers_one_by_one(tri2d: np.ndarray, points: np.ndarray) -> bool:
    """The covering test point by point over every triangle: the earlier formulation."""
    for px, py in points:
        ax, ay = tri2d[:, 0, 0] - px, tri2d[:, 0, 1] - py
        bx, by = tri2d[:, 1, 0] - px, tri2d[:, 1, 1] - py
        cx, cy = tri2d[:, 2, 0] - px, tri2d[:, 2, 1] - py
        d1, d2, d3 = ax * by - ay * bx, bx * cy - by * cx, cx * ay - cy * ax
        if not ((((d1 < 0) | (d2 < 0) | (d3 < 0)) & ((d1 > 0) | (d2 > 0) | (d3 > 0))).all()):
            return True
    return False


def test_the_covering_test_on_boxed_triangles_agrees_with_every_triangle_one_point_at_a_time() -> None:
    rng = np.random.default_rng(11)
    answers = set()
    for _ in range(300):
        tri2d = rng.uniform(-10, 10, size=(int(rng.integers(1, 40)), 3, 2)) * rng.uniform(0.05, 1.0)
        centre = rng.uniform(-3, 3, size=2)
        probes = np.array([centre] + [centre + rng.uniform(0, 2) * np.array([np.cos(t), np.sin(t)])
                                      for t in np.linspace(0, 2 * np.pi, 8, endpoint=False)])
        expected = covers_one_by_one(tri2d, probes)
        assert rings_detect._Flat(tri2d).covers(probes) == expected
        answers.add(expected)
    assert answers == {True, False}  # both outcomes were exercised
    edge = np.array([[[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]])
    on_edge = np.array([[1.0, 1.0], [5.0, 5.0]])  # the first probe lies on the hypotenuse: edges count
    assert rings_detect._Flat(edge).covers(on_edge) and covers_one_by_one(edge, on_edge)


# --- volume ----------------------------------------------------------------------------------------

def test_volume_dot_products_are_numpys_up_to_the_chunk_and_chunked_beyond() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=25_000), rng.normal(size=25_000)
    n = geometry._DOT_CHUNK
    assert geometry._dot(x[:n], y[:n]) == float(np.dot(x[:n], y[:n]))
    chunks = [float(np.dot(x[at:at + n], y[at:at + n])) for at in range(0, 25_000, n)]
    assert geometry._dot(x, y) == (chunks[0] + chunks[1]) + chunks[2]


def test_the_reports_fields_are_read_as_asdict_would_give_them() -> None:
    """The reports' dicts skip ``dataclasses.asdict``'s deep copy: the same as long as their fields hold plain
    values (a nested dataclass would make them differ, and this test fail)."""
    from dataclasses import asdict

    from alexandrite.models3d.geometry import measure, plain_fields
    from alexandrite.models3d.stones import Stone

    tri = corpus.ring_with_stones(6, 2.5)[0]
    facts, _ = measure(tri)
    hole = find_hole(tri, 1)
    assert hole is not None
    stone = Stone(shell=2, shape="round", length_mm=2.5, width_mm=2.5, depth_mm=1.6, volume_mm3=4.1,
                  centre_mm=(0.0, 9.1, 0.4))
    for report in (facts, hole, stone):
        assert plain_fields(report) == asdict(report)

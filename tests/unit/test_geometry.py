"""Mesh analysis: known volumes, topology defects, exact vertex merging and invariance properties."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from alexandrite.models3d.geometry import MeshFacts, analyse, edge_topology, merge_vertices
from alexandrite.models3d.rings import ring
from alexandrite.models3d.shapes import box, icosphere, tetrahedron, torus


def rotation(a: float, b: float, c: float) -> np.ndarray:
    """A rotation matrix from three Euler angles."""
    ca, sa, cb, sb, cc, sc = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(c), math.sin(c)
    rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rx = np.array([[1, 0, 0], [0, cc, -sc], [0, sc, cc]])
    return rz @ ry @ rx


def test_unit_cube_exact() -> None:
    facts = analyse(box(1, 1, 1, center=(0.5, 0.5, 0.5)))
    assert facts == MeshFacts(
        triangles=12, vertices=8, volume_mm3=1.0, surface_mm2=6.0, bbox_min=(0.0, 0.0, 0.0),
        bbox_max=(1.0, 1.0, 1.0), size_mm=(1.0, 1.0, 1.0), watertight=True, inverted=False,
        boundary_edges=0, non_manifold_edges=0, degenerate_triangles=0, misoriented_edges=0,
    )
    assert json.loads(json.dumps(facts.as_dict()))["bbox_max"] == [1.0, 1.0, 1.0]


def test_float32_input_gives_the_same_facts() -> None:
    tri = box(10, 8, 3, center=(2.5, -1.0, 0.25))
    assert analyse(tri.astype(np.float32)) == analyse(tri)


def test_far_from_origin_stays_precise() -> None:
    assert analyse(box(10, 8, 3, center=(1e6, -2e6, 5e5))).volume_mm3 == pytest.approx(240.0, rel=1e-12)


def test_inside_out_mesh_is_inverted_with_the_same_volume() -> None:
    tri = torus(12.0, 2.0, 48, 12)
    facts, flipped = analyse(tri), analyse(tri[:, ::-1])
    assert not facts.inverted and flipped.inverted and flipped.watertight
    assert flipped.volume_mm3 == pytest.approx(facts.volume_mm3, rel=1e-14)
    assert flipped.surface_mm2 == pytest.approx(facts.surface_mm2, rel=1e-14)


def test_open_box() -> None:
    no_bottom = analyse(box(2, 3, 4)[2:])  # both triangles of the z- face removed
    assert not no_bottom.watertight and no_bottom.boundary_edges == 4 and no_bottom.non_manifold_edges == 0
    one_missing = analyse(box(2, 3, 4)[1:])
    assert one_missing.boundary_edges == 3 and one_missing.triangles == 11
    assert one_missing.surface_mm2 == pytest.approx(2 * (6 + 8 + 12) - 3)


def test_fin_makes_an_edge_non_manifold() -> None:
    tri = box(2, 2, 2)
    a, b = tri[0][0], tri[0][1]  # an edge of the bottom face, used by two faces already
    fin = np.array([[a, b, [0.0, 0.0, -5.0]]])
    facts = analyse(np.concatenate([tri, fin]))
    assert facts.non_manifold_edges == 1 and facts.boundary_edges == 2 and not facts.watertight


def test_one_flipped_face_breaks_orientation() -> None:
    tri = box(2, 2, 2).copy()
    tri[5] = tri[5][::-1]
    facts = analyse(tri)
    assert (facts.boundary_edges, facts.non_manifold_edges, facts.misoriented_edges) == (0, 0, 3)
    assert not facts.watertight


def test_degenerate_triangles_are_counted_and_do_not_break_topology() -> None:
    tri = box(2, 2, 2)
    p, q = tri[0][0], tri[0][1]
    sliver = np.array([[p, p, q], [q, q, q]])
    facts = analyse(np.concatenate([tri, sliver]))
    assert facts.degenerate_triangles == 2 and facts.watertight and facts.volume_mm3 == 8.0
    all_flat = analyse(np.array([[[0, 0, 0], [1, 0, 0], [2, 0, 0]]], dtype=float))
    assert all_flat.degenerate_triangles == 1 and not all_flat.watertight and all_flat.surface_mm2 == 0


def test_empty_input() -> None:
    facts = analyse(np.zeros((0, 3, 3)))
    assert facts.triangles == 0 and facts.volume_mm3 == 0 and not facts.watertight
    with pytest.raises(ValueError, match="shape"):
        analyse(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="infinite"):
        analyse(np.where(box(1, 1, 1) > 0.4, np.nan, box(1, 1, 1)))
    with pytest.raises(ValueError, match="infinite"):
        analyse(box(1, 1, 1) * 1e300)


def test_negative_zero_merges_with_zero() -> None:
    points = np.array([[0.0, -0.0, 1.0], [-0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    ids, count = merge_vertices(points)
    assert count == 2 and ids[0] == ids[1] == ids[2] != ids[3]


@pytest.mark.parametrize("hash_bits", [0, 1, 3, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_merge_is_exact_even_when_the_hash_collides(hash_bits: int, dtype: type) -> None:
    rng = np.random.default_rng(7)
    base = rng.integers(-3, 4, size=(400, 3)).astype(dtype) / 4  # many repeats
    points = np.concatenate([base, base[::-1], base[rng.permutation(400)]])
    ids, count = merge_vertices(points, hash_bits=hash_bits)
    unique, inverse = np.unique(points, axis=0, return_inverse=True)
    assert count == len(unique)
    # Same partition: ids and the reference inverse determine each other.
    pairs = np.unique(np.column_stack([ids, inverse.ravel()]), axis=0)
    assert len(pairs) == len(unique) == len(np.unique(ids))


def test_collisions_do_not_change_the_facts() -> None:
    tri = icosphere(3.0, 2)
    ids, _ = merge_vertices(tri.reshape(-1, 3), hash_bits=2)
    assert edge_topology(ids.reshape(-1, 3), int(ids.max()) + 1) == (0, 0, 0)


def test_agrees_with_trimesh_on_an_irregular_closed_mesh() -> None:
    tri = icosphere(10.0, 3)
    verts, inverse = np.unique(tri.reshape(-1, 3), axis=0, return_inverse=True)
    bumps = np.random.default_rng(3).uniform(0.7, 1.3, size=(len(verts), 1))
    lumpy = (verts * bumps)[inverse.reshape(-1, 3)]
    facts = analyse(lumpy)
    reference = trimesh.Trimesh(vertices=verts * bumps, faces=inverse.reshape(-1, 3), process=False)
    assert facts.watertight and reference.is_watertight
    assert facts.volume_mm3 == pytest.approx(reference.volume, rel=1e-12)
    assert facts.surface_mm2 == pytest.approx(reference.area, rel=1e-12)
    assert facts.vertices == len(verts) == 642


dims = st.floats(min_value=0.01, max_value=500.0, allow_nan=False)
offsets = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False)
angles = st.floats(min_value=-math.pi, max_value=math.pi, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(sx=dims, sy=dims, sz=dims, cx=offsets, cy=offsets, cz=offsets)
def test_random_boxes(sx: float, sy: float, sz: float, cx: float, cy: float, cz: float) -> None:
    facts = analyse(box(sx, sy, sz, center=(cx, cy, cz)))
    assert facts.volume_mm3 == pytest.approx(sx * sy * sz, rel=1e-9)
    assert facts.surface_mm2 == pytest.approx(2 * (sx * sy + sy * sz + sx * sz), rel=1e-9)
    assert facts.size_mm == pytest.approx((sx, sy, sz), rel=1e-9)
    assert facts.watertight and facts.vertices == 8


@settings(max_examples=40, deadline=None)
@given(a=angles, b=angles, c=angles, dx=offsets, dy=offsets, dz=offsets,
       scale=st.floats(min_value=0.05, max_value=20.0))
def test_volume_and_area_are_invariant_and_scale(a: float, b: float, c: float, dx: float, dy: float,
                                                 dz: float, scale: float) -> None:
    tri = ring(segments=40, profile_segments=6)
    base = analyse(tri)
    moved = analyse(tri @ rotation(a, b, c).T + np.array([dx, dy, dz]))
    assert moved.volume_mm3 == pytest.approx(base.volume_mm3, rel=1e-9)
    assert moved.surface_mm2 == pytest.approx(base.surface_mm2, rel=1e-9)
    assert moved.triangles == base.triangles and not moved.inverted
    scaled = analyse(tri * scale)
    assert scaled.volume_mm3 == pytest.approx(base.volume_mm3 * scale**3, rel=1e-12)
    assert scaled.surface_mm2 == pytest.approx(base.surface_mm2 * scale**2, rel=1e-12)
    mirrored = analyse(tri * np.array([-1.0, 1.0, 1.0]))
    assert mirrored.inverted and mirrored.volume_mm3 == pytest.approx(base.volume_mm3, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(offsets, offsets, offsets), min_size=4, max_size=4))
def test_random_tetrahedra(points: list[tuple[float, float, float]]) -> None:
    p = np.array(points)
    det = abs(float(np.linalg.det(p[1:] - p[0])))
    facts = analyse(tetrahedron(p))
    rounding = 1e-12 * (float(np.abs(p).max()) + 1.0) ** 3  # flat tetrahedra: floating-point noise only
    assert facts.volume_mm3 == pytest.approx(det / 6, rel=1e-9, abs=rounding)
    assert facts.triangles == 4


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["flip", "drop", "duplicate", "reverse_copy", "collapse"]),
                          st.integers(0, 79)), max_size=3))
def test_fast_watertight_check_agrees_with_full_edge_counts(edits: list[tuple[str, int]]) -> None:
    tri = icosphere(1.0, 1).copy()  # 80 faces, closed
    for edit, face in edits:
        face %= len(tri)
        if edit == "flip":
            tri[face] = tri[face][::-1]
        elif edit == "drop":
            tri = np.delete(tri, face, axis=0)
        elif edit == "duplicate":
            tri = np.concatenate([tri, tri[face:face + 1]])
        elif edit == "reverse_copy":
            tri = np.concatenate([tri, tri[face:face + 1, ::-1]])
        else:
            tri[face, 1] = tri[face, 0]
    facts = analyse(tri)
    ids, count = merge_vertices(tri.reshape(-1, 3))
    counts = edge_topology(ids.reshape(-1, 3), count)
    assert (facts.boundary_edges, facts.non_manifold_edges, facts.misoriented_edges) == counts
    assert facts.watertight == (counts == (0, 0, 0))
    if not edits:
        assert facts.watertight

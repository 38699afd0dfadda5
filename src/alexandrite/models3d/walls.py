"""Wall thickness: how far the metal goes straight in from the surface, by casting rays.

From a face's centre a ray runs along the inward normal; the wall there is the distance to the first
face it leaves the metal through (a face turned away from the ray: a back face). Rays stop at
``reach_mm``: walls thicker than that are reported as "at least reach_mm", which is all a casting
check needs. Faces whose ray finds a wall thinner than the alloy's minimum are *thin*.

Acceleration: a bounding-volume hierarchy built without a loop per triangle: triangles sorted by the
Morton code of their centres, ``_LEAF`` to a leaf, and boxes of 1, 2, 4, ... consecutive leaves level
by level up to one root. Rays descend it together, level by level, keeping the (ray, node) pairs whose
box the ray's segment meets; boxes bound their triangles exactly, so every crossed triangle is found.
Intersections are Möller–Trumbore, vectorised over (ray, triangle) pairs, in batches so memory stays
bounded.

Large meshes are *sampled*: up to ``max_rays`` faces are chosen at random with probability
proportional to their area (a fixed seed: the same model gives the same answer), so the thin area is
an estimate (thin share of the samples × surface) and a thin region smaller than about
1 / max_rays of the surface can be missed. Below ``max_rays`` faces every face is measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DEFAULT_RAYS", "WallReport", "cast_inward", "check_walls", "thin_faces"]

DEFAULT_RAYS = 1_024
_LEAF = 8
_BATCH_RAYS = 512
_BATCH_PAIRS = 1_000_000
_LOCATION_CELL_MM = 2.0
_MAX_LOCATIONS = 5


@dataclass(frozen=True)
class WallReport:
    """What the wall check found; thicknesses in mm, area in mm²."""

    minimum_mm: float  # the alloy's minimum the walls were checked against
    reach_mm: float  # walls were measured up to this thickness
    thinnest_mm: float | None  # None when every measured wall is at least reach_mm
    thin_area_mm2: float
    thin_share: float  # of the surface
    measured_faces: int
    sampled: bool
    locations: list[dict[str, Any]] = field(default_factory=list)  # [{at_mm: [x, y, z], thinnest_mm}]

    @property
    def thin(self) -> bool:
        return self.thin_area_mm2 > 0

    def as_dict(self) -> dict[str, Any]:
        return {"minimum_mm": self.minimum_mm, "reach_mm": self.reach_mm, "thinnest_mm": self.thinnest_mm,
                "thin_area_mm2": self.thin_area_mm2, "thin_share": self.thin_share,
                "measured_faces": self.measured_faces, "sampled": self.sampled, "locations": self.locations}


@dataclass
class _Tree:
    """An implicit bounding-volume hierarchy: triangles in Morton order, ``LEAF`` per leaf, and per level
    the boxes of 1, 2, 4, ... consecutive leaves (level 0: the leaves)."""

    order: np.ndarray  # triangle indices in Morton order
    lo: list[np.ndarray]  # per level, (nodes, 3)
    hi: list[np.ndarray]


def _morton(points: np.ndarray) -> np.ndarray:
    """30-bit Morton codes (10 bits per axis) of points scaled into their bounding box."""
    code = np.zeros(len(points), dtype=np.int64)
    for axis in range(3):  # spread each axis's 10 bits two apart, then interleave
        column = points[:, axis]
        lo, hi = float(column.min()), float(column.max())
        v = ((column - lo) * (1023.0 / (hi - lo) if hi > lo else 0.0)).astype(np.int64)
        v = (v | (v << 16)) & 0x030000FF
        v = (v | (v << 8)) & 0x0300F00F
        v = (v | (v << 4)) & 0x030C30C3
        v = (v | (v << 2)) & 0x09249249
        code |= v << (2 - axis)
    return code


def _build(tri: np.ndarray) -> _Tree:
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    lo_tri = np.minimum(np.minimum(a, b), c)
    hi_tri = np.maximum(np.maximum(a, b), c)
    # One plain sort of (Morton code << index bits | index) instead of an argsort.
    index_bits = max(1, int(len(tri) - 1).bit_length())
    keys = _morton((lo_tri + hi_tri) * 0.5) << index_bits
    keys |= np.arange(len(tri), dtype=np.int64)
    keys.sort()
    order = keys & ((1 << index_bits) - 1)
    lo_tri = lo_tri[order]
    hi_tri = hi_tri[order]
    starts = np.arange(0, len(tri), _LEAF)
    lo, hi = [np.minimum.reduceat(lo_tri, starts, axis=0)], [np.maximum.reduceat(hi_tri, starts, axis=0)]
    while len(lo[-1]) > 1:
        below_lo, below_hi = lo[-1], hi[-1]
        if len(below_lo) % 2:
            below_lo = np.concatenate([below_lo, below_lo[-1:]])
            below_hi = np.concatenate([below_hi, below_hi[-1:]])
        lo.append(np.minimum(below_lo[0::2], below_lo[1::2]))
        hi.append(np.maximum(below_hi[0::2], below_hi[1::2]))
    return _Tree(order, lo, hi)


def _segment_meets_box(origins: np.ndarray, inverse: np.ndarray, reach: float, lo: np.ndarray,
                       hi: np.ndarray) -> np.ndarray:
    """Slab test: does the segment origin + t·direction, 0 <= t <= reach, meet the box?"""
    t1 = (lo - origins) * inverse
    t2 = (hi - origins) * inverse
    near = np.minimum(t1, t2).max(axis=1)
    far = np.maximum(t1, t2).min(axis=1)
    return (far >= np.maximum(near, 0.0)) & (near <= reach)


def _candidates(tree: _Tree, origins: np.ndarray, directions: np.ndarray,
                reach: float) -> tuple[np.ndarray, np.ndarray]:
    """(ray, triangle) pairs whose leaf box the ray segment meets: every triangle it can cross."""
    safe = np.where(directions == 0.0, 1e-300, directions)
    inverse = 1.0 / safe
    ray = np.arange(len(origins))
    node = np.zeros(len(origins), dtype=np.int64)
    for level in range(len(tree.lo) - 1, -1, -1):
        meets = _segment_meets_box(origins[ray], inverse[ray], reach, tree.lo[level][node], tree.hi[level][node])
        ray, node = ray[meets], node[meets]
        if level:
            children = len(tree.lo[level - 1])
            ray = np.repeat(ray, 2)
            node = (node[:, None] * 2 + np.array([0, 1])).reshape(-1)
            inside = node < children
            ray, node = ray[inside], node[inside]
    first = node * _LEAF
    count = np.minimum(first + _LEAF, len(tree.order)) - first
    total = int(count.sum())
    offsets = np.repeat(first - np.concatenate(([0], np.cumsum(count)[:-1])), count) + np.arange(total)
    return np.repeat(ray, count), tree.order[offsets]


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    out = np.empty_like(u)
    out[:, 0] = u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1]
    out[:, 1] = u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2]
    out[:, 2] = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
    return out


def _hits(tri: np.ndarray, origins: np.ndarray, directions: np.ndarray, ray: np.ndarray, face: np.ndarray,
          source: np.ndarray, reach: float) -> np.ndarray:
    """Nearest back-face hit distance per ray (inf if none within reach), Möller–Trumbore per pair."""
    out = np.full(len(origins), np.inf)
    keep = face != source[ray]
    ray, face = ray[keep], face[keep]
    if len(ray) == 0:
        return out
    a = tri[face, 0]
    e1 = tri[face, 1] - a
    e2 = tri[face, 2] - a
    d = directions[ray]
    p = _cross(d, e2)
    det = np.einsum("ij,ij->i", e1, p)
    scale = np.einsum("ij,ij->i", e1, e1) * np.einsum("ij,ij->i", e2, e2)
    back = det < -1e-12 * np.sqrt(scale)  # the ray leaves the metal through this face
    inv = np.divide(1.0, det, out=np.zeros_like(det), where=back)
    s = origins[ray] - a
    u = np.einsum("ij,ij->i", s, p) * inv
    q = _cross(s, e1)
    v = np.einsum("ij,ij->i", d, q) * inv
    dist = np.einsum("ij,ij->i", e2, q) * inv
    eps = 1e-9
    ok = back & (u >= -eps) & (v >= -eps) & (u + v <= 1 + eps) & (dist > 1e-9 * reach) & (dist <= reach)
    np.minimum.at(out, ray[ok], dist[ok])
    return out


def cast_inward(tri: np.ndarray, faces: np.ndarray, reach: float) -> np.ndarray:
    """Wall thickness at the centre of each given face (inf where it is at least ``reach``)."""
    tri = np.asarray(tri, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) == 0:
        return np.zeros(0)
    tree = _build(tri)
    chosen = tri[faces]
    origins = chosen.mean(axis=1)
    normal = np.cross(chosen[:, 1] - chosen[:, 0], chosen[:, 2] - chosen[:, 0])
    length = np.linalg.norm(normal, axis=1)
    directions = -normal / np.where(length > 0, length, 1.0)[:, None]
    out = np.full(len(faces), np.inf)
    for lo in range(0, len(faces), _BATCH_RAYS):
        part = slice(lo, lo + _BATCH_RAYS)
        ray, face = _candidates(tree, origins[part], directions[part], reach)
        hits = np.full(len(origins[part]), np.inf)
        for at in range(0, len(ray), _BATCH_PAIRS):  # bounded memory: about 250 bytes per pair
            np.minimum(hits, _hits(tri, origins[part], directions[part], ray[at:at + _BATCH_PAIRS],
                                   face[at:at + _BATCH_PAIRS], faces[part], reach), out=hits)
        hits[length[part] <= 0] = np.inf
        out[part] = hits
    return out


def _chosen_faces(area: np.ndarray, max_rays: int) -> tuple[np.ndarray, bool]:
    n = len(area)
    if n <= max_rays:
        return np.arange(n), False
    rng = np.random.default_rng(20261125)
    return np.unique(rng.choice(n, size=max_rays, p=area / area.sum())), True


def check_walls(tri: np.ndarray, minimum_mm: float, *, reach_mm: float | None = None,
                max_rays: int = DEFAULT_RAYS, area: np.ndarray | None = None) -> WallReport:
    """Walls thinner than ``minimum_mm``: the thinnest, the thin area and where (up to 5 places).

    ``area`` (per face) may be passed when the caller has it already.
    """
    tri = np.asarray(tri, dtype=np.float64)
    reach = reach_mm if reach_mm is not None else 2.0 * minimum_mm
    if area is None:
        area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2.0
    total = float(area.sum())
    if len(tri) == 0 or total <= 0:
        return WallReport(minimum_mm, reach, None, 0.0, 0.0, 0, False)
    faces, sampled = _chosen_faces(area, max_rays)
    thickness = cast_inward(tri, faces, reach)
    thin = thickness < minimum_mm
    if sampled:  # area-weighted sample: each measured face stands for an equal share of the surface
        thin_area = total * float(thin.mean())
    else:
        thin_area = float(area[faces[thin]].sum())
    finite = thickness[np.isfinite(thickness)]
    thinnest = round(float(finite.min()), 3) if len(finite) else None
    return WallReport(minimum_mm, reach, thinnest, round(thin_area, 2), round(thin_area / total, 4), len(faces),
                      sampled, _locations(tri[faces[thin]].mean(axis=1), thickness[thin]))


def _locations(points: np.ndarray, thickness: np.ndarray) -> list[dict[str, Any]]:
    """The thinnest spot of each 2 mm cell holding thin faces, thinnest cells first (up to 5)."""
    if len(points) == 0:
        return []
    cells = np.floor(points / _LOCATION_CELL_MM).astype(np.int64)
    _, group = np.unique(cells, axis=0, return_inverse=True)
    group = group.ravel()
    order = np.lexsort((thickness, group))
    first = order[np.concatenate(([True], np.diff(group[order]) != 0))]
    first = first[np.argsort(thickness[first], kind="stable")][:_MAX_LOCATIONS]
    return [{"at_mm": [round(float(v), 2) for v in points[i]], "thinnest_mm": round(float(thickness[i]), 3)}
            for i in first]


def thin_faces(tri: np.ndarray, minimum_mm: float, *, max_rays: int = 50_000) -> tuple[np.ndarray, bool]:
    """(indices of thin faces, sampled) for showing them: with a sample, every face in a grid cell of a
    thin sample's size around a thin sample is marked, so regions show whole."""
    tri = np.asarray(tri, dtype=np.float64)
    if len(tri) == 0:
        return np.zeros(0, dtype=np.int64), False
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2.0
    faces, sampled = _chosen_faces(area, max_rays)
    thickness = cast_inward(tri, faces, 2.0 * minimum_mm)
    thin = faces[thickness < minimum_mm]
    if not sampled or len(thin) == 0:
        return thin, sampled
    centres = tri.mean(axis=1)
    spacing = float(np.sqrt(area.sum() / len(faces)))
    cells = np.floor((centres - centres.min(axis=0)) / spacing).astype(np.int64)
    dims = cells.max(axis=0) + 1
    keys = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    return np.flatnonzero(np.isin(keys, keys[thin])), sampled

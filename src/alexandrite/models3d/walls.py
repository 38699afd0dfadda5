"""Wall thickness: how far the metal goes straight in from the surface, by casting rays.

From a face's centre a ray runs along the inward normal; the wall there is the distance to the first
face it leaves the metal through (a face turned away from the ray: a back face). Rays stop at
``reach_mm``: walls thicker than that are reported as "at least reach_mm", which is all a casting
check needs. Faces whose ray finds a wall thinner than the alloy's minimum are *thin*.

Acceleration: a bounding-volume hierarchy (:mod:`bvh`): the rays descend it together, keeping the
(ray, node) pairs whose box the ray's segment meets; boxes bound their triangles exactly, so every
crossed triangle is found. Intersections are Möller–Trumbore, vectorised over (ray, triangle) pairs,
in batches so memory stays bounded: as many rays at a time as can meet every leaf within
``_BATCH_PAIRS`` pairs, and at least ``_BATCH_RAYS`` (a small mesh's rays go down in one batch).

Large meshes are *sampled*: up to ``max_rays`` faces are chosen at random with probability
proportional to their area (a fixed seed: the same model gives the same answer), so the thin area is
an estimate (thin share of the samples × surface) and a thin region smaller than about
1 / max_rays of the surface can be missed. Below ``max_rays`` faces every face is measured.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alexandrite.models3d.bvh import build_tree, leaf_facing, segment_candidates
from alexandrite.models3d.geometry import face_areas, face_normal_rows

__all__ = ["DEFAULT_RAYS", "WallReport", "cast_inward", "check_walls", "thin_faces"]

DEFAULT_RAYS = 1_024
_BATCH_RAYS = 512
_BATCH_PAIRS = 1_000_000
_LOCATION_CELL_MM = 2.0
_MAX_LOCATIONS = 5
# Every triangle's normal is computed for the front-face filter when the mesh has at most this many
# triangles per ray (a large mesh's sample meets few of them: its normals would cost more than they save).
_FILTER_RATIO = 4


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


def _dot(ux: np.ndarray, uy: np.ndarray, uz: np.ndarray, vx: np.ndarray, vy: np.ndarray,
         vz: np.ndarray) -> np.ndarray:
    """Row-wise dot products, summed as (x + z) + y: the order numpy's ``einsum("ij,ij->i")`` sums three
    columns in, which this check used before, so thicknesses stay bit for bit what they were."""
    out = ux * vx
    out += uz * vz
    out += uy * vy
    return out


def _hits(tri: np.ndarray, origins: np.ndarray, directions: np.ndarray, ray: np.ndarray, face: np.ndarray,
          source: np.ndarray, reach: float, normals: np.ndarray | None = None) -> np.ndarray:
    """Nearest back-face hit distance per ray (inf if none within reach), Möller–Trumbore per pair.

    Pairs are dropped as soon as a test rules them out (front faces first), so later steps work on fewer.
    ``normals`` (every triangle's e1 × e2, as (3, n) rows), when given, drop the front faces before the
    corners are gathered: Möller–Trumbore's determinant is −direction · (e1 × e2), so a back face has
    direction · normal > 0 by far more than rounding; the exact test below still decides, on fewer pairs.
    """
    out = np.full(len(origins), np.inf)
    keep = face != source[ray]
    if normals is not None:
        facing = _dot(*(directions[:, k][ray] for k in range(3)), *(normals[k][face] for k in range(3)))
        keep &= facing > 0.0
    ray, face = ray[keep], face[keep]
    if len(ray) == 0:
        return out
    # Each pair's corners and ray as coordinate rows (gathered one coordinate at a time: no transposed copies),
    # so the arithmetic below runs on whole contiguous rows.
    corners = tri.reshape(-1, 9)
    ax, ay, az, bx, by, bz, cx, cy, cz = (corners[:, k][face] for k in range(9))
    dx, dy, dz = (directions[:, k][ray] for k in range(3))
    e1x, e1y, e1z = bx - ax, by - ay, bz - az
    e2x, e2y, e2z = cx - ax, cy - ay, cz - az
    px = dy * e2z - dz * e2y
    py = dz * e2x - dx * e2z
    pz = dx * e2y - dy * e2x
    det = _dot(e1x, e1y, e1z, px, py, pz)
    scale = _dot(e1x, e1y, e1z, e1x, e1y, e1z) * _dot(e2x, e2y, e2z, e2x, e2y, e2z)
    back = np.flatnonzero(det < -1e-12 * np.sqrt(scale))  # the ray leaves the metal through this face
    ray, det, px, py, pz = ray[back], det[back], px[back], py[back], pz[back]
    e1x, e1y, e1z, e2x, e2y, e2z = e1x[back], e1y[back], e1z[back], e2x[back], e2y[back], e2z[back]
    dx, dy, dz = dx[back], dy[back], dz[back]
    ox, oy, oz = (origins[:, k][ray] for k in range(3))
    sx, sy, sz = ox - ax[back], oy - ay[back], oz - az[back]
    inv = 1.0 / det
    u = _dot(sx, sy, sz, px, py, pz)
    u *= inv
    qx = sy * e1z - sz * e1y
    qy = sz * e1x - sx * e1z
    qz = sx * e1y - sy * e1x
    v = _dot(dx, dy, dz, qx, qy, qz)
    v *= inv
    dist = _dot(e2x, e2y, e2z, qx, qy, qz)
    dist *= inv
    eps = 1e-9
    ok = (u >= -eps) & (v >= -eps) & (u + v <= 1 + eps) & (dist > 1e-9 * reach) & (dist <= reach)
    np.minimum.at(out, ray[ok], dist[ok])
    return out


def cast_inward(tri: np.ndarray, faces: np.ndarray, reach: float) -> np.ndarray:
    """Wall thickness at the centre of each given face (inf where it is at least ``reach``)."""
    tri = np.asarray(tri, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) == 0:
        return np.zeros(0)
    tree = build_tree(tri)
    chosen = tri[faces]
    origins = chosen.mean(axis=1)
    normal = np.cross(chosen[:, 1] - chosen[:, 0], chosen[:, 2] - chosen[:, 0])
    length = np.linalg.norm(normal, axis=1)
    directions = -normal / np.where(length > 0, length, 1.0)[:, None]
    normals = np.stack(face_normal_rows(tri)) if len(tri) <= _FILTER_RATIO * len(faces) else None
    away = leaf_facing(tree, normals) if normals is not None else None
    out = np.full(len(faces), np.inf)
    batch = max(_BATCH_RAYS, _BATCH_PAIRS // tree.leaves)  # rays × leaves bounds the pairs of a batch
    for lo in range(0, len(faces), batch):
        part = slice(lo, lo + batch)
        ray, face = segment_candidates(tree, origins[part], directions[part], reach, away)
        hits = np.full(len(origins[part]), np.inf)
        for at in range(0, len(ray), _BATCH_PAIRS):  # bounded memory: about 250 bytes per pair
            np.minimum(hits, _hits(tri, origins[part], directions[part], ray[at:at + _BATCH_PAIRS],
                                   face[at:at + _BATCH_PAIRS], faces[part], reach, normals), out=hits)
        hits[length[part] <= 0] = np.inf
        out[part] = hits
    return out


_SAMPLE_SEED = 20261125


@functools.lru_cache(maxsize=8)
def _uniform_draws(size: int) -> np.ndarray:
    """The first ``size`` uniform draws of a fresh generator with the sample's seed (the same for every model)."""
    draws = np.random.default_rng(_SAMPLE_SEED).random(size)
    draws.flags.writeable = False
    return draws


def _chosen_faces(area: np.ndarray, max_rays: int) -> tuple[np.ndarray, bool]:
    """(sorted distinct faces drawn with probability proportional to area, sampled): what
    ``np.unique(default_rng(seed).choice(n, size=max_rays, p=area / area.sum()))`` gives, computed as NumPy's
    ``choice`` does (the cumulative distribution searched for uniform draws) with the draws kept between
    models and the distinct faces read from a count instead of a sort."""
    n = len(area)
    if n <= max_rays:
        return np.arange(n), False
    total = float(area.sum())
    if not (np.isfinite(total) and total > 0):
        raise ValueError(f"face areas sum to {total}: no face can be drawn in proportion to its area")
    cdf = (area / total).cumsum()
    cdf /= cdf[-1]
    drawn = cdf.searchsorted(_uniform_draws(max_rays), side="right")
    return np.flatnonzero(np.bincount(drawn, minlength=n)), True


def check_walls(tri: np.ndarray, minimum_mm: float, *, reach_mm: float | None = None,
                max_rays: int = DEFAULT_RAYS, area: np.ndarray | None = None) -> WallReport:
    """Walls thinner than ``minimum_mm``: the thinnest, the thin area and where (up to 5 places).

    ``area`` (per face) may be passed when the caller has it already.
    """
    tri = np.asarray(tri, dtype=np.float64)
    reach = reach_mm if reach_mm is not None else 2.0 * minimum_mm
    if area is None:
        area = face_areas(tri)
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
    area = face_areas(tri)
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

"""Is the piece a ring? Find a round through-hole, its axis and inner diameter, and the ring size.

Method, on the metal's triangles (stones left out):

1. candidate axes: the principal axes of the area-weighted face centres, flattest direction first
   (a band is a short tube: its axis is the direction of least spread);
2. per axis, project the vertices on the plane across it; start from the middle of the projection and
   fit a circle, a few times, to the innermost point of each of ``BINS`` angular sectors (Kåsa fit);
3. the hole counts when every sector has metal around it, the innermost points lie on a circle
   (spread below ``MAX_ROUNDNESS`` of the radius), and no triangle covers the hole's centre or the
   points half-way to its edge (nothing closes it along the axis);
4. the inner diameter is twice the distance from the centre to the nearest vertex; the outer diameter
   twice the farthest; the band width is the extent along the axis.

Sizes come from :mod:`alexandrite.models3d.ring_sizes` (US and EU; the nearest size, also outside
the chart, which says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from alexandrite.models3d import ring_sizes
from alexandrite.models3d.geometry import VertexMerge, distinct_points, face_areas, plain_fields

__all__ = ["Hole", "find_hole", "ring_size"]

BINS = 48
MAX_ROUNDNESS = 0.2
FIT_ROUNDS = 4
SAMPLE_FACES = 20_000  # faces used for the axes and the covering test (a uniform sample beyond this)


@dataclass(frozen=True)
class Hole:
    """A round through-hole: axis (unit vector), centre, inner and outer diameters, width along the axis."""

    axis: tuple[float, float, float]
    centre_mm: tuple[float, float, float]
    inner_diameter_mm: float
    outer_diameter_mm: float
    width_mm: float

    def as_dict(self) -> dict[str, Any]:
        out = plain_fields(self)
        out["axis"], out["centre_mm"] = list(self.axis), list(self.centre_mm)
        return out


def ring_size(inner_diameter_mm: float) -> dict[str, Any]:
    """US and EU sizes nearest to an inner diameter, and whether the chart offers them."""
    us, eu = ring_sizes.us_size(inner_diameter_mm), ring_sizes.eu_size(inner_diameter_mm)
    return {"us": us, "eu": eu, "in_chart": us in ring_sizes.US_SIZES and eu in ring_sizes.EU_SIZES}


def _circle(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares circle (Kåsa): centre and radius."""
    x, y = points[:, 0], points[:, 1]
    a = np.column_stack([x, y, np.ones_like(x)])
    b = x * x + y * y
    (cx, cy, c), *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = np.array([cx / 2.0, cy / 2.0])
    return centre, float(np.sqrt(max(c + centre @ centre, 0.0)))


class _Flat:
    """Triangles projected on a plane, as six contiguous coordinate rows (corner a, b, c; x and y)."""

    def __init__(self, tri2d: np.ndarray) -> None:
        self.ax, self.ay, self.bx, self.by, self.cx, self.cy = (tri2d[:, corner, k].copy()
                                                                for corner in range(3) for k in range(2))

    def covers(self, points: np.ndarray) -> bool:
        """Whether any projected triangle contains any of the points (k, 2) (its edges included).

        Only triangles whose box meets the points' box can contain one; the test runs on those, every
        point against every one of them at once."""
        (low_x, low_y), (high_x, high_y) = points.min(axis=0), points.max(axis=0)
        near = np.maximum(np.maximum(self.ax, self.bx), self.cx) >= low_x
        near &= np.minimum(np.minimum(self.ax, self.bx), self.cx) <= high_x
        near &= np.maximum(np.maximum(self.ay, self.by), self.cy) >= low_y
        near &= np.minimum(np.minimum(self.ay, self.by), self.cy) <= high_y
        some = np.flatnonzero(near)
        if len(some) == 0:
            return False
        px, py = points[:, :1], points[:, 1:]  # (k, 1) columns against the triangles' rows
        ax, ay, bx, by, cx, cy = (self.ax[some] - px, self.ay[some] - py, self.bx[some] - px, self.by[some] - py,
                                  self.cx[some] - px, self.cy[some] - py)
        d1 = ax * by - ay * bx
        d2 = bx * cy - by * cx
        d3 = cx * ay - cy * ax
        neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
        pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
        return not bool((neg & pos).all())


# A candidate for a nearest or farthest point: its squared distance within this share of the extreme one.
# hypot is within an ulp of the true distance and the square within two, so the point hypot puts first
# is always among the candidates; hypot itself then runs on a handful of points instead of all of them.
_SQUARE_MARGIN = 1e-9


def _innermost(ox: np.ndarray, oy: np.ndarray, sector: np.ndarray) -> np.ndarray:
    """Per sector (in sector order), the index of the point nearest the centre by ``np.hypot``, the lowest
    index among equally near ones: what a stable sort by (sector, distance) puts first in each sector."""
    square = ox * ox
    square += oy * oy
    low = np.full(BINS, np.inf)
    np.minimum.at(low, sector, square)
    near = np.flatnonzero(square <= low[sector] * (1.0 + _SQUARE_MARGIN))
    near_sector = sector[near]
    order = np.lexsort((np.hypot(ox[near], oy[near]), near_sector))  # stable: lower index first on ties
    first = np.concatenate(([0], np.flatnonzero(np.diff(near_sector[order])) + 1))
    return near[order[first]]


def _extreme_distances(ox: np.ndarray, oy: np.ndarray) -> tuple[float, float]:
    """(nearest, farthest) ``np.hypot`` distance of the points from the centre."""
    square = ox * ox
    square += oy * oy
    low, high = float(square.min()), float(square.max())
    near = np.flatnonzero(square <= low * (1.0 + _SQUARE_MARGIN))
    far = np.flatnonzero(square >= high * (1.0 - _SQUARE_MARGIN))
    return float(np.hypot(ox[near], oy[near]).min()), float(np.hypot(ox[far], oy[far]).max())


def _settled(centre: np.ndarray, before: np.ndarray) -> bool:
    """Whether a round's fit left the centre where it was, to the bit: a fixed point, so the rounds left would
    pick the same innermost points and fit the same circle again."""
    return centre.tobytes() == before.tobytes()


def _pointing_up(axis: np.ndarray) -> np.ndarray:
    """The axis with its largest component positive. It comes from an eigenvector, whose sign is the
    linear algebra library's choice (it differs between CPUs); the reported axis does not."""
    return -axis if axis[int(np.argmax(np.abs(axis)))] < 0 else axis


def _hole_along(axis: np.ndarray, points: np.ndarray, corners: np.ndarray) -> Hole | None:
    """The hole along ``axis``, fitted to ``points`` (the corners, or the distinct ones among them: the same
    answer), with ``corners`` (the triangles' corners, in order) for the covering test."""
    basis = np.linalg.svd(np.eye(3) - np.outer(axis, axis))[0][:, :2]
    flat = points @ basis
    fx, fy = flat[:, 0].copy(), flat[:, 1].copy()
    centre = (np.array([fx.min(), fy.min()]) + np.array([fx.max(), fy.max()])) / 2.0
    radius = 0.0
    for _ in range(FIT_ROUNDS):
        ox, oy = fx - centre[0], fy - centre[1]
        angle = np.arctan2(oy, ox)
        angle += np.pi
        angle /= 2 * np.pi
        angle *= BINS
        sector = np.minimum(angle.astype(np.int64), BINS - 1)
        if np.bincount(sector, minlength=BINS).min() == 0:
            return None  # metal does not go all the way round
        inner = flat[_innermost(ox, oy, sector)]
        before = centre
        centre, radius = _circle(inner)
        if _settled(centre, before):
            break
    nearest, farthest = _extreme_distances(fx - centre[0], fy - centre[1])
    inner_radii = np.hypot(*(inner - centre).T)
    if radius <= 0 or nearest <= 0 or float(np.ptp(inner_radii)) > MAX_ROUNDNESS * radius:
        return None
    projected = _Flat((flat if points is corners else corners @ basis).reshape(-1, 3, 2))
    probes = np.array([centre] + [centre + 0.5 * nearest * np.array([np.cos(t), np.sin(t)])
                                  for t in np.linspace(0, 2 * np.pi, 8, endpoint=False)])
    if projected.covers(probes):
        return None
    along = points @ axis
    middle = float((along.min() + along.max()) / 2.0)
    centre3 = basis @ centre + axis * middle
    return Hole(tuple(float(v) for v in _pointing_up(axis)),  # type: ignore[arg-type]
                tuple(round(float(v), 3) for v in centre3),  # type: ignore[arg-type]
                round(2 * nearest, 3), round(2 * farthest, 3), round(float(np.ptp(along)), 3))


def find_hole(tri: np.ndarray, genus: int, merge: VertexMerge | None = None) -> Hole | None:
    """The widest round through-hole of a piece of genus >= 1 along one of its principal axes, or None.

    ``merge``, when the caller has it: the vertex merge of these very corners (:func:`geometry.measure`'s).
    The circle is then fitted to each distinct corner once (:func:`geometry.distinct_points`), the same
    points with their repeats left out (about a sixth as many), when they are bit-identical repeats."""
    tri = np.asarray(tri, dtype=np.float64)
    if genus < 1 or len(tri) < 8:
        return None
    points = None
    if len(tri) > SAMPLE_FACES:
        tri = tri[np.linspace(0, len(tri) - 1, SAMPLE_FACES).astype(np.int64)]
    elif merge is not None:
        points = distinct_points(tri.reshape(-1, 3), merge)
    centres = tri[:, 0] + tri[:, 1]  # the mean of the corners, summed in the order tri.mean(axis=1) sums them
    centres += tri[:, 2]
    centres /= 3.0
    area = 2.0 * face_areas(tri)  # twice the area: exactly the cross product's norm
    weights = area / max(float(area.sum()), 1e-300)
    mean = weights @ centres
    spread = (centres - mean).T @ ((centres - mean) * weights[:, None])
    _, axes = np.linalg.eigh(spread)  # ascending spread: the flattest direction first
    corners = tri.reshape(-1, 3)
    fitted = corners if points is None else points
    best: Hole | None = None
    for k in range(3):
        hole = _hole_along(axes[:, k], fitted, corners)
        if hole is not None and (best is None or hole.inner_diameter_mm > best.inner_diameter_mm):
            best = hole
    return best

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

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from alexandrite.models3d import ring_sizes

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
        out = asdict(self)
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


def _covered(tri2d: np.ndarray, point: np.ndarray) -> bool:
    """Whether any projected triangle contains the point (its edges included)."""
    a, b, c = tri2d[:, 0] - point, tri2d[:, 1] - point, tri2d[:, 2] - point
    d1 = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    d2 = b[:, 0] * c[:, 1] - b[:, 1] * c[:, 0]
    d3 = c[:, 0] * a[:, 1] - c[:, 1] * a[:, 0]
    neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
    pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
    return bool((~(neg & pos)).any())


def _hole_along(axis: np.ndarray, points: np.ndarray, tri: np.ndarray) -> Hole | None:
    basis = np.linalg.svd(np.eye(3) - np.outer(axis, axis))[0][:, :2]
    flat = points @ basis
    centre = (flat.min(axis=0) + flat.max(axis=0)) / 2.0
    radius = 0.0
    for _ in range(FIT_ROUNDS):
        offset = flat - centre
        angle = np.arctan2(offset[:, 1], offset[:, 0])
        sector = np.minimum(((angle + np.pi) / (2 * np.pi) * BINS).astype(np.int64), BINS - 1)
        distance = np.hypot(offset[:, 0], offset[:, 1])
        if np.bincount(sector, minlength=BINS).min() == 0:
            return None  # metal does not go all the way round
        order = np.lexsort((distance, sector))
        first = np.concatenate(([0], np.flatnonzero(np.diff(sector[order])) + 1))
        inner = flat[order[first]]
        centre, radius = _circle(inner)
    offset = flat - centre
    distance = np.hypot(offset[:, 0], offset[:, 1])
    nearest = float(distance.min())
    inner_radii = np.hypot(*(inner - centre).T)
    if radius <= 0 or nearest <= 0 or float(np.ptp(inner_radii)) > MAX_ROUNDNESS * radius:
        return None
    tri2d = tri @ basis
    probes = [centre] + [centre + 0.5 * nearest * np.array([np.cos(t), np.sin(t)])
                         for t in np.linspace(0, 2 * np.pi, 8, endpoint=False)]
    if any(_covered(tri2d, p) for p in probes):
        return None
    along = points @ axis
    middle = float((along.min() + along.max()) / 2.0)
    centre3 = basis @ centre + axis * middle
    return Hole(tuple(float(v) for v in axis), tuple(round(float(v), 3) for v in centre3),  # type: ignore[arg-type]
                round(2 * nearest, 3), round(2 * float(distance.max()), 3), round(float(np.ptp(along)), 3))


def find_hole(tri: np.ndarray, genus: int) -> Hole | None:
    """The widest round through-hole of a piece of genus >= 1 along one of its principal axes, or None."""
    tri = np.asarray(tri, dtype=np.float64)
    if genus < 1 or len(tri) < 8:
        return None
    if len(tri) > SAMPLE_FACES:
        tri = tri[np.linspace(0, len(tri) - 1, SAMPLE_FACES).astype(np.int64)]
    centres = tri.mean(axis=1)
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    weights = area / max(float(area.sum()), 1e-300)
    mean = weights @ centres
    spread = (centres - mean).T @ ((centres - mean) * weights[:, None])
    _, axes = np.linalg.eigh(spread)  # ascending spread: the flattest direction first
    points = tri.reshape(-1, 3)
    best: Hole | None = None
    for k in range(3):
        hole = _hole_along(axes[:, k], points, tri)
        if hole is not None and (best is None or hole.inner_diameter_mm > best.inner_diameter_mm):
            best = hole
    return best

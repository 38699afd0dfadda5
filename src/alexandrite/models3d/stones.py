"""Stones: separate shells that look like gems set into the metal, so they are not priced as metal.

A shell is taken for a stone when all of these hold (the seller confirms every one; see the ADR):

- it is closed and encloses positive volume, and it is not the largest body;
- it is small next to the main body: at most ``MAX_SHARE`` of the largest shell's volume;
- it is convex: its volume is at least ``MIN_CONVEXITY`` of its convex hull's;
- it is shaped like a cut stone: it has a flat *table* (coplanar faces making up at least
  ``MIN_TABLE_SHARE`` of its surface) and it tapers away from it (its volume fills at most
  ``MAX_FILL`` of the box it spans in the table's frame: a brilliant ~0.4, a cabochon ~0.6, an
  emerald cut ~0.75, a block of metal 1.0);
- it touches or sits in another, larger shell (its bounding box, grown by ``TOUCH_MM``, meets it).

For each stone: the girdle's size (length × width, in the table's plane), its depth, its volume and an
approximate outline name (round, oval, square, cushion, marquise or pear, rectangular).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from alexandrite.models3d.geometry import plain_fields

__all__ = ["Stone", "find_stones"]

MAX_SHARE = 0.15
MIN_CONVEXITY = 0.95
MIN_TABLE_SHARE = 0.08
MAX_FILL = 0.85
TOUCH_MM = 0.3
MAX_CANDIDATES = 2_000  # shells examined one by one at most (a pavé of more is listed as metal, with a note)


@dataclass(frozen=True)
class Stone:
    shell: int
    shape: str
    length_mm: float
    width_mm: float
    depth_mm: float
    volume_mm3: float
    centre_mm: tuple[float, float, float]

    def as_dict(self) -> dict[str, Any]:
        out = plain_fields(self)
        out["centre_mm"] = list(self.centre_mm)
        return out


def _table(tri: np.ndarray) -> tuple[np.ndarray, float]:
    """(unit normal of the largest flat region, its share of the surface)."""
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1) / 2.0
    total = float(area.sum())
    if total <= 0:
        return np.array([0.0, 0.0, 1.0]), 0.0
    normal = cross / np.maximum(2.0 * area, 1e-300)[:, None]
    # Faces of one plane share their normal and their offset: group them on a coarse grid of both.
    offset = np.einsum("ij,ij->i", normal, tri[:, 0])
    scale = float(np.ptp(tri.reshape(-1, 3), axis=0).max()) or 1.0
    key = np.column_stack([np.rint(normal * 200.0), np.rint(offset / scale * 200.0)]).astype(np.int64)
    _, group = np.unique(key, axis=0, return_inverse=True)
    group = group.ravel()
    sums = np.bincount(group, weights=area)
    best = int(np.argmax(sums))
    members = group == best
    direction = (normal[members] * area[members, None]).sum(axis=0)
    return direction / (np.linalg.norm(direction) or 1.0), float(sums[best] / total)


def _outline(points2d: np.ndarray) -> tuple[str, float, float]:
    """(outline name, length, width) of a stone's girdle from its points projected on the table plane."""
    centred = points2d - points2d.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov(centred.T))
    aligned = centred @ vectors[:, ::-1]
    lo, hi = aligned.min(axis=0), aligned.max(axis=0)
    length, width = float(hi[0] - lo[0]), float(hi[1] - lo[1])
    try:
        fill = ConvexHull(aligned).volume / max(length * width, 1e-12)  # 2-D hull "volume" is its area
    except (QhullError, ValueError):
        fill = 1.0
    elongation = length / max(width, 1e-12)
    if elongation < 1.1:
        shape = "round" if fill < 0.82 else ("cushion" if fill < 0.93 else "square")
    elif fill < 0.72:
        shape = "marquise or pear"
    elif fill < 0.86:
        shape = "oval"
    else:
        shape = "rectangular"
    return shape, length, width


def find_stones(tri: np.ndarray, labels: np.ndarray, volume: np.ndarray, bbox_min: np.ndarray,
                bbox_max: np.ndarray, eligible: np.ndarray) -> tuple[list[Stone], bool]:
    """(stones, capped): the shells that look like set stones, and whether there were too many to examine.

    ``volume`` etc. are per shell (signed, after orientation); ``eligible`` marks closed bodies (not voids).
    """
    count = len(volume)
    if count < 2:
        return [], False
    largest = float(volume.max())
    candidates = [s for s in np.argsort(-volume, kind="stable")
                  if eligible[s] and 0 < volume[s] <= MAX_SHARE * largest]
    capped = len(candidates) > MAX_CANDIDATES
    stones: list[Stone] = []
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(labels, minlength=count))))
    for s in candidates[:MAX_CANDIDATES]:
        meets = ((bbox_min - TOUCH_MM <= bbox_max[s]) & (bbox_max + TOUCH_MM >= bbox_min[s])).all(axis=1)
        if not (meets & (volume > volume[s])).any():
            continue
        shell_tri = tri[order[bounds[s]:bounds[s + 1]]]
        points = np.unique(shell_tri.reshape(-1, 3), axis=0)
        if len(points) < 4:
            continue
        try:
            hull = ConvexHull(points).volume
        except (QhullError, ValueError):
            continue
        if hull <= 0 or volume[s] / hull < MIN_CONVEXITY:
            continue
        normal, table_share = _table(shell_tri)
        if table_share < MIN_TABLE_SHARE:
            continue
        height = points @ normal
        depth = float(height.max() - height.min())
        basis = np.linalg.svd(np.eye(3) - np.outer(normal, normal))[0][:, :2]
        shape, length, width = _outline(points @ basis)
        if depth <= 0 or volume[s] / max(length * width * depth, 1e-12) > MAX_FILL:
            continue
        centre = (bbox_min[s] + bbox_max[s]) / 2.0
        stones.append(Stone(int(s), shape, round(length, 2), round(width, 2), round(depth, 2),
                            round(float(volume[s]), 3), (round(float(centre[0]), 2), round(float(centre[1]), 2),
                                                         round(float(centre[2]), 2))))
    return stones, capped

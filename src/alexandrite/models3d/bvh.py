"""A bounding-volume hierarchy over triangles, and which triangles a batch of short segments can cross.

The tree is built without a loop per triangle: triangles sorted by the Morton code of their centres,
``LEAF`` to a leaf, and boxes of 1, 2, 4, ... consecutive leaves level by level up to one root; a
level's boxes are kept as three coordinate rows (``(3, nodes)``), so the tests below work on whole
rows instead of reducing across three columns.

:func:`segment_candidates` gives the (segment, triangle) pairs of every leaf whose box the segment
meets (a slab test), so every triangle a segment can cross is among them. A box holds its children's
boxes and rounding is monotone, so a segment that meets a leaf's box meets every box above it: the
leaves found depend only on the leaf test, and the search may skip levels on its way down. It goes
down ``STEP`` levels at a time (fewer, larger array operations; the same leaves). Above the leaves it
only asks whether the box meets the box around the segment (padded well past rounding): a weaker test
than the slab, so it keeps every node the slab keeps and the leaves found stay the same, at about half
the arithmetic per pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LEAF", "STEP", "Facing", "Tree", "build_tree", "leaf_facing", "segment_candidates"]

LEAF = 4
STEP = 2  # levels descended at a time


@dataclass(frozen=True)
class Tree:
    """Triangles in Morton order, ``LEAF`` per leaf; per level (0: the leaves) the boxes as (3, nodes) rows."""

    order: np.ndarray  # triangle indices in Morton order
    lo: list[np.ndarray]
    hi: list[np.ndarray]

    @property
    def leaves(self) -> int:
        return int(self.lo[0].shape[1])


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


def build_tree(tri: np.ndarray) -> Tree:
    """The hierarchy over float64 triangles (n, 3, 3), n >= 1."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    lo_tri = np.minimum(np.minimum(a, b), c)
    hi_tri = np.maximum(np.maximum(a, b), c)
    # One plain sort of (Morton code << index bits | index) instead of an argsort.
    index_bits = max(1, int(len(tri) - 1).bit_length())
    keys = _morton((lo_tri + hi_tri) * 0.5) << index_bits
    keys |= np.arange(len(tri), dtype=np.int64)
    keys.sort()
    order = keys & ((1 << index_bits) - 1)
    starts = np.arange(0, len(tri), LEAF)
    lo = [np.ascontiguousarray(np.minimum.reduceat(lo_tri[order], starts, axis=0).T)]
    hi = [np.ascontiguousarray(np.maximum.reduceat(hi_tri[order], starts, axis=0).T)]
    while lo[-1].shape[1] > 1:
        below_lo, below_hi = lo[-1], hi[-1]
        if below_lo.shape[1] % 2:
            below_lo = np.concatenate([below_lo, below_lo[:, -1:]], axis=1)
            below_hi = np.concatenate([below_hi, below_hi[:, -1:]], axis=1)
        lo.append(np.minimum(below_lo[:, 0::2], below_lo[:, 1::2]))
        hi.append(np.maximum(below_hi[:, 0::2], below_hi[:, 1::2]))
    return Tree(order, lo, hi)


@dataclass(frozen=True)
class Facing:
    """Which way each leaf's triangles face: a cone per leaf (its axis, as (3, leaves) rows, and ``limit``, minus
    the sine of its half-angle). A direction d with d · axis < limit makes an angle of more than 90° with every
    normal in the leaf: all its triangles face d (d · n < 0), and a search for faces turned away from d skips
    the leaf. Leaves whose normals spread over a half-space or more, or hold a degenerate triangle, get a
    limit of -2 and are never skipped."""

    axis: np.ndarray
    limit: np.ndarray


_FACING_MARGIN = 1e-9  # well above rounding in unit-vector dot products


def leaf_facing(tree: Tree, normals: np.ndarray) -> Facing:
    """The leaves' normal cones, from every triangle's normal as (3, n) rows (any length, same direction)."""
    length = np.sqrt(normals[0] ** 2 + normals[1] ** 2 + normals[2] ** 2)
    degenerate = length <= 0.0
    unit = normals / np.where(degenerate, 1.0, length)
    unit = unit[:, tree.order]
    starts = np.arange(0, len(tree.order), LEAF)
    axis = np.add.reduceat(unit, starts, axis=1)
    size = np.sqrt(axis[0] ** 2 + axis[1] ** 2 + axis[2] ** 2)
    axis /= np.where(size > 0.0, size, 1.0)
    leaf_of = np.arange(len(tree.order)) // LEAF
    cosine = np.minimum.reduceat((unit * axis[:, leaf_of]).sum(axis=0), starts)
    usable = (cosine > 0.0) & (size > 0.0) & ~np.logical_or.reduceat(degenerate[tree.order], starts)
    limit = np.where(usable, -np.sqrt(np.clip(1.0 - np.minimum(cosine, 1.0) ** 2, 0.0, 1.0)) - _FACING_MARGIN,
                     -2.0)
    return Facing(np.ascontiguousarray(axis), limit)


def _meets(origin: np.ndarray, inverse: np.ndarray, reach: float, lo: np.ndarray, hi: np.ndarray,
           ray: np.ndarray, node: np.ndarray) -> np.ndarray:
    """Slab test per (ray, node) pair: does origin + t·direction, 0 <= t <= reach, meet the node's box?"""
    near = far = None
    for k in range(3):
        o, inv = origin[k][ray], inverse[k][ray]
        t1 = lo[k][node]
        t1 -= o
        t1 *= inv
        t2 = hi[k][node]
        t2 -= o
        t2 *= inv
        low, high = np.minimum(t1, t2), np.maximum(t1, t2, out=t2)
        near = low if near is None else np.maximum(near, low, out=near)
        far = high if far is None else np.minimum(far, high, out=far)
    assert near is not None and far is not None
    meets = far >= np.maximum(near, 0.0)
    meets &= near <= reach
    return meets


def _overlaps(low: np.ndarray, high: np.ndarray, lo: np.ndarray, hi: np.ndarray, ray: np.ndarray,
              node: np.ndarray) -> np.ndarray:
    """Per (ray, node) pair: does the node's box meet the box ``low``..``high`` around the ray's segment?"""
    meets = lo[0][node] <= high[0][ray]
    meets &= hi[0][node] >= low[0][ray]
    for k in (1, 2):
        meets &= lo[k][node] <= high[k][ray]
        meets &= hi[k][node] >= low[k][ray]
    return meets


def segment_candidates(tree: Tree, origins: np.ndarray, directions: np.ndarray,
                       reach: float, away: Facing | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(segment, triangle) pairs whose leaf box the segment origin + t·direction, 0 <= t <= reach, meets.

    With ``away``, leaves whose triangles all face the segment's direction (:class:`Facing`) are left out:
    for searches that want only faces turned away from it."""
    safe = np.where(directions == 0.0, 1e-300, directions)
    inverse = np.ascontiguousarray((1.0 / safe).T)
    origin = np.ascontiguousarray(origins.T)
    end = origins + reach * directions
    pad = 1e-9 * (reach + float(np.abs(origins).max(initial=0.0)))  # far above the rounding of either test
    low = np.ascontiguousarray(np.minimum(origins, end).T) - pad
    high = np.ascontiguousarray(np.maximum(origins, end).T) + pad
    top = len(tree.lo) - 1
    ray = np.arange(len(origins))
    node = np.zeros(len(origins), dtype=np.int64)
    level = top
    while True:
        if level:
            meets = _overlaps(low, high, tree.lo[level], tree.hi[level], ray, node)
        else:
            meets = _meets(origin, inverse, reach, tree.lo[0], tree.hi[0], ray, node)
        ray, node = ray[meets], node[meets]
        if level == 0:
            break
        step = min(STEP, level)
        level -= step
        fan = 1 << step
        ray = np.repeat(ray, fan)
        node = ((node << step)[:, None] + np.arange(fan)).reshape(-1)
        inside = node < tree.lo[level].shape[1]
        ray, node = ray[inside], node[inside]
        if level == 0 and away is not None:  # before the leaves' slab test: cheaper, and drops most pairs
            facing = directions[:, 0][ray] * away.axis[0][node]
            facing += directions[:, 1][ray] * away.axis[1][node]
            facing += directions[:, 2][ray] * away.axis[2][node]
            turned = facing >= away.limit[node]
            ray, node = ray[turned], node[turned]
    first = node * LEAF
    count = np.minimum(first + LEAF, len(tree.order)) - first
    total = int(count.sum())
    offsets = np.repeat(first - np.concatenate(([0], np.cumsum(count)[:-1])), count) + np.arange(total)
    return np.repeat(ray, count), tree.order[offsets]

"""Simple closed meshes for tests, benchmarks and simulation: tori, boxes, tetrahedra, spheres.

Each returns an outward-oriented triangle array of shape (n, 3, 3), float64, in millimetres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from alexandrite.models3d.rings import revolve


def torus(R: float, r: float, n_major: int, n_minor: int) -> np.ndarray:  # noqa: N803 - the usual names
    """A torus of `n_major` straight segments around z, with a regular `n_minor`-gon cross-section."""
    if not 0 < r < R:
        raise ValueError("a torus needs 0 < r < R")
    if n_minor < 3:
        raise ValueError("n_minor must be at least 3")
    theta = 2.0 * math.pi * np.arange(n_minor) / n_minor
    return revolve(np.column_stack([R + r * np.cos(theta), r * np.sin(theta)]), n_major)


_BOX_FACES = np.array([
    [0, 2, 1], [0, 3, 2],  # z-
    [4, 5, 6], [4, 6, 7],  # z+
    [0, 1, 5], [0, 5, 4],  # y-
    [2, 3, 7], [2, 7, 6],  # y+
    [1, 2, 6], [1, 6, 5],  # x+
    [0, 4, 7], [0, 7, 3],  # x-
])


def box(sx: float, sy: float, sz: float, center: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """An axis-aligned box of 12 triangles."""
    hx, hy, hz = sx / 2.0, sy / 2.0, sz / 2.0
    cx, cy, cz = (float(v) for v in center)
    xs, ys, zs = (cx - hx, cx + hx), (cy - hy, cy + hy), (cz - hz, cz + hz)
    corners = np.array([
        [xs[0], ys[0], zs[0]], [xs[1], ys[0], zs[0]], [xs[1], ys[1], zs[0]], [xs[0], ys[1], zs[0]],
        [xs[0], ys[0], zs[1]], [xs[1], ys[0], zs[1]], [xs[1], ys[1], zs[1]], [xs[0], ys[1], zs[1]],
    ])
    return corners[_BOX_FACES]


def tetrahedron(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """The 4 faces of a tetrahedron, oriented outward (unless the points are coplanar)."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (4, 3):
        raise ValueError("a tetrahedron needs exactly 4 points of 3 coordinates")
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    if np.linalg.det(p[1:] - p[0]) < 0:
        faces = faces[:, ::-1]
    return p[faces]


def icosphere(radius: float, subdivisions: int) -> np.ndarray:
    """A geodesic sphere: an icosahedron whose faces are split in 4, `subdivisions` times."""
    if radius <= 0 or subdivisions < 0:
        raise ValueError("icosphere needs radius > 0 and subdivisions >= 0")
    g = (1.0 + math.sqrt(5.0)) / 2.0
    v = np.array([[-1, g, 0], [1, g, 0], [-1, -g, 0], [1, -g, 0], [0, -1, g], [0, 1, g],
                  [0, -1, -g], [0, 1, -g], [g, 0, -1], [g, 0, 1], [-g, 0, -1], [-g, 0, 1]], dtype=np.float64)
    v *= radius / np.linalg.norm(v, axis=1, keepdims=True)
    faces = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
                      [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
                      [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]])
    tri = v[faces]
    for _ in range(subdivisions):
        a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
        # (p + q) is symmetric in p and q, so neighbours compute bit-identical midpoints.
        ab, bc, ca = (_on_sphere(p + q, radius) for p, q in ((a, b), (b, c), (c, a)))
        tri = np.stack([np.stack([a, ab, ca], 1), np.stack([ab, b, bc], 1),
                        np.stack([ca, bc, c], 1), np.stack([ab, bc, ca], 1)], 1).reshape(-1, 3, 3)
    return tri


def _on_sphere(p: np.ndarray, radius: float) -> np.ndarray:
    return p * (radius / np.sqrt((p * p).sum(axis=1)))[:, None]

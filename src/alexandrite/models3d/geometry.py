"""Mesh analysis: vertex merge, volume, surface, bounding box and edge topology.

Volume is the sum of signed tetrahedra against the first vertex (divergence theorem), area the
sum of half cross-product norms, and watertightness comes from counting directed edges after merging
vertices. :func:`analyse` merges vertices that fall in the same cell of a grid whose step is
``MERGE_TOLERANCE`` × the bounding-box diagonal (CAD noise such as -2.7e-16 against 0.0 merges; real
features, far larger than a billionth of the model, never do); :func:`merge_vertices` merges
bit-identical points unless given a tolerance. Everything is vectorised; sorting dominates the cost.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

__all__ = ["MERGE_TOLERANCE", "MeshFacts", "VertexMerge", "analyse", "distinct_points", "edge_topology", "face_areas",
           "measure", "merge_vertices"]

MERGE_TOLERANCE = 1e-9  # grid step for merging vertices, relative to the bounding-box diagonal

_U64 = np.uint64
# Odd 64-bit multipliers (splitmix64 / xxhash primes) for mixing coordinate bit patterns.
_MIX = (_U64(0x9E3779B97F4A7C15), _U64(0xC2B2AE3D27D4EB4F), _U64(0x165667B19E3779F9))
_FINAL = _U64(0xBF58476D1CE4E5B9)
_FINAL2 = _U64(0x94D049BB133111EB)


@dataclass(frozen=True)
class MeshFacts:
    """What the analysis found; sizes in mm, area in mm², volume in mm³."""

    triangles: int
    vertices: int
    volume_mm3: float
    surface_mm2: float
    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    size_mm: tuple[float, float, float]
    watertight: bool
    inverted: bool
    boundary_edges: int
    non_manifold_edges: int
    degenerate_triangles: int
    misoriented_edges: int = 0  # edges whose two faces run the same way (some faces are flipped)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        out = plain_fields(self)
        for key in ("bbox_min", "bbox_max", "size_mm"):
            out[key] = list(out[key])
        return out


def plain_fields(facts: Any) -> dict[str, Any]:
    """A dataclass's fields by name, as ``dataclasses.asdict`` gives them for fields holding numbers, text
    and tuples of numbers, without its deep copy of every value (it showed in the pricing profile)."""
    return {f.name: getattr(facts, f.name) for f in fields(facts)}


# --- vertex merge ----------------------------------------------------------------------------------

def _coordinate_bits(points: np.ndarray) -> np.ndarray:
    """Coordinates as unsigned integers of the same width, with -0.0 folded into 0.0."""
    pts = np.ascontiguousarray(points)
    if pts.dtype not in (np.float32, np.float64):
        pts = pts.astype(np.float64)
    pts = pts + pts.dtype.type(0.0)  # -0.0 + 0.0 == +0.0; also a private, contiguous copy
    return pts.view(np.uint32 if pts.dtype == np.float32 else np.uint64)


def _snapped(points: np.ndarray, step: float, lo: np.ndarray | None = None) -> np.ndarray:
    """Grid cell of each point, (m, 3) int64 >= 0, counted from ``lo`` (the points' minimum by default).

    Points closer than ``step`` share a cell unless a cell border runs between them (for noise of
    1e-16 mm on a 1e-8 mm grid, a chance of about 1e-8 per coordinate).
    """
    if lo is None:
        lo = np.array([points[:, k].min() for k in range(3)], dtype=np.float64)
    cells = np.subtract(points, lo, dtype=np.float64)
    cells *= 1.0 / step
    np.rint(cells, out=cells)
    return cells.astype(np.int64)


def _rotl(h: np.ndarray, k: int) -> np.ndarray:
    return (h << _U64(k)) | (h >> _U64(64 - k))


def _hash(bits: np.ndarray) -> np.ndarray:
    """64-bit hash of three coordinate words, mixed in sequence (multiply, rotate, xor, multiply).

    Mixing in sequence matters: xor-ing the three products would map (x, y, z) and (-x, -y, z) to one
    value (a sign bit flips the top bit of each product and two flips cancel), so every mesh centred on
    the origin would collide wholesale.
    """
    h = bits[:, 0].astype(_U64) * _MIX[0]
    h = _rotl(h, 27)
    h ^= bits[:, 1].astype(_U64)
    h *= _MIX[1]
    h = _rotl(h, 31)
    h ^= bits[:, 2].astype(_U64)
    h *= _MIX[2]
    h ^= h >> _U64(30)
    h *= _FINAL
    h ^= h >> _U64(27)
    h *= _FINAL2
    h ^= h >> _U64(31)
    return h


@dataclass(frozen=True)
class VertexMerge:
    """A vertex merge: every point's vertex id, and the points grouped by id (for adjacency without sorting)."""

    ids: np.ndarray  # vertex id per point
    count: int  # distinct points
    order: np.ndarray  # points sorted by id
    sorted_ids: np.ndarray  # ids[order], non-decreasing


def _merge(points: np.ndarray, hash_bits: int = 64, step: float = 0.0, lo: np.ndarray | None = None) -> VertexMerge:
    m = len(points)
    bits = _snapped(points, step, lo).view(_U64) if step > 0 else _coordinate_bits(points)
    index_bits = max(1, int(m - 1).bit_length())
    keep = max(0, min(hash_bits, 64 - index_bits))
    low = _U64((1 << index_bits) - 1)
    keys = _hash(bits)
    keys &= _U64(((1 << keep) - 1) << (64 - keep)) if keep else _U64(0)
    keys |= np.arange(m, dtype=_U64)
    keys.sort()
    order = (keys & low).view(np.int64)
    new = np.empty(m, dtype=bool)
    new[0] = True
    np.greater(keys[1:] ^ keys[:-1], low, out=new[1:])  # hash bits differ
    del keys
    ordered = np.take(bits, order, axis=0)
    clash = ordered[1:, 0] != ordered[:-1, 0]
    clash |= ordered[1:, 1] != ordered[:-1, 1]
    clash |= ordered[1:, 2] != ordered[:-1, 2]
    clash &= ~new[1:]
    if clash.any():  # hash groups holding different points: sort their members by coordinates, in place
        group = np.cumsum(new, dtype=np.int64)
        bad = np.zeros(int(group[-1]), dtype=bool)
        bad[group[1:][clash] - 1] = True
        at = np.flatnonzero(bad[group - 1])  # contiguous runs, one per colliding hash group
        rows = ordered[at]
        sort = np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0], group[at]))
        order[at] = order[at][sort]
        ordered[at] = rows[sort]
        new[1:] |= (ordered[1:] != ordered[:-1]).any(axis=1)
    group = np.cumsum(new, dtype=np.int64)
    group -= 1
    ids = np.empty(m, dtype=np.int64)
    ids[order] = group
    return VertexMerge(ids, int(group[-1]) + 1, order, group)


def distinct_points(points: np.ndarray, merge: VertexMerge) -> np.ndarray | None:
    """The merged points once each, in the order they first occur, when every vertex's points are
    bit-identical (None when a merge on the grid joined points that differ, or -0.0 met 0.0)."""
    if merge.count == 0:
        return None
    starts = np.flatnonzero(np.diff(merge.sorted_ids, prepend=-1))
    first = np.minimum.reduceat(merge.order, starts)  # the first point of each vertex, by vertex id
    points = np.ascontiguousarray(points, dtype=np.float64)
    bits = points.view(np.uint64)
    if not np.array_equal(bits[first[merge.ids]], bits):
        return None
    first.sort()
    return points[first]


def merge_vertices(points: np.ndarray, *, hash_bits: int = 64, step: float = 0.0) -> tuple[np.ndarray, int]:
    """(ids, count): ids[i] == ids[j] exactly when points i and j have identical coordinates (step 0),
    or lie in the same cell of a grid of that step (rounded to the nearest multiple, from the minimum).

    Sorts one 64-bit key per point, hash bits above the point's index (a plain sort, no argsort), then
    compares neighbours' real coordinates (or cells), so hash collisions are detected and resolved
    exactly (the colliding runs are re-sorted by coordinates, so points stay grouped by id). Ids are
    dense, in [0, count), `count` the number of distinct points. `hash_bits` is for tests.
    """
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64), 0
    merged = _merge(np.asarray(points), hash_bits, step)
    return merged.ids, merged.count


# --- topology --------------------------------------------------------------------------------------

def edge_topology(faces: np.ndarray, vertex_count: int) -> tuple[int, int, int]:
    """(boundary, non_manifold, misoriented) undirected edge counts for (n, 3) vertex-id faces.

    Faces with a repeated vertex are skipped: their edges cancel each other out. A closed,
    consistently oriented 2-manifold has every directed edge once and its reverse once: (0, 0, 0).
    """
    faces = np.asarray(faces, dtype=np.int64)
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    proper = (a != b) & (b != c) & (c != a)
    if not proper.all():
        faces = faces[proper]
    if len(faces) == 0:
        return 0, 0, 0
    tail = faces.reshape(-1)
    head = faces[:, [1, 2, 0]].reshape(-1)
    forward = tail < head
    # key = 2 * (undirected edge lo * V + hi) + (runs low -> high): below 2 * V**2, fits in int64.
    keys = np.minimum(tail, head)
    keys *= 2 * vertex_count
    hi = np.maximum(tail, head, out=head)
    hi <<= 1
    keys += hi
    keys += forward
    del hi, forward
    keys.sort()
    pairs_ok = len(keys) % 2 == 0 and bool(
        (keys[1::2] - keys[0::2] == 1).all() and (keys[0::2] & 1 == 0).all()
        and (keys[2::2] > keys[1:-1:2]).all()
    )
    if pairs_ok:  # the usual closed mesh: every edge once each way
        return 0, 0, 0
    edge = keys >> 1
    start = np.flatnonzero(np.concatenate(([True], edge[1:] != edge[:-1])))
    uses = np.diff(np.append(start, len(keys)))
    boundary = int(np.count_nonzero(uses == 1))
    non_manifold = int(np.count_nonzero(uses > 2))
    pairs = start[uses == 2]
    misoriented = int(np.count_nonzero(keys[pairs] == keys[pairs + 1]))
    return boundary, non_manifold, misoriented


def _closed_and_oriented(merged: VertexMerge) -> bool:
    """Fast exact test that every directed edge occurs once and its reverse once.

    Walking the points in merged order visits each vertex's corners together. A forward edge a->b
    (a < b) is listed at a's corner as outgoing, a backward edge b->a at a's corner as incoming, so
    both lists come out grouped by their lower vertex and a run-aware (stable) sort finishes them. The
    mesh is closed and consistently oriented when the lists are equal and duplicate-free. Faces with a
    repeated vertex add an edge to both lists, so a True answer stays exact; False means "count them".
    """
    ids, low = merged.ids, merged.sorted_ids
    if merged.count >= 1 << 31:
        return False
    faces = ids.reshape(-1, 3)
    packed = np.empty_like(faces)  # per corner: (next vertex << 32) | previous vertex
    for corner, (next_corner, previous_corner) in enumerate(((1, 2), (2, 0), (0, 1))):
        np.left_shift(faces[:, next_corner], 32, out=packed[:, corner])
        packed[:, corner] |= faces[:, previous_corner]
    around = np.take(packed.reshape(-1), merged.order)
    del packed
    following = around >> 32
    around &= 0xFFFFFFFF
    outgoing = following > low
    incoming = around > low
    if np.count_nonzero(outgoing) != np.count_nonzero(incoming):
        return False
    base = low * np.int64(merged.count)
    following += base
    around += base
    forward = following[outgoing]
    backward = around[incoming]
    forward.sort(kind="stable")
    backward.sort(kind="stable")
    return bool(np.array_equal(forward, backward) and (forward[1:] > forward[:-1]).all())


def face_normal_rows(tri: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(b - a) × (c - a) of each float64 triangle (n, 3, 3), as its x, y and z rows (not unit length)."""
    ab = tri[:, 1] - tri[:, 0]
    ac = tri[:, 2] - tri[:, 0]
    (bx, by, bz), (cx, cy, cz) = ab.T, ac.T
    return by * cz - bz * cy, bz * cx - bx * cz, bx * cy - by * cx


def face_areas(tri: np.ndarray) -> np.ndarray:
    """Area of each float64 triangle (n, 3, 3): half the norm of (b - a) × (c - a), the same sums as
    ``np.linalg.norm(np.cross(b - a, c - a), axis=1) / 2`` on whole coordinate rows (sqrt((x² + y²) + z²))."""
    x, y, z = face_normal_rows(tri)
    x *= x
    y *= y
    z *= z
    x += y
    x += z
    np.sqrt(x, out=x)
    x /= 2.0
    return x


# --- analysis --------------------------------------------------------------------------------------

def _as_triangles(triangles: np.ndarray) -> np.ndarray:
    tri = np.asarray(triangles)
    if tri.ndim != 3 or tri.shape[1:] != (3, 3):
        raise ValueError(f"expected triangles of shape (n, 3, 3), got {tri.shape}")
    if tri.dtype not in (np.float32, np.float64):
        tri = tri.astype(np.float64)
    return tri


def _empty_facts() -> MeshFacts:
    zero = (0.0, 0.0, 0.0)
    return MeshFacts(0, 0, 0.0, 0.0, zero, zero, zero, False, False, 0, 0, 0)


_DOT_CHUNK = 10_000  # OpenBLAS computes a dot product of up to 10,000 elements on the calling thread


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    """x · y, as chunks of at most ``_DOT_CHUNK`` elements summed in order.

    A longer dot product would be split across BLAS threads, which then spin on the other cores for a
    while after it returns (CPU spent for nothing) and whose partial sums depend on how many cores the
    machine has; in chunks it runs on this thread and gives the same result on every machine. Up to
    ``_DOT_CHUNK`` elements it is one ``np.dot``, as before.
    """
    if len(x) <= _DOT_CHUNK:
        return float(np.dot(x, y))
    return float(sum(float(np.dot(x[at:at + _DOT_CHUNK], y[at:at + _DOT_CHUNK]))
                     for at in range(0, len(x), _DOT_CHUNK)))


def _measure(tri: np.ndarray) -> tuple[float, float, int]:
    """(signed volume, area, zero-area triangles) from one cross product per triangle.

    Coordinates are taken relative to the first vertex, which keeps far-from-origin models precise.
    """
    origin = tri[0, 0].astype(np.float64)
    cols = np.empty((3, 3, len(tri)))
    np.subtract(tri.transpose(1, 2, 0), origin[None, :, None], out=cols)
    (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = cols
    x1 -= x0
    y1 -= y0
    z1 -= z0
    x2 -= x0
    y2 -= y0
    z2 -= z0
    cx = y1 * z2
    cx -= z1 * y2
    cy = z1 * x2
    cy -= x1 * z2
    cz = x1 * y2
    cz -= y1 * x2
    signed = (_dot(x0, cx) + _dot(y0, cy) + _dot(z0, cz)) / 6.0
    degenerate = int(np.count_nonzero((cx == 0) & (cy == 0) & (cz == 0)))
    cx *= cx
    cy *= cy
    cz *= cz
    cx += cy
    cx += cz
    area = float(np.sqrt(cx, out=cx).sum()) / 2.0
    return signed, area, degenerate


def analyse(triangles: np.ndarray, tolerance: float = MERGE_TOLERANCE) -> MeshFacts:
    """Measure a triangle soup (n, 3, 3) in millimetres; ValueError for a bad shape or non-finite values.

    Vertices merge on a grid of ``tolerance`` × the bounding-box diagonal (0: bit-identical only).
    """
    return measure(triangles, tolerance)[0]


def measure(triangles: np.ndarray, tolerance: float = MERGE_TOLERANCE) -> tuple[MeshFacts, VertexMerge]:
    """(facts, the vertex merge): :func:`analyse` and the merge it made, for the checks that follow.

    ``merge.ids.reshape(-1, 3)`` are the faces as vertex ids; ids lie below ``ids.max() + 1``.
    """
    tri = _as_triangles(triangles)
    n = len(tri)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return _empty_facts(), VertexMerge(empty, 0, empty, empty)
    lo = np.array([tri[:, :, k].min() for k in range(3)], dtype=np.float64)
    hi = np.array([tri[:, :, k].max() for k in range(3)], dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below
        signed, area, degenerate = _measure(tri)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all() and np.isfinite(signed) and np.isfinite(area)):
        raise ValueError("triangles contain NaN or infinite coordinates (or are too large to measure)")
    diagonal = float(np.linalg.norm(hi - lo))
    step = tolerance * diagonal if tolerance > 0 and diagonal > 0 else 0.0
    merged = _merge(tri.reshape(-1, 3), step=step, lo=lo)
    if _closed_and_oriented(merged):
        boundary = non_manifold = misoriented = 0
    else:
        ids = merged.ids
        boundary, non_manifold, misoriented = edge_topology(ids.reshape(-1, 3), int(ids.max()) + 1)
    return MeshFacts(
        triangles=n,
        vertices=merged.count,
        volume_mm3=abs(signed),
        surface_mm2=area,
        bbox_min=tuple(float(v) for v in lo),  # type: ignore[arg-type]
        bbox_max=tuple(float(v) for v in hi),  # type: ignore[arg-type]
        size_mm=tuple(float(v) for v in hi - lo),  # type: ignore[arg-type]
        watertight=boundary == 0 and non_manifold == 0 and misoriented == 0 and degenerate < n,
        inverted=signed < 0,
        boundary_edges=boundary,
        non_manifold_edges=non_manifold,
        degenerate_triangles=degenerate,
        misoriented_edges=misoriented,
    ), merged

"""Shells: the connected pieces of a closed mesh, each oriented on its own.

A *shell* is a maximal set of triangles connected through shared (merged) vertices. For a closed,
2-manifold mesh:

- :func:`label_shells` numbers the shells (vertex graph from the merge's corner order, no sort);
- :func:`consistent_flips` finds the faces to turn so every shell is consistently oriented (two faces
  sharing an edge run it in opposite directions), or None when a shell cannot be oriented at all;
- :func:`orient_shells` decides each shell's side: a shell enclosing negative volume is inside out and
  is turned, unless it lies inside another shell that encloses positive volume (then it is a cavity, a
  *void*, and keeps its orientation: its negative volume is metal that is not there).

Invariants: triangles are never moved, only re-ordered corner-wise (``tri[i, ::-1]``); shell numbers
are dense ``0..count-1``; volumes are signed (bodies > 0, voids < 0 after orientation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components

from alexandrite.models3d.geometry import VertexMerge

__all__ = ["ShellFacts", "consistent_flips", "label_shells", "orient_shells", "shell_facts", "winding_number"]


def label_shells(merge: VertexMerge, consistent: bool = False) -> tuple[np.ndarray, int]:
    """(shell number of every face, number of shells), largest shell first.

    The vertex graph is built straight from the merge's corner order (each corner's vertex points at the
    next corner of its face), so no sort is needed; connected components are scipy's. ``consistent``:
    the caller knows every edge is run once each way, so the directed graph is symmetric and its strong
    components are the shells (cheaper than weak ones).
    """
    faces = merge.ids.reshape(-1, 3)
    if len(faces) == 0:
        return np.zeros(0, dtype=np.int64), 0
    order, sorted_ids, bound = merge.order, merge.sorted_ids, int(merge.count)
    indptr = np.zeros(bound + 1, dtype=np.int64)
    np.cumsum(np.bincount(sorted_ids, minlength=bound), out=indptr[1:])
    following = faces[:, [1, 2, 0]].reshape(-1)[order]
    # float64 weights: the graph routines' own type, so scipy does not convert (sort, deduplicate) it first.
    graph = csr_matrix((np.ones(len(following)), following, indptr), shape=(bound, bound))
    count, vertex_label = connected_components(graph, directed=True,
                                               connection="strong" if consistent else "weak")
    labels = vertex_label[faces[:, 0]]
    if count > 1:  # vertices used by no face form components of their own: number the faces' only
        _, labels = np.unique(labels, return_inverse=True)
        labels = labels.ravel()
        count = int(labels.max()) + 1
    if count > 1:  # number shells by size, largest first
        sizes = np.bincount(labels, minlength=count)
        rank = np.empty(count, dtype=np.int64)
        rank[np.argsort(-sizes, kind="stable")] = np.arange(count)
        labels = rank[labels]
    return labels.astype(np.int64), int(count)


def consistent_flips(faces: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """Faces to turn so that each connected piece of a closed 2-manifold is consistently oriented.

    Every edge is used by exactly two faces (the caller checked). Two faces agree when they run their
    shared edge in opposite directions; the disagreements define a parity problem on the face graph,
    solved along a breadth-first spanning forest with pointer jumping (no loop per face); ``labels`` are
    the shells (:func:`label_shells`). Of the two solutions of each shell the smaller set of faces is
    turned. None when a shell is not orientable.
    """
    faces = np.asarray(faces, dtype=np.int64)
    n = len(faces)
    tail = faces.reshape(-1)
    head = faces[:, [1, 2, 0]].reshape(-1)
    bound = int(faces.max()) + 1
    key = np.minimum(tail, head) * bound + np.maximum(tail, head)
    order = np.argsort(key, kind="stable")
    first, second = order[0::2], order[1::2]
    same = tail[first] == tail[second]  # both faces run the edge the same way: they disagree
    f1, f2 = first // 3, second // 3
    root = n  # one extra node joined to one face of every shell: one breadth-first search covers them all
    _, seeds = np.unique(labels, return_index=True)
    rows = np.concatenate([f1, f2, np.full(len(seeds), root)])
    cols = np.concatenate([f2, f1, seeds])
    disagree = np.concatenate([same, same, np.zeros(len(seeds), dtype=bool)])
    pair_keys, first_use = np.unique(rows * (n + 1) + cols, return_index=True)  # two shared edges: once
    disagree = disagree[first_use]
    graph = csr_matrix((np.ones(len(first_use), dtype=np.int8), (rows[first_use], cols[first_use])),
                       shape=(n + 1, n + 1))
    _, parent = breadth_first_order(graph, root, directed=True, return_predecessors=True)
    parent = parent[:n]
    inner = parent != root
    up = np.where(inner, parent, np.arange(n))
    flip = np.zeros(n, dtype=np.int8)
    flip[inner] = disagree[np.searchsorted(pair_keys, parent[inner] * (n + 1) + np.flatnonzero(inner))]
    # Pointer jumping; invariant: flip[v] is the parity of the tree path from v up to up[v].
    while (up != up[up]).any():
        flip = flip ^ flip[up]
        up = up[up]
    turned = flip.astype(bool)
    if (same != (turned[f1] != turned[f2])).any():
        return None  # an edge disagrees whichever way its faces are turned: not orientable
    # Per piece, turn the smaller side (which side faces outward is decided by volume afterwards).
    piece = _pieces(up)
    turned_per_piece = np.bincount(piece, weights=turned)
    invert = turned_per_piece * 2 > np.bincount(piece)
    return turned ^ invert[piece]


def _pieces(top: np.ndarray) -> np.ndarray:
    """Dense numbers of the trees whose roots ``top`` gives."""
    _, piece = np.unique(top, return_inverse=True)
    return piece.ravel()


@dataclass(frozen=True)
class ShellFacts:
    """Per-shell measures, arrays indexed by shell number (volumes signed, as the faces are oriented)."""

    count: int
    triangles: np.ndarray
    volume: np.ndarray
    area: np.ndarray
    bbox_min: np.ndarray  # (count, 3)
    bbox_max: np.ndarray
    vertices: np.ndarray  # distinct vertices per shell


def _face_measures(tri: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = tri[:, 0] - origin
    b = tri[:, 1] - origin
    c = tri[:, 2] - origin
    cross = np.cross(b - a, c - a)
    volume = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0
    area = np.linalg.norm(cross, axis=1) / 2.0
    return volume, area


def shell_facts(tri: np.ndarray, labels: np.ndarray, count: int, vertex_ids: np.ndarray,
                total_vertices: int) -> ShellFacts:
    """Volume, area, bounding box and vertex count of every shell (one pass, then reductions by shell).

    ``vertex_ids`` are the faces as merged vertex ids, ``total_vertices`` how many distinct ones there are.
    """
    tri = np.asarray(tri, dtype=np.float64)
    lo_all = tri.reshape(-1, 3).min(axis=0)
    hi_all = tri.reshape(-1, 3).max(axis=0)
    volume, area = _face_measures(tri, (lo_all + hi_all) / 2.0)
    triangles = np.bincount(labels, minlength=count)
    if count == 1:
        distinct = np.array([total_vertices])
        return ShellFacts(1, triangles, np.array([volume.sum()]), np.array([area.sum()]), lo_all[None], hi_all[None],
                          distinct)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate(([0], np.cumsum(triangles)[:-1]))
    corners_lo = tri.min(axis=1)[order]
    corners_hi = tri.max(axis=1)[order]
    pairs = np.unique(labels[:, None].repeat(3, axis=1).ravel() * (int(vertex_ids.max()) + 1) + vertex_ids.ravel())
    distinct = np.bincount(pairs // (int(vertex_ids.max()) + 1), minlength=count)
    return ShellFacts(
        count, triangles,
        np.bincount(labels, weights=volume, minlength=count),
        np.bincount(labels, weights=area, minlength=count),
        np.minimum.reduceat(corners_lo, starts, axis=0),
        np.maximum.reduceat(corners_hi, starts, axis=0),
        distinct,
    )


def winding_number(point: np.ndarray, tri: np.ndarray) -> float:
    """Generalised winding number of a point about a closed triangle surface (±1 inside, 0 outside).

    Sum of the triangles' signed solid angles (Van Oosterom and Strackee) over 4π.
    """
    a = tri[:, 0] - point
    b = tri[:, 1] - point
    c = tri[:, 2] - point
    la, lb, lc = (np.linalg.norm(v, axis=1) for v in (a, b, c))
    det = np.einsum("ij,ij->i", a, np.cross(b, c))
    div = la * lb * lc + np.einsum("ij,ij->i", a, b) * lc + np.einsum("ij,ij->i", a, c) * lb \
        + np.einsum("ij,ij->i", b, c) * la
    return float(np.arctan2(det, div).sum() * 2.0 / (4.0 * np.pi))


def _inside(box_lo: np.ndarray, box_hi: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    return bool((lo >= box_lo).all() and (hi <= box_hi).all())


def orient_shells(tri: np.ndarray, labels: np.ndarray, facts: ShellFacts) -> tuple[np.ndarray, np.ndarray]:
    """(shells to turn inside out, shells that are voids), both boolean per shell.

    Shells are decided from the largest enclosed volume down, so a shell's containers are settled
    before it: a negative shell inside a shell that ends up positive is a void; any other negative
    shell is inside out and is turned.
    """
    turn = np.zeros(facts.count, dtype=bool)
    void = np.zeros(facts.count, dtype=bool)
    final_sign = np.sign(facts.volume)
    for s in np.argsort(-np.abs(facts.volume), kind="stable"):
        if facts.volume[s] >= 0:
            continue
        point = tri[np.flatnonzero(labels == s)[0], 0]
        container = False
        for t in range(facts.count):
            if t == s or abs(facts.volume[t]) <= abs(facts.volume[s]) or final_sign[t] <= 0:
                continue
            if not _inside(facts.bbox_min[t], facts.bbox_max[t], facts.bbox_min[s], facts.bbox_max[s]):
                continue
            if abs(winding_number(point, tri[labels == t])) > 0.5:
                container = True
                break
        if container:
            void[s] = True
        else:
            turn[s] = True
            final_sign[s] = 1
    return turn, void

"""What a jeweller needs to know about a model before making it, in one pass over its triangles.

:func:`inspect_model` measures the model (:mod:`geometry`), then, for a closed 2-manifold:

1. splits it into shells and orients each one: a consistently-orientable shell with a flipped patch is
   made consistent, an inside-out shell is turned, a cavity inside a body stays a cavity (:mod:`shells`);
2. finds the shells that look like set stones, which are listed and not counted as metal (:mod:`stones`);
3. unites metal bodies whose bounding boxes overlap, so overlapping volume is counted once (manifold3d);
4. looks for a ring's round through-hole and its size (:mod:`rings_detect`);
5. measures wall thickness against the alloy's minimum (:mod:`walls`).

An open or non-manifold surface stops after the measurement, with the number of open or shared edges
and where a few of them are. :func:`plausibility` compares the result with what pieces of its kind
weigh and measure. Every message here is for the customer: what we measured and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import manifold3d
import numpy as np

from alexandrite.models3d import shells as shell_ops
from alexandrite.models3d.geometry import MeshFacts, measure
from alexandrite.models3d.rings_detect import Hole, find_hole, ring_size
from alexandrite.models3d.stones import Stone, find_stones
from alexandrite.models3d.walls import DEFAULT_RAYS, WallReport, check_walls

__all__ = ["Concern", "Inspection", "KIND_LIMITS", "inspect_model", "plausibility"]

_MAX_LOCATIONS = 5


@dataclass(frozen=True)
class Problem:
    """Why a surface cannot be cast as it is: ``code`` (not_watertight / non_manifold), counts, places."""

    code: str
    open_edges: int
    shared_edges: int
    locations: list[list[float]]


@dataclass(frozen=True)
class ShellInfo:
    index: int
    role: str  # "metal" | "stone" | "void"
    triangles: int
    volume_mm3: float  # as oriented: voids are negative
    surface_mm2: float
    bbox_min: list[float]
    bbox_max: list[float]
    turned: bool  # it was inside out and was turned
    repaired_faces: int  # faces turned to make it consistent

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "role": self.role, "triangles": self.triangles,
                "volume_mm3": round(self.volume_mm3, 3), "surface_mm2": round(self.surface_mm2, 3),
                "size_mm": [round(h - lo, 3) for lo, h in zip(self.bbox_min, self.bbox_max, strict=True)],
                "turned_inside_out": self.turned, "repaired_faces": self.repaired_faces}


@dataclass
class Inspection:
    facts: MeshFacts
    problem: Problem | None = None
    shells: list[ShellInfo] = field(default_factory=list)
    stones: list[Stone] = field(default_factory=list)
    stones_capped: bool = False
    metal_volume_mm3: float = 0.0
    metal_surface_mm2: float = 0.0
    united_shells: int = 0  # metal bodies merged because they overlap
    overlap_mm3: float = 0.0  # volume the overlapping bodies shared (counted once)
    union_failed: bool = False
    metal_bodies: int = 0
    genus: int = 0
    hole: Hole | None = None
    wall: WallReport | None = None
    notes: list[dict[str, str]] = field(default_factory=list)
    # The triangles as oriented (same order as given, only corners reversed) and which faces are metal.
    oriented: np.ndarray | None = field(default=None, repr=False)
    metal_mask: np.ndarray | None = field(default=None, repr=False)

    @property
    def repaired_faces(self) -> int:
        return sum(s.repaired_faces for s in self.shells)

    @property
    def turned_shells(self) -> int:
        return sum(1 for s in self.shells if s.turned)

    @property
    def kind(self) -> str:
        return piece_kind(self)

    def ring(self) -> dict[str, Any] | None:
        if self.hole is None or self.kind not in ("ring", "bangle", "hoop"):
            return None
        out: dict[str, Any] = {"kind": self.kind, **self.hole.as_dict()}
        if self.kind == "ring":
            out["size"] = ring_size(self.hole.inner_diameter_mm)
        return out


# --- open surfaces ----------------------------------------------------------------------------------

def _edge_places(tri: np.ndarray, faces: np.ndarray, uses_wanted: str) -> tuple[int, list[list[float]]]:
    """(number of edges used once ("open") or more than twice ("shared")), and up to 5 of their midpoints,
    one per 2 mm region."""
    tail = faces.reshape(-1)
    head = faces[:, [1, 2, 0]].reshape(-1)
    proper = np.repeat((faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0]), 3)
    bound = int(faces.max()) + 1
    key = (np.minimum(tail, head) * bound + np.maximum(tail, head))[proper]
    corner = np.flatnonzero(proper)
    order = np.argsort(key, kind="stable")
    key = key[order]
    start = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    uses = np.diff(np.append(start, len(key)))
    chosen = start[uses == 1] if uses_wanted == "open" else start[uses > 2]
    c = corner[order[chosen]]
    f, k = c // 3, c % 3
    mid = (tri[f, k] + tri[f, (k + 1) % 3]) / 2.0
    places: list[list[float]] = []
    seen: set[tuple[int, ...]] = set()
    for point in mid[:10_000]:
        cell = tuple(np.floor(point / 2.0).astype(int).tolist())
        if cell not in seen:
            seen.add(cell)
            places.append([round(float(v), 2) for v in point])
            if len(places) == _MAX_LOCATIONS:
                break
    return len(chosen), places


# --- overlapping bodies ----------------------------------------------------------------------------

def _clusters(lo: np.ndarray, hi: np.ndarray, members: np.ndarray) -> list[list[int]]:
    """Groups of shells (among ``members``) whose bounding boxes overlap, directly or through others."""
    parent = {int(s): int(s) for s in members}

    def top(s: int) -> int:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    order = members[np.argsort(lo[members, 0], kind="stable")]
    for i, s in enumerate(order):  # sweep along x: only boxes starting before s ends can meet it
        for t in order[i + 1:]:
            if lo[t, 0] > hi[s, 0]:
                break
            if (lo[t] <= hi[s]).all() and (lo[s] <= hi[t]).all():
                parent[top(int(t))] = top(int(s))
    groups: dict[int, list[int]] = {}
    for s in members:
        groups.setdefault(top(int(s)), []).append(int(s))
    return [g for g in groups.values() if len(g) > 1]


def _manifold(tri: np.ndarray, faces: np.ndarray) -> manifold3d.Manifold:
    used, local = np.unique(faces, return_inverse=True)
    vertices = np.zeros((len(used), 3))
    vertices[local.reshape(-1)] = tri.reshape(-1, 3)
    return manifold3d.Manifold(manifold3d.Mesh64(vert_properties=np.ascontiguousarray(vertices),
                                                 tri_verts=local.reshape(-1, 3).astype(np.uint64)))


def _unite(tri: np.ndarray, faces: np.ndarray, labels: np.ndarray, bodies: list[int],
           voids: list[int]) -> tuple[float, float] | None:
    """(volume, surface) of the union of the bodies less the voids inside them; None if it cannot be built."""
    parts = [_manifold(tri[labels == s], faces[labels == s]) for s in bodies]
    holes = [_manifold(tri[labels == s][:, ::-1], faces[labels == s][:, ::-1]) for s in voids]
    if any(p.status() != manifold3d.Error.NoError for p in parts + holes):
        return None
    united = manifold3d.Manifold.batch_boolean(parts, manifold3d.OpType.Add)
    if holes:
        united = united - manifold3d.Manifold.batch_boolean(holes, manifold3d.OpType.Add)
    return float(united.volume()), float(united.surface_area())


# --- the inspection --------------------------------------------------------------------------------

def inspect_model(triangles: np.ndarray, *, min_wall_mm: float | None = None,
                  wall_rays: int = DEFAULT_RAYS) -> Inspection:
    """Everything above for a triangle soup (n, 3, 3) in mm; walls are checked when ``min_wall_mm`` is given."""
    facts, merge = measure(triangles)
    inspection = Inspection(facts=facts)
    if facts.triangles == 0:
        return inspection
    tri = np.array(triangles, dtype=np.float64)  # a private copy: faces may be turned below
    faces = merge.ids.reshape(-1, 3).copy()
    if facts.boundary_edges or facts.non_manifold_edges:
        code = "not_watertight" if facts.boundary_edges else "non_manifold"
        count, places = _edge_places(tri, faces, "open" if facts.boundary_edges else "shared")
        inspection.problem = Problem(code, facts.boundary_edges, facts.non_manifold_edges, places)
        return inspection
    labels, count = shell_ops.label_shells(merge, consistent=not facts.misoriented_edges)
    repaired = np.zeros(count, dtype=np.int64)
    if facts.misoriented_edges:
        flips = shell_ops.consistent_flips(faces, labels)
        if flips is None:
            inspection.problem = Problem("not_orientable", 0, 0, [])
            return inspection
        tri[flips] = tri[flips][:, ::-1]
        faces[flips] = faces[flips][:, ::-1]
        repaired = np.bincount(labels[flips], minlength=count)
    if count == 1 and not facts.misoriented_edges:  # the usual piece: one shell, measured already
        signed = -facts.volume_mm3 if facts.inverted else facts.volume_mm3
        per_shell = shell_ops.ShellFacts(1, np.array([facts.triangles]), np.array([signed]),
                                         np.array([facts.surface_mm2]), np.array([facts.bbox_min]),
                                         np.array([facts.bbox_max]), np.array([facts.vertices]))
    else:
        per_shell = shell_ops.shell_facts(tri, labels, count, faces, facts.vertices)
    turn, void = shell_ops.orient_shells(tri, labels, per_shell)
    volume = per_shell.volume.copy()
    if turn.any():
        turned_faces = turn[labels]
        tri[turned_faces] = tri[turned_faces][:, ::-1]
        faces[turned_faces] = faces[turned_faces][:, ::-1]
        volume[turn] *= -1
    stones, inspection.stones_capped = find_stones(tri, labels, volume, per_shell.bbox_min, per_shell.bbox_max,
                                                   ~void & (volume > 0))
    stone = np.zeros(count, dtype=bool)
    stone[[s.shell for s in stones]] = True
    inspection.stones = stones
    role = np.where(stone, "stone", np.where(void, "void", "metal"))
    inspection.shells = [ShellInfo(s, str(role[s]), int(per_shell.triangles[s]), float(volume[s]),
                                   float(per_shell.area[s]), per_shell.bbox_min[s].tolist(),
                                   per_shell.bbox_max[s].tolist(), bool(turn[s]), int(repaired[s]))
                         for s in range(count)]
    metal = ~stone
    metal_volume = float(volume[metal].sum())
    metal_surface = float(per_shell.area[metal].sum())
    bodies = np.flatnonzero(metal & ~void)
    inspection.metal_bodies = len(bodies)
    for group in _clusters(per_shell.bbox_min, per_shell.bbox_max, bodies):
        inside = [int(v) for v in np.flatnonzero(void)
                  if any((per_shell.bbox_min[v] >= per_shell.bbox_min[b]).all()
                         and (per_shell.bbox_max[v] <= per_shell.bbox_max[b]).all() for b in group)]
        united = _unite(tri, faces, labels, group, inside)
        if united is None:
            inspection.union_failed = True
            continue
        before_volume = float(volume[group].sum() + volume[inside].sum())
        before_surface = float(per_shell.area[group].sum() + per_shell.area[inside].sum())
        if united[0] < before_volume - 1e-9 * max(1.0, before_volume):
            inspection.united_shells += len(group)
            inspection.overlap_mm3 += before_volume - united[0]
            metal_volume += united[0] - before_volume
            metal_surface += united[1] - before_surface
    inspection.metal_volume_mm3 = metal_volume
    inspection.metal_surface_mm2 = metal_surface
    metal_faces = metal[labels]
    metal_vertices = int(per_shell.vertices[metal].sum())
    metal_count = int(metal_faces.sum())
    # Euler: V - E + F = 2 * shells - 2 * genus, with E = 3F / 2 on a closed surface.
    inspection.genus = max(0, (2 * int(metal.sum()) - (metal_vertices - metal_count // 2)) // 2)
    metal_tri = tri[metal_faces] if stone.any() else tri
    inspection.oriented, inspection.metal_mask = tri, metal_faces
    unchanged = not (stone.any() or facts.misoriented_edges or turn.any())  # corners where measure saw them
    inspection.hole = find_hole(metal_tri, inspection.genus, merge if unchanged else None)
    if min_wall_mm is not None:
        inspection.wall = check_walls(metal_tri, min_wall_mm, max_rays=wall_rays)
    inspection.notes = _notes(inspection)
    return inspection


def _notes(found: Inspection) -> list[dict[str, str]]:
    """Things the customer and the seller should know that do not stop the pricing."""
    notes = []
    if found.repaired_faces:
        notes.append({"code": "faces_repaired", "message": (
            f"{found.repaired_faces:,} faces of the model pointed the wrong way; we turned them so the surface is "
            "consistent. Nothing else changed.")})
    if found.turned_shells == 1:
        notes.append({"code": "shells_turned", "message": (
            "1 part of the model was inside out (often a mirrored copy); we turned it the right way out and "
            "counted its metal.")})
    elif found.turned_shells:
        notes.append({"code": "shells_turned", "message": (
            f"{found.turned_shells} parts of the model were inside out (often mirrored copies); we turned them "
            "the right way out and counted their metal.")})
    if found.united_shells:
        notes.append({"code": "overlaps_united", "message": (
            f"{found.united_shells} overlapping parts share {found.overlap_mm3:,.1f} mm³; we counted that metal "
            "once, as it will be cast.")})
    if found.union_failed:
        notes.append({"code": "overlaps_not_united", "message": (
            "Some parts of the model overlap and we could not merge them exactly; their shared volume may be "
            "counted twice. A jeweller will check the price.")})
    if found.stones:
        notes.append({"code": "stones_found", "message": (
            f"We found {len(found.stones)} part{'s' if len(found.stones) > 1 else ''} shaped like set stones and "
            "priced the metal without them. The seller confirms the stones and prices them separately.")})
    if found.stones_capped:
        notes.append({"code": "too_many_stones", "message": (
            "The model has more separate small parts than we examine one by one; the rest are counted as metal. "
            "The seller will check them.")})
    for void in (s for s in found.shells if s.role == "void"):
        notes.append({"code": "cavity", "message": (
            f"The model has a closed cavity of {abs(void.volume_mm3):,.1f} mm³ inside; we left it out of the metal. "
            "Hollow pieces need a hole to drain the casting material: the jeweller will check.")})
        break
    wall = found.wall
    if wall is not None and wall.thin:
        where = "; ".join(f"{loc['thinnest_mm']:.2f} mm near ({', '.join(f'{v:.1f}' for v in loc['at_mm'])})"
                          for loc in wall.locations[:3])
        notes.append({"code": "thin_walls", "message": (
            f"Some walls are thinner than {wall.minimum_mm:.1f} mm, the minimum this metal can be cast at: the "
            f"thinnest is {wall.thinnest_mm:.2f} mm, over about {wall.thin_area_mm2:,.1f} mm² of the surface "
            f"({where}). Thicken them or the piece may break or not fill; the thin areas are marked on the preview.")})
    ring = found.ring()
    if ring is not None and ring["kind"] == "ring" and not ring["size"]["in_chart"]:
        notes.append({"code": "ring_size_unusual", "message": (
            f"The ring's inside is {ring['inner_diameter_mm']:.1f} mm across (US {ring['size']['us']:g}, "
            f"EU {ring['size']['eu']}), outside the usual size chart. Check that this is the size you want.")})
    return notes


# --- plausibility ------------------------------------------------------------------------------------

KIND_LIMITS: dict[str, dict[str, float]] = {
    # inner / outer diameters and the largest size in mm, metal mass in g (in the order's alloy)
    "ring": {"inner_min": 12.0, "inner_max": 25.0, "outer_max": 35.0, "mass_max": 80.0},
    "hoop": {"inner_min": 25.0, "inner_max": 45.0, "size_max": 80.0, "mass_max": 150.0},
    "bangle": {"inner_min": 45.0, "inner_max": 80.0, "size_max": 120.0, "mass_max": 250.0},
    "piece": {"size_max": 80.0, "mass_max": 150.0},
    "parts": {"size_max": 120.0, "mass_max": 250.0},  # five or more separate metal parts: a chain, a set
}
_BAND_RATIO = 0.45  # a hole at least this share of the outer diameter makes a band (ring, hoop, bangle)
_KIND_WORDS = {"ring": "a ring", "hoop": "a hoop", "bangle": "a bangle", "piece": "a pendant, earring or brooch",
               "parts": "a piece made of separate parts"}


def piece_kind(found: Inspection) -> str:
    """ring, hoop, bangle (a band around a round through-hole, by its inside), parts or piece."""
    hole = found.hole
    if hole is not None and hole.inner_diameter_mm >= _BAND_RATIO * hole.outer_diameter_mm:
        inner = hole.inner_diameter_mm
        if inner < KIND_LIMITS["ring"]["inner_max"]:
            return "ring"
        if inner < KIND_LIMITS["hoop"]["inner_max"]:
            return "hoop"
        return "bangle"
    return "parts" if found.metal_bodies >= 5 else "piece"


@dataclass(frozen=True)
class Concern:
    """A measurement unusual for the piece's kind: priced only once the customer confirms it."""

    code: str  # what confirming it is called: "scale"
    message: str
    details: dict[str, Any]


def plausibility(found: Inspection, density_g_cm3: float, alloy_words: str) -> Concern | None:
    """A scale concern when size or mass is implausible for the kind of piece, else None."""
    kind = found.kind
    limits = KIND_LIMITS[kind]
    size = found.facts.size_mm
    largest = max(size)
    mass = found.metal_volume_mm3 / 1000.0 * density_g_cm3
    hole = found.hole if kind in ("ring", "hoop", "bangle") else None
    reasons: list[str] = []
    if hole is not None:
        inner, outer = hole.inner_diameter_mm, hole.outer_diameter_mm
        if kind == "ring" and inner < limits["inner_min"]:
            reasons.append(f"as a ring it would not fit a finger (ring sizes start at about "
                           f"{limits['inner_min']:.0f} mm inside)")
        if kind == "ring" and outer > limits["outer_max"]:
            reasons.append(f"as a ring it is {outer:.1f} mm across, more than a ring's usual "
                           f"{limits['outer_max']:.0f} mm")
        if kind == "bangle" and inner > limits["inner_max"]:
            reasons.append(f"the opening is larger than a ring's ({KIND_LIMITS['ring']['inner_min']:.0f}–"
                           f"{KIND_LIMITS['ring']['inner_max']:.0f} mm) or a bangle's "
                           f"({limits['inner_min']:.0f}–{limits['inner_max']:.0f} mm)")
    if "size_max" in limits and largest > limits["size_max"]:
        reasons.append(f"it is {largest:.1f} mm long, more than {_KIND_WORDS[kind]} usually measures "
                       f"({limits['size_max']:.0f} mm)")
    if mass > limits["mass_max"]:
        reasons.append(f"it would weigh {mass:,.0f} g in {alloy_words}, more than {_KIND_WORDS[kind]} usually does "
                       f"({limits['mass_max']:.0f} g)")
    if not reasons:
        return None
    dims = " × ".join(f"{v:.1f}" for v in size)
    opening = f" with a round opening {hole.inner_diameter_mm:.1f} mm across" if hole is not None else ""
    message = (f"Please check the size: the model measures {dims} mm{opening}, and {'; '.join(reasons)}. "
               "If it was exported at the wrong scale (for example in centimetres or inches, or 10 times too "
               "large), export it in millimetres at its real size and upload it again. If the size is right, "
               "confirm it and we will price it as it is.")
    details: dict[str, Any] = {"confirm": "scale", "kind": kind, "size_mm": [round(v, 3) for v in size],
                               "metal_mass_g": round(mass, 1), "reasons": reasons}
    if hole is not None:
        details["inner_diameter_mm"] = hole.inner_diameter_mm
        details["outer_diameter_mm"] = hole.outer_diameter_mm
    return Concern("scale", message, details)

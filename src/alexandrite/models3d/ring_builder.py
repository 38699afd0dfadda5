"""Ring constructor: a finger ring from a size, band, profile and an optional setting, as one closed mesh.

The band is a revolved profile (``rings.revolve_indexed``). A setting is made by *extruding* quads of
the band's outer surface radially outward, the way a modeller extrudes faces: the patch is lifted, and
each of its boundary edges gets a side wall joining the old and the new position. The result stays
one closed, consistently oriented 2-manifold (no overlapping shells, so its volume is the metal's).

- ``bezel``: one block over the stone's footprint whose top is dished in to seat the stone;
- ``prongs``: four posts at the corners of the stone's footprint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from alexandrite.models3d import ring_sizes, rings

SETTINGS = ("none", "bezel", "prongs")
SIZE_SYSTEMS = ring_sizes.SYSTEMS

LIMITS = {
    "band_width_mm": (1.5, 12.0),
    "thickness_mm": (1.0, 4.0),
    "stone_mm": (2.0, 10.0),
}
SEGMENTS = 128
PROFILE_SEGMENTS = 16
MIN_OUTER_EDGES = 8  # the outer surface is split at least this finely, so a setting can sit on part of it


class RingSpecError(ValueError):
    """A parameter out of range; ``field`` names it, ``message`` says what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class RingSpec:
    size: float = 7.0
    size_system: str = "us"
    band_width_mm: float = 4.0
    thickness_mm: float = 1.8
    profile: str = "comfort"
    setting: str = "none"
    stone_mm: float = 5.0

    def inner_diameter_mm(self) -> float:
        return inner_diameter_mm(self.size, self.size_system)

    def check(self) -> "RingSpec":
        self.inner_diameter_mm()
        if self.profile not in rings.PROFILES:
            raise RingSpecError("profile", f"Choose a profile: {', '.join(rings.PROFILES)}.")
        if self.setting not in SETTINGS:
            raise RingSpecError("setting", f"Choose a setting: {', '.join(SETTINGS)}.")
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and low <= value <= high):
                label = name.removesuffix("_mm").replace("_", " ")
                raise RingSpecError(name, f"The {label} must be between {low:g} and {high:g} mm.")
        if self.setting != "none" and self.stone_mm > 2.5 * self.band_width_mm:
            raise RingSpecError("stone_mm", "The stone is too large for this band: choose a wider band "
                                            "or a smaller stone.")
        return self


def inner_diameter_mm(size: float, system: str) -> float:
    """Inner diameter from the size chart; RingSpecError for a size the chart does not have."""
    if system not in SIZE_SYSTEMS:
        raise RingSpecError("size_system", f"Choose a size system: {', '.join(SIZE_SYSTEMS)}.")
    try:
        return ring_sizes.offered_inner_diameter_mm(size, system)
    except ring_sizes.RingSizeError as error:
        raise RingSpecError("size", str(error)) from error


def size_chart() -> list[dict[str, object]]:
    """The sizes offered, for forms: [{system, size, label, inner_diameter_mm}]."""
    return ring_sizes.chart()


# --- mesh operations ----------------------------------------------------------------------------

def _outer_edges(profile: np.ndarray) -> np.ndarray:
    """Indices of profile edges (j -> j+1) that face mostly outward (away from the axis)."""
    a, b = profile, np.roll(profile, -1, axis=0)
    dr, dz = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    length = np.hypot(dr, dz)
    # For a counter-clockwise polygon the outward normal of an edge is (dz, -dr).
    return np.flatnonzero(dz > 0.5 * length)


def densify_outer(profile: np.ndarray, minimum: int = MIN_OUTER_EDGES) -> np.ndarray:
    """Split the outward-facing straight edges so the outer surface has at least `minimum` edges.

    The added points lie on the existing edges, so the solid (and its volume) does not change."""
    outer = _outer_edges(profile)
    if len(outer) >= minimum:
        return profile
    parts = math.ceil(minimum / max(len(outer), 1))
    points: list[np.ndarray] = []
    nxt = np.roll(profile, -1, axis=0)
    for j in range(len(profile)):
        if j in set(outer.tolist()):
            t = np.arange(parts)[:, None] / parts
            points.append(profile[j] + t * (nxt[j] - profile[j]))
        else:
            points.append(profile[j][None, :])
    return np.concatenate(points)


def extrude(verts: np.ndarray, quads: np.ndarray, selected: np.ndarray,
            height: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lift the selected quads radially outward by `height` mm, with side walls on the patch's border.

    Returns (vertices, quads, top) where `top` are the indices of the lifted patch's vertices that
    are not on its border (its inside, where a stone seat can be dished in)."""
    patch = quads[selected]
    old = np.unique(patch)
    lifted = verts[old].copy()
    radius = np.hypot(lifted[:, 0], lifted[:, 1])
    lifted[:, :2] *= ((radius + height) / radius)[:, None]
    mapping = np.full(len(verts), -1, dtype=np.int64)
    mapping[old] = len(verts) + np.arange(len(old))
    directed = {(int(q[k]), int(q[(k + 1) % 4])) for q in patch for k in range(4)}
    border = [(a, b) for a, b in directed if (b, a) not in directed]
    # The neighbour outside the patch runs b -> a, the lifted top a' -> b': the wall is a, b, b', a'.
    walls = np.array([[a, b, mapping[b], mapping[a]] for a, b in sorted(border)], dtype=np.int64)
    new_quads = np.concatenate([quads[~selected], mapping[patch], walls])
    on_border = np.unique([mapping[v] for edge in border for v in edge])
    inside = np.setdiff1d(mapping[old], on_border)
    return np.concatenate([verts, lifted]), new_quads, inside


def _setting_quads(spec: RingSpec, profile: np.ndarray, segments: int) -> tuple[np.ndarray, np.ndarray]:
    """(angular steps, profile edges) of the stone's footprint on the outer surface, centred on +x."""
    outer = _outer_edges(profile)
    r_out = float(profile[:, 0].max())
    step = 2.0 * math.pi * r_out / segments
    half_steps = max(2, math.ceil(spec.stone_mm / 2.0 / step))
    steps = np.arange(-half_steps, half_steps) % segments
    mid_z = (profile[outer, 1] + np.roll(profile, -1, axis=0)[outer, 1]) / 2.0
    chosen = outer[np.abs(mid_z) <= spec.stone_mm / 2.0]
    if len(chosen) < 3:  # a small stone on a coarse profile: the 3 central outer edges
        centre = int(np.argmin(np.abs(mid_z)))
        chosen = outer[max(0, centre - 1):centre + 2]
    return steps, chosen


def build_ring(spec: RingSpec, segments: int = SEGMENTS, profile_segments: int = PROFILE_SEGMENTS) -> np.ndarray:
    """The ring as a closed triangle mesh (n, 3, 3) in mm; the band's axis is z, a setting points to +x."""
    spec.check()
    profile = densify_outer(rings.ring_profile(spec.inner_diameter_mm(), spec.band_width_mm, spec.thickness_mm,
                                               spec.profile, profile_segments))
    verts, quads = rings.revolve_indexed(profile, segments)
    if spec.setting == "none":
        return rings.quads_to_triangles(verts, quads)
    p = len(profile)
    steps, edges = _setting_quads(spec, profile, segments)
    quad_index = (steps[:, None] * p + edges[None, :])
    if spec.setting == "bezel":
        selected = np.zeros(len(quads), dtype=bool)
        selected[quad_index.ravel()] = True
        height = bezel_height(spec)
        verts, quads, inside = extrude(verts, quads, selected, height)
        # Dish the top in to seat the stone: its inside drops back toward the band.
        radius = np.hypot(verts[inside, 0], verts[inside, 1])
        verts[inside, :2] *= ((radius - 0.5 * height) / radius)[:, None]
        return rings.quads_to_triangles(verts, quads)
    # Prongs: a post at each corner of the footprint (2 x 2 quads where it is wide enough), lifted one by one.
    height = prong_height(spec)
    rows, cols = quad_index.shape
    span_i, span_j = (2 if rows >= 5 else 1), (2 if cols >= 5 else 1)
    for i0, j0 in ((0, 0), (0, cols - span_j), (rows - span_i, 0), (rows - span_i, cols - span_j)):
        corner = quad_index[i0:i0 + span_i, j0:j0 + span_j].ravel()
        # Earlier extrusions drop the quads they lifted: find these again by their vertices.
        selected = np.zeros(len(quads), dtype=bool)
        for index in corner:
            selected |= (quads == _original_quad(int(index), p, segments)).all(axis=1)
        verts, quads, _ = extrude(verts, quads, selected, height)
    return rings.quads_to_triangles(verts, quads)


def _original_quad(index: int, p: int, segments: int) -> np.ndarray:
    i, j = divmod(int(index), p)
    return np.array([i * p + j, ((i + 1) % segments) * p + j, ((i + 1) % segments) * p + (j + 1) % p,
                     i * p + (j + 1) % p])


def bezel_height(spec: RingSpec) -> float:
    return min(max(0.4 * spec.stone_mm, 1.2), 3.0)


def prong_height(spec: RingSpec) -> float:
    return min(max(0.7 * spec.stone_mm, 2.0), 5.0)

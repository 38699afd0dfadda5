"""Ring bands: cross-section profiles revolved around the z axis.

Every generator returns a closed, outward-oriented triangle array of shape (n, 3, 3), float64, in
millimetres. Shared vertices are computed once and indexed, so coincident corners are bit-identical.
"""

from __future__ import annotations

import math

import numpy as np

PROFILES = ("flat", "comfort", "d_shape", "court")

# Comfort fit: how far the inner edges sit back from the innermost point (fraction of thickness).
COMFORT_RELIEF = 0.45
# D shape: thickness left at the band's edges, where the outer dome meets the flat inside.
D_SHAPE_EDGE = 0.4
# Court: domed outside and comfort-fit inside; inner relief and edge thickness (fractions of thickness).
COURT_RELIEF = 0.3
COURT_EDGE = 0.3


# --- profiles and revolution -------------------------------------------------------------------

def ring_profile(inner_diameter_mm: float = 17.3, band_width_mm: float = 4.0, thickness_mm: float = 1.8,
                 profile: str = "comfort", profile_segments: int = 16) -> np.ndarray:
    """Cross-section polygon of a ring as (r, z) points, counter-clockwise, shape (P, 2)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown ring profile {profile!r}; choose one of {', '.join(PROFILES)}")
    for name, value in (("inner_diameter_mm", inner_diameter_mm), ("band_width_mm", band_width_mm),
                        ("thickness_mm", thickness_mm)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if profile_segments < 1:
        raise ValueError("profile_segments must be at least 1")
    r_in = inner_diameter_mm / 2.0
    r_out = r_in + thickness_mm
    half = band_width_mm / 2.0
    if profile == "flat":
        k = max(1, profile_segments // 4)
        t = np.arange(k) / k
        bottom = np.column_stack([r_in + (r_out - r_in) * t, np.full(k, -half)])
        outer = np.column_stack([np.full(k, r_out), -half + band_width_mm * t])
        top = np.column_stack([r_out - (r_out - r_in) * t, np.full(k, half)])
        inner = np.column_stack([np.full(k, r_in), half - band_width_mm * t])
        return np.concatenate([bottom, outer, top, inner])
    theta = np.linspace(-math.pi / 2, math.pi / 2, profile_segments + 1)
    z = half * np.sin(theta)
    z[0], z[-1] = -half, half
    if profile == "comfort":
        relief = COMFORT_RELIEF * thickness_mm
        arc_r = r_in + relief * (1.0 - np.cos(theta))
        arc_r[0] = arc_r[-1] = r_in + relief
        arc = np.column_stack([arc_r, z])[::-1]  # top to bottom along the inside
        return np.concatenate([[[r_out, -half], [r_out, half]], arc])
    if profile == "court":
        relief = COURT_RELIEF * thickness_mm
        edge_out = r_in + relief + COURT_EDGE * thickness_mm
        outer_r = edge_out + (r_out - edge_out) * np.cos(theta)
        outer_r[0] = outer_r[-1] = edge_out
        inner_r = r_in + relief * (1.0 - np.cos(theta))
        inner_r[0] = inner_r[-1] = r_in + relief
        outer = np.column_stack([outer_r, z])  # bottom to top along the outside
        inner = np.column_stack([inner_r, z])[::-1]  # top to bottom along the inside
        return np.concatenate([outer, inner])
    edge = D_SHAPE_EDGE * thickness_mm
    arc_r = r_in + edge + (thickness_mm - edge) * np.cos(theta)
    arc_r[0] = arc_r[-1] = r_in + edge
    arc = np.column_stack([arc_r, z])  # bottom to top along the outside
    return np.concatenate([[[r_in, -half]], arc, [[r_in, half]]])


def revolve_indexed(profile_rz: np.ndarray, segments: int) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (n*P, 3), quads (n*P, 4)) of a counter-clockwise (r, z) polygon revolved about z.

    Quad (i, j) joins profile edge j at steps i and i+1, ordered so that its triangles (a, b, c) and
    (a, c, d) face outward; vertex (i, j) has index i * P + j.
    """
    profile_rz = np.asarray(profile_rz, dtype=np.float64)
    if segments < 3:
        raise ValueError("segments must be at least 3")
    if profile_rz.ndim != 2 or profile_rz.shape[1] != 2 or len(profile_rz) < 3:
        raise ValueError("profile must be an array of at least 3 (r, z) points")
    if (profile_rz[:, 0] <= 0).any():
        raise ValueError("profile must lie strictly off the axis (r > 0)")
    n, p = segments, len(profile_rz)
    phi = 2.0 * math.pi * np.arange(n) / n
    r, z = profile_rz[:, 0], profile_rz[:, 1]
    grid = np.empty((n, p, 3))
    grid[..., 0] = np.cos(phi)[:, None] * r[None, :]
    grid[..., 1] = np.sin(phi)[:, None] * r[None, :]
    grid[..., 2] = z[None, :]
    i = np.arange(n)[:, None]
    j = np.arange(p)[None, :]
    a = (i * p + j).ravel()
    b = (((i + 1) % n) * p + j).ravel()
    c = (((i + 1) % n) * p + (j + 1) % p).ravel()
    d = (i * p + (j + 1) % p).ravel()
    return grid.reshape(-1, 3), np.column_stack([a, b, c, d])


def quads_to_triangles(verts: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Split quads (a, b, c, d) into triangles (a, b, c) and (a, c, d): shape (2 * len(quads), 3, 3)."""
    quads = np.asarray(quads)
    faces = np.stack([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]], axis=1).reshape(-1, 3)
    return np.asarray(verts)[faces]


def revolve(profile_rz: np.ndarray, segments: int) -> np.ndarray:
    """Revolve a counter-clockwise (r, z) polygon about the z axis in `segments` straight steps."""
    return quads_to_triangles(*revolve_indexed(profile_rz, segments))


# --- generators --------------------------------------------------------------------------------

def ring(inner_diameter_mm: float = 17.3, band_width_mm: float = 4.0, thickness_mm: float = 1.8,
         profile: str = "comfort", segments: int = 128, profile_segments: int = 16) -> np.ndarray:
    """A finger ring around the z axis; the band width runs along z."""
    shape = ring_profile(inner_diameter_mm, band_width_mm, thickness_mm, profile, profile_segments)
    return revolve(shape, segments)

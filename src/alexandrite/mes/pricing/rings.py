"""Parametric test and simulation meshes (rings, tori, boxes, spheres) and file writers.

Every generator returns a closed, outward-oriented triangle array of shape (n, 3, 3), float64, in
millimetres. Shared vertices are computed once and indexed, so coincident corners are bit-identical.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
from collections.abc import Sequence

import numpy as np

PROFILES = ("flat", "comfort", "d_shape", "court")
RING_SIZE_SYSTEMS = ("eu", "iso", "us")

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


def ring_size_to_inner_diameter(size: float, system: str = "eu") -> float:
    """Inner diameter in mm: EU/ISO sizes are the inner circumference in mm; US uses 11.63 + 0.8128 s."""
    if not math.isfinite(size) or size <= 0:
        raise ValueError(f"ring size must be a positive number, got {size!r}")
    if system in ("eu", "iso"):
        return size / math.pi
    if system == "us":
        return 11.63 + 0.8128 * size
    raise ValueError(f"unknown ring size system {system!r}; choose one of {', '.join(RING_SIZE_SYSTEMS)}")


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


# --- writers -----------------------------------------------------------------------------------

_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attributes", "<u2")])


def _as_triangles(tri: np.ndarray) -> np.ndarray:
    arr = np.asarray(tri, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (3, 3):
        raise ValueError(f"expected triangles of shape (n, 3, 3), got {arr.shape}")
    return arr


def _unit_normals(tri: np.ndarray) -> np.ndarray:
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, length, out=np.zeros_like(n), where=length > 0)


def to_binary_stl(tri: np.ndarray, header: bytes = b"alexandrite binary STL") -> bytes:
    """Binary STL: 80-byte header, uint32 count, 50 bytes per triangle (float32 coordinates)."""
    arr = _as_triangles(tri)
    records = np.zeros(len(arr), dtype=_STL_RECORD)
    records["normal"] = _unit_normals(arr)
    records["vertices"] = arr
    return header[:80].ljust(80, b" ") + struct.pack("<I", len(arr)) + records.tobytes()


def to_ascii_stl(tri: np.ndarray, name: str = "model") -> bytes:
    """ASCII STL with round-trip precision for float64 coordinates."""
    arr = _as_triangles(tri)
    values = np.concatenate([_unit_normals(arr), arr.reshape(-1, 9)], axis=1)
    facet = ("facet normal %r %r %r\n outer loop\n  vertex %r %r %r\n  vertex %r %r %r\n"
             "  vertex %r %r %r\n endloop\nendfacet\n")
    body = (facet * len(arr)) % tuple(values.ravel().tolist())
    return f"solid {name}\n{body}endsolid {name}\n".encode("ascii")


def shared_vertices(tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (v, 3), faces (n, 3)) with bit-identical corners merged."""
    arr = _as_triangles(tri)
    verts, inverse = np.unique(arr.reshape(-1, 3), axis=0, return_inverse=True)
    return verts, inverse.reshape(-1, 3)


def to_obj(tri: np.ndarray) -> bytes:
    """Wavefront OBJ with shared vertices and 1-based faces."""
    verts, faces = shared_vertices(tri)
    v = ("v %r %r %r\n" * len(verts)) % tuple(verts.ravel().tolist())
    f = ("f %d %d %d\n" * len(faces)) % tuple((faces + 1).ravel().tolist())
    return f"# alexandrite\n{v}{f}".encode("ascii")


_3MF_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="model" ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/>'
    "</Types>"
)
_3MF_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Target="/3D/3dmodel.model" Id="rel0" '
    'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>'
    "</Relationships>"
)


def model_xml_3mf(tri: np.ndarray, unit: str = "millimeter", transform: str | None = None) -> bytes:
    """The 3D/3dmodel.model document for one mesh object (optionally placed with a build transform)."""
    verts, faces = shared_vertices(tri)
    v = ('<vertex x="%r" y="%r" z="%r"/>' * len(verts)) % tuple(verts.ravel().tolist())
    f = ('<triangle v1="%d" v2="%d" v3="%d"/>' * len(faces)) % tuple(faces.ravel().tolist())
    item = f'<item objectid="1" transform="{transform}"/>' if transform else '<item objectid="1"/>'
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<model unit="{unit}" xml:lang="en-US" '
        'xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">'
        f'<resources><object id="1" type="model"><mesh><vertices>{v}</vertices>'
        f"<triangles>{f}</triangles></mesh></object></resources><build>{item}</build></model>"
    ).encode("utf-8")


def to_3mf(tri: np.ndarray, unit: str = "millimeter", transform: str | None = None) -> bytes:
    """A minimal 3MF package (zip) holding one mesh object."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", _3MF_CONTENT_TYPES)
        zf.writestr("_rels/.rels", _3MF_RELS)
        zf.writestr("3D/3dmodel.model", model_xml_3mf(tri, unit, transform))
    return out.getvalue()

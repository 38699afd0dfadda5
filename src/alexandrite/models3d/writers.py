"""Mesh writers: binary and ASCII STL, OBJ and a minimal 3MF package."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np

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

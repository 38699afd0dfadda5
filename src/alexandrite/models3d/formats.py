"""Parse uploaded 3D model files (binary/ASCII STL, OBJ, 3MF) into a triangle array in millimetres.

Every failure is a :class:`ModelFormatError` with a machine-readable ``code`` and a sentence the
customer can act on. Sizes and counts are checked before anything proportional to them is allocated.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from alexandrite.models3d.errors import ModelFormatError, check_count, numbers
from alexandrite.models3d.limits import ModelLimits
from alexandrite.models3d.threemf import parse_3mf

__all__ = ["FORMATS", "ModelFormatError", "ParsedModel", "detect_format", "parse_model"]

FORMATS = ("stl_binary", "stl_ascii", "obj", "3mf")
_EXTENSIONS = {".stl": ("stl_binary", "stl_ascii"), ".obj": ("obj",), ".3mf": ("3mf",)}
_LABELS = {"stl_binary": "a binary STL", "stl_ascii": "an ASCII STL", "obj": "an OBJ", "3mf": "a 3MF (zip)"}

_STL_HEADER = 84
_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attributes", "<u2")])
_ZIP_MAGIC = b"PK\x03\x04"
_SNIFF_BYTES = 65536
_OBJ_LINE = re.compile(rb"(?m)^[ \t]*(?:v|vt|vn|f|o|g|s|mtllib|usemtl)[ \t]")
_DEGENERATE_SAMPLE = 64


@dataclass(frozen=True)
class ParsedModel:
    """A parsed model: its detected format and triangles (n, 3, 3) in millimetres (read-only)."""

    format: str
    triangles: np.ndarray


# --- detection -----------------------------------------------------------------------------------

def _extension(filename: str | None) -> str:
    if not filename:
        return ""
    return os.path.splitext(filename.replace("\\", "/").rsplit("/", 1)[-1])[1].lower()


_CONTROL_BYTES = bytes(c for c in range(32) if c not in (9, 10, 12, 13))


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return controls <= len(head) // 100


def _binary_stl_fits(data: bytes) -> bool:
    if len(data) < _STL_HEADER:
        return False
    count = int.from_bytes(data[80:84], "little")
    return len(data) == _STL_HEADER + 50 * count


def _sniff(data: bytes) -> str | None:
    """Format from content alone, or None when the bytes match none."""
    if data.startswith(_ZIP_MAGIC):
        return "3mf"
    if _binary_stl_fits(data):  # size arithmetic wins over a header that happens to start with "solid"
        return "stl_binary"
    head = data[:_SNIFF_BYTES]
    if not _is_text(head):
        return None
    lowered = head.lower()
    starts_solid = lowered.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"solid")
    if starts_solid and (b"facet" in lowered or b"endsolid" in lowered):
        return "stl_ascii"
    if _OBJ_LINE.search(head):
        return "obj"
    return None


def detect_format(data: bytes, filename: str | None) -> str:
    """Detect the format from the bytes; the filename's extension only has to agree with them."""
    if not data:
        raise ModelFormatError("empty_file", "The file is empty; upload the model again.")
    ext = _extension(filename)
    if ext and ext not in _EXTENSIONS:
        raise ModelFormatError("unsupported_format",
                               f"'{ext}' files are not supported; upload an STL, OBJ or 3MF model.")
    content = _sniff(data)
    if content is None:
        if ext == ".stl":  # a damaged STL: the parser reports what exactly is wrong
            return "stl_ascii" if _is_text(data[:_SNIFF_BYTES]) else "stl_binary"
        if ext:
            return _EXTENSIONS[ext][0]
        raise ModelFormatError("unsupported_format",
                               "The file is not a recognised 3D model; upload an STL, OBJ or 3MF model.")
    if ext and content not in _EXTENSIONS[ext]:
        raise ModelFormatError(
            "format_mismatch",
            f"The file is named '{ext}' but its contents are {_LABELS[content]}; "
            "rename it with the right extension or export it again.",
        )
    return content


# --- STL -----------------------------------------------------------------------------------------

def _parse_stl_binary(data: bytes, limits: ModelLimits) -> np.ndarray:
    max_triangles = limits.max_triangles
    if len(data) < _STL_HEADER:
        raise ModelFormatError("malformed_model",
                               f"The STL file is {len(data)} bytes, shorter than the 84-byte binary STL header.")
    claimed = int.from_bytes(data[80:84], "little")
    body = len(data) - _STL_HEADER
    if body != 50 * claimed:
        stray = f" and {body % 50} stray bytes" if body % 50 else ""
        raise ModelFormatError(
            "malformed_model",
            f"The binary STL header claims {claimed:,} triangles but the file's {len(data):,} bytes hold "
            f"{body // 50:,}{stray}; the file is truncated or damaged, export it again.",
        )
    check_count(claimed, max_triangles)
    records = np.frombuffer(data, dtype=_STL_RECORD, count=claimed, offset=_STL_HEADER)
    return np.ascontiguousarray(records["vertices"])


# Keywords vanish by turning every letter but e/E into a space; the lone "e"s left over from
# "facet", "outer", "vertex", "endloop" and "endfacet" are then blanked, keeping exponents intact.
_STL_LETTERS = bytes(c for c in range(256) if chr(c).isascii() and chr(c).isalpha() and c not in b"eE")
_STL_BLANK = bytes.maketrans(_STL_LETTERS + b"\t\r\n\f\v", b" " * (len(_STL_LETTERS) + 5))
_SOLID_JOIN = re.compile(rb"endsolid[^\n]*\n\s*solid[^\n]*")


def _parse_stl_ascii(data: bytes, limits: ModelLimits) -> np.ndarray:
    max_triangles = limits.max_triangles
    if b"endfacet" not in data and b"ENDFACET" in data:
        data = data.lower()
    first_line_end = data.find(b"\n")
    start = data.find(b"facet", first_line_end + 1 if first_line_end >= 0 else 0)
    end = data.rfind(b"endfacet")
    if start < 0 or end < 0:
        raise ModelFormatError("no_triangles", "The ASCII STL file contains no facets.")
    body = data[start:end + len(b"endfacet")]
    facets = body.count(b"endfacet")
    check_count(facets, max_triangles)
    if body.count(b"vertex") != 3 * facets or body.count(b"endloop") != facets:
        raise ModelFormatError("malformed_model",
                               "The ASCII STL file is malformed: every facet needs exactly 3 vertex lines.")
    if b"solid" in body:
        body = _SOLID_JOIN.sub(b" ", body)
    body = (body.translate(_STL_BLANK) + b" ").replace(b" e ", b"   ")
    values = numbers(body, "ASCII STL facets")
    if values.size == 12 * facets:
        return values.reshape(facets, 12)[:, 3:].reshape(facets, 3, 3)
    if values.size == 9 * facets:  # "facet" lines without a normal
        return values.reshape(facets, 3, 3)
    raise ModelFormatError("malformed_model",
                           f"The ASCII STL file is malformed: {values.size:,} numbers for {facets:,} facets.")


# --- OBJ -----------------------------------------------------------------------------------------

_OBJ_KIND = re.compile(rb"(?m)^[ \t]*([vf])[ \t]")
_OBJ_V = re.compile(rb"(?m)^[ \t]*v[ \t]+([^\n]*)")
_OBJ_F = re.compile(rb"(?m)^[ \t]*f[ \t]+([^\n]*)")
_OBJ_SLASH = re.compile(rb"/[^\s]*")
_OBJ_COMMENT = re.compile(rb"#[^\n]*")


def _tokens_per_line(joined: bytes, lines: int) -> np.ndarray:
    """Number of whitespace-separated tokens on each of the `lines` newline-joined lines."""
    if lines == 0:
        return np.zeros(0, dtype=np.int64)
    buf = np.frombuffer(joined, dtype=np.uint8)
    space = (buf == 32) | (buf == 9) | (buf == 10) | (buf == 11) | (buf == 12) | (buf == 13)
    starts = np.flatnonzero(~space & np.concatenate(([True], space[:-1])))
    newlines = np.flatnonzero(buf == 10)
    return np.bincount(np.searchsorted(newlines, starts), minlength=lines)


def _obj_line_number(data: bytes, pattern: re.Pattern[bytes], index: int) -> int:
    """1-based line number of the `index`-th match of `pattern` (error path only)."""
    for k, match in enumerate(pattern.finditer(data)):
        if k == index:
            return data.count(b"\n", 0, match.start()) + 1
    return 0


def _parse_obj(data: bytes, limits: ModelLimits) -> np.ndarray:
    max_triangles = limits.max_triangles
    text = data
    if b"\r" in text:
        text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if b"\\\n" in text:
        text = text.replace(b"\\\n", b" ")
    if b"#" in text:
        text = _OBJ_COMMENT.sub(b"", text)
    # Counted first (one byte per line, single-byte objects are shared), so an over-limit file is refused
    # before its lines are split out and converted.
    kinds = np.frombuffer(b"".join(_OBJ_KIND.findall(text)), dtype=np.uint8)
    vertex_count = int(np.count_nonzero(kinds == ord("v")))
    if not vertex_count:
        raise ModelFormatError("malformed_model", "The OBJ file has no vertex ('v') lines.")
    if vertex_count > limits.vertex_limit:
        raise ModelFormatError("too_many_vertices",
                               f"The OBJ file defines {vertex_count:,} vertices; the limit is {limits.vertex_limit:,}. "
                               "Reduce the mesh resolution (decimate) and upload it again.")
    if vertex_count == kinds.size:
        raise ModelFormatError("no_triangles", "The OBJ file has vertices but no faces ('f' lines).")
    v_lines = _OBJ_V.findall(text)
    f_lines = _OBJ_F.findall(text)

    v_text = b"\n".join(v_lines)
    v_counts = _tokens_per_line(v_text, len(v_lines))
    short = np.flatnonzero(v_counts < 3)
    if short.size:
        line = _obj_line_number(text, _OBJ_V, int(short[0]))
        raise ModelFormatError("malformed_model", f"OBJ line {line}: a vertex needs x, y and z coordinates.")
    v_numbers = numbers(v_text, "OBJ vertex lines", int(v_counts.sum()))
    v_start = np.cumsum(v_counts) - v_counts
    vertices = v_numbers[v_start[:, None] + np.arange(3)]

    f_text = b"\n".join(f_lines)
    if b"/" in f_text:
        f_text = _OBJ_SLASH.sub(b"", f_text)
    f_counts = _tokens_per_line(f_text, len(f_lines))
    small = np.flatnonzero(f_counts < 3)
    if small.size:
        line = _obj_line_number(text, _OBJ_F, int(small[0]))
        raise ModelFormatError("malformed_model", f"OBJ line {line}: a face needs at least 3 vertices.")
    check_count(int((f_counts - 2).sum()), max_triangles)
    refs = numbers(f_text, "OBJ face lines", int(f_counts.sum()), np.int64)

    # Negative indices count back from the vertices defined before the face's own line.
    is_v = kinds == ord("v")
    defined = (np.cumsum(is_v) - is_v)[~is_v]
    face_of_ref = np.repeat(np.arange(len(f_lines)), f_counts)
    base = defined[face_of_ref]
    index = np.where(refs < 0, base + refs, refs - 1)
    bad = np.flatnonzero((refs == 0) | (index < 0) | (index >= len(vertices)))
    if bad.size:
        face = int(face_of_ref[bad[0]])
        line = _obj_line_number(text, _OBJ_F, face)
        raise ModelFormatError(
            "malformed_model",
            f"OBJ line {line}: face refers to vertex {int(refs[bad[0]])} but the file defines "
            f"{int(defined[face]) if refs[bad[0]] < 0 else len(vertices):,} vertices.",
        )
    # Fan triangulation: polygon (p0, p1, ..., pk-1) -> (p0, pi, pi+1) for i in 1..k-2.
    fans = f_counts - 2
    first = np.cumsum(f_counts) - f_counts
    tri_face = np.repeat(np.arange(len(f_lines)), fans)
    step = np.arange(int(fans.sum())) - np.repeat(np.cumsum(fans) - fans, fans) + 1
    corners = np.column_stack([first[tri_face], first[tri_face] + step, first[tri_face] + step + 1])
    return vertices[index[corners]]


# --- checks and entry point ----------------------------------------------------------------------

def _has_area(tri: np.ndarray) -> bool:
    part = tri.astype(np.float64)
    return bool(np.cross(part[:, 1] - part[:, 0], part[:, 2] - part[:, 0]).any())


def _all_degenerate(tri: np.ndarray) -> bool:
    """True when every triangle has zero area (a small sample almost always settles it)."""
    if _has_area(tri[:_DEGENERATE_SAMPLE]):
        return False
    chunk = 1 << 18
    return not any(_has_area(tri[lo:lo + chunk]) for lo in range(_DEGENERATE_SAMPLE, len(tri), chunk))


def _validate(tri: np.ndarray, max_triangles: int) -> np.ndarray:
    if tri.ndim != 3 or tri.shape[1:] != (3, 3):
        raise ModelFormatError("malformed_model", "The model's triangles could not be read.")
    if len(tri) == 0:
        raise ModelFormatError("no_triangles", "The model contains no triangles.")
    check_count(len(tri), max_triangles)
    if not np.isfinite(tri).all():
        raise ModelFormatError("malformed_model",
                               "The model contains invalid coordinates (NaN or infinity); export it again.")
    if _all_degenerate(tri):
        raise ModelFormatError("degenerate_mesh",
                               "Every triangle in the model has zero area, so it has no surface or volume.")
    tri.flags.writeable = False
    return tri


_PARSERS = {
    "stl_binary": _parse_stl_binary,
    "stl_ascii": _parse_stl_ascii,
    "obj": _parse_obj,
    "3mf": parse_3mf,
}


def parse_model(data: bytes, filename: str | None = None, limits: ModelLimits | None = None) -> ParsedModel:
    """Detect, parse and sanity-check a model; raises ModelFormatError with a precise reason."""
    limits = limits or ModelLimits()
    max_bytes, max_triangles = limits.max_bytes, limits.max_triangles
    if len(data) > max_bytes:
        raise ModelFormatError("file_too_large",
                               f"The file is {len(data):,} bytes; the limit is {max_bytes:,} bytes.")
    data = bytes(data)  # no copy for bytes; bytearray and memoryview become immutable
    fmt = detect_format(data, filename)
    triangles = _PARSERS[fmt](data, limits)
    return ParsedModel(format=fmt, triangles=_validate(triangles, max_triangles))

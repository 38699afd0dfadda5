"""Parse uploaded 3D model files (binary/ASCII STL, OBJ, 3MF) into a triangle array in millimetres.

Every failure is a :class:`ModelFormatError` with a machine-readable ``code`` and a sentence the
customer can act on. Sizes and counts are checked before anything proportional to them is allocated.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.parsers import expat

import numpy as np

from alexandrite.models3d.limits import ModelLimits

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


class ModelFormatError(ValueError):
    """A model file that cannot be used; ``code`` is machine-readable, ``message`` is for the customer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ModelFormatError({self.code!r}, {self.message!r})"


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

def _parse_stl_binary(data: bytes, max_triangles: int, max_bytes: int) -> np.ndarray:
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
    _check_count(claimed, max_triangles)
    records = np.frombuffer(data, dtype=_STL_RECORD, count=claimed, offset=_STL_HEADER)
    return np.ascontiguousarray(records["vertices"])


# Keywords vanish by turning every letter but e/E into a space; the lone "e"s left over from
# "facet", "outer", "vertex", "endloop" and "endfacet" are then blanked, keeping exponents intact.
_STL_LETTERS = bytes(c for c in range(256) if chr(c).isascii() and chr(c).isalpha() and c not in b"eE")
_STL_BLANK = bytes.maketrans(_STL_LETTERS + b"\t\r\n\f\v", b" " * (len(_STL_LETTERS) + 5))
_NUMBER_BYTES = b"0123456789+-.eE \t\r\n\f\v"
_INT_BYTES = b"0123456789+- \t\r\n\f\v"
_SOLID_JOIN = re.compile(rb"endsolid[^\n]*\n\s*solid[^\n]*")


def _numbers(text: bytes, what: str, count: int | None = None, dtype: type = np.float64) -> np.ndarray:
    """Whitespace-separated numbers parsed in bulk (``count`` of them when given), else malformed_model."""
    allowed = _INT_BYTES if dtype is np.int64 else _NUMBER_BYTES
    if text.translate(None, allowed):
        raise ModelFormatError("malformed_model", f"The {what} contain text that is not a number.")
    values: np.ndarray | None
    try:
        values = np.fromstring(text, dtype=dtype, sep=" ")
    except ValueError:  # numpy >= 2.x may raise instead of warning on unparsable data
        values = None
    if values is None or (count is not None and values.size != count):
        raise ModelFormatError("malformed_model", f"The {what} contain a malformed number.")
    return values


def _parse_stl_ascii(data: bytes, max_triangles: int, max_bytes: int) -> np.ndarray:
    if b"endfacet" not in data and b"ENDFACET" in data:
        data = data.lower()
    first_line_end = data.find(b"\n")
    start = data.find(b"facet", first_line_end + 1 if first_line_end >= 0 else 0)
    end = data.rfind(b"endfacet")
    if start < 0 or end < 0:
        raise ModelFormatError("no_triangles", "The ASCII STL file contains no facets.")
    body = data[start:end + len(b"endfacet")]
    facets = body.count(b"endfacet")
    _check_count(facets, max_triangles)
    if body.count(b"vertex") != 3 * facets or body.count(b"endloop") != facets:
        raise ModelFormatError("malformed_model",
                               "The ASCII STL file is malformed: every facet needs exactly 3 vertex lines.")
    if b"solid" in body:
        body = _SOLID_JOIN.sub(b" ", body)
    body = (body.translate(_STL_BLANK) + b" ").replace(b" e ", b"   ")
    values = _numbers(body, "ASCII STL facets")
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


def _parse_obj(data: bytes, max_triangles: int, max_bytes: int) -> np.ndarray:
    text = data
    if b"\r" in text:
        text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if b"\\\n" in text:
        text = text.replace(b"\\\n", b" ")
    if b"#" in text:
        text = _OBJ_COMMENT.sub(b"", text)
    kinds = np.frombuffer(b"".join(_OBJ_KIND.findall(text)), dtype=np.uint8)
    v_lines = _OBJ_V.findall(text)
    f_lines = _OBJ_F.findall(text)
    if not v_lines:
        raise ModelFormatError("malformed_model", "The OBJ file has no vertex ('v') lines.")
    if not f_lines:
        raise ModelFormatError("no_triangles", "The OBJ file has vertices but no faces ('f' lines).")

    v_text = b"\n".join(v_lines)
    v_counts = _tokens_per_line(v_text, len(v_lines))
    short = np.flatnonzero(v_counts < 3)
    if short.size:
        line = _obj_line_number(text, _OBJ_V, int(short[0]))
        raise ModelFormatError("malformed_model", f"OBJ line {line}: a vertex needs x, y and z coordinates.")
    v_numbers = _numbers(v_text, "OBJ vertex lines", int(v_counts.sum()))
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
    _check_count(int((f_counts - 2).sum()), max_triangles)
    refs = _numbers(f_text, "OBJ face lines", int(f_counts.sum()), np.int64)

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


# --- 3MF -----------------------------------------------------------------------------------------

_3MF_CORE = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02 "
_3MF_MODEL_REL = "http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"
_3MF_DEFAULT_MODEL = "3D/3dmodel.model"
_3MF_UNITS_MM = {"micron": 0.001, "millimeter": 1.0, "centimeter": 10.0, "inch": 25.4, "foot": 304.8,
                 "meter": 1000.0}
_MAX_ZIP_ENTRIES = 10_000
_MAX_RELS_BYTES = 1 << 20
_MAX_NESTING = 16
_MAX_INSTANCES = 100_000
_CHUNK = 1 << 20
_IDENTITY = np.eye(4)
# RuntimeError: an encrypted entry; NotImplementedError: an unsupported compression method.
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError)


def _open_zip(data: bytes) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as error:
        raise ModelFormatError("malformed_model", "The 3MF file is not a readable zip archive.") from error
    if len(infos) > _MAX_ZIP_ENTRIES:
        raise ModelFormatError("unsafe_archive", f"The 3MF archive has {len(infos):,} entries; that is not a model.")
    for info in infos:
        name = info.filename.replace("\\", "/")
        if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in name.split("/"):
            raise ModelFormatError("unsafe_archive",
                                   f"The 3MF archive contains an unsafe path '{info.filename}'; export it again.")
    return archive


def _entry(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo | None:
    name = name.lstrip("/")
    try:
        return archive.getinfo(name)
    except KeyError:
        folded = name.lower()
        return next((i for i in archive.infolist() if i.filename.lower() == folded), None)


def _refuse_dtd(*_: object) -> int:  # expat handler signature; it never returns
    raise ModelFormatError("unsafe_archive", "The 3MF file declares a DTD or entities, which are not allowed.")


def _parse_xml(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, what: str,
               start: Callable[[str, dict[str, str]], None]) -> None:
    """Stream one zip entry through expat: declared and actual size capped, DTDs and entities refused."""
    if info.file_size > cap:
        raise ModelFormatError(
            "archive_too_large",
            f"The 3MF part '{info.filename}' unpacks to {info.file_size:,} bytes; the limit is {cap:,} bytes.",
        )
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_dtd
    parser.buffer_text = True
    parser.StartElementHandler = start
    total = 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                total += len(chunk)
                if total > cap:
                    raise ModelFormatError("archive_too_large",
                                           f"The 3MF part '{info.filename}' unpacks to more than {cap:,} bytes.")
                parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except ModelFormatError:
        raise
    except expat.ExpatError as error:
        raise ModelFormatError("malformed_model",
                               f"The 3MF {what} is not valid XML ({expat.errors.messages[error.code]}, "
                               f"line {error.lineno}).") from error
    except _ZIP_READ_ERRORS as error:
        raise ModelFormatError("malformed_model",
                               f"The 3MF {what} is damaged or encrypted inside the archive.") from error


def _model_path(archive: zipfile.ZipFile) -> str:
    rels = _entry(archive, "_rels/.rels")
    targets: list[str] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        if name.endswith("Relationship") and attrs.get("Type") == _3MF_MODEL_REL and attrs.get("Target"):
            targets.append(attrs["Target"])

    if rels is not None:
        _parse_xml(archive, rels, _MAX_RELS_BYTES, "relationships", start)
    return targets[0].lstrip("/") if targets else _3MF_DEFAULT_MODEL


def _transform(text: str | None) -> np.ndarray:
    """A 3MF 'm00 m01 m02 m10 ... m32' transform as a 4x4 row-vector matrix."""
    if not text:
        return _IDENTITY
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        values = []
    if len(values) != 12 or not all(np.isfinite(values)):
        raise ModelFormatError("malformed_model", f"The 3MF file has an invalid transform '{text[:80]}'.")
    matrix = np.eye(4)
    matrix[:, :3] = np.reshape(values, (4, 3))
    return matrix


_VERTEX, _TRIANGLE = _3MF_CORE + "vertex", _3MF_CORE + "triangle"


@dataclass
class _Model3MF:
    """What one pass over the model XML collects (expat start-element callbacks only)."""

    unit: str = "millimeter"
    meshes: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    components: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)
    items: list[tuple[str, np.ndarray]] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)
    object_id: str | None = None
    vertices: list[tuple[str | None, ...]] = field(default_factory=list)
    triangles: list[tuple[str | None, ...]] = field(default_factory=list)

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if name == _VERTEX or name == "vertex":
            self.vertices.append((attrs.get("x"), attrs.get("y"), attrs.get("z")))
        elif name == _TRIANGLE or name == "triangle":
            self.triangles.append((attrs.get("v1"), attrs.get("v2"), attrs.get("v3")))
        else:
            self._structure(name[len(_3MF_CORE):] if name.startswith(_3MF_CORE) else name, attrs)

    def _structure(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "object":
            self.finish()
            self.object_id = attrs.get("id", "")
            if attrs.get("type") in ("support", "solidsupport"):
                self.skipped.add(self.object_id)
        elif tag == "mesh" and self.object_id is not None:
            self.meshes[self.object_id] = (np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
        elif tag == "component" and self.object_id is not None:
            entry = (attrs.get("objectid", ""), _transform(attrs.get("transform")))
            self.components.setdefault(self.object_id, []).append(entry)
        elif tag == "item":
            self.finish()
            self.items.append((attrs.get("objectid", ""), _transform(attrs.get("transform"))))
        elif tag == "model":
            self.unit = attrs.get("unit", "millimeter")

    def finish(self) -> None:
        """Turn the current object's vertex and triangle lists into arrays."""
        if self.object_id is not None and self.object_id in self.meshes and (self.vertices or self.triangles):
            self.meshes[self.object_id] = _mesh_arrays(self.object_id, self.vertices, self.triangles)
        self.vertices, self.triangles = [], []


def _mesh_arrays(obj: str, vertices: list[tuple[str | None, ...]],
                 triangles: list[tuple[str | None, ...]]) -> tuple[np.ndarray, np.ndarray]:
    try:
        verts = np.array(vertices, dtype=np.float64).reshape(-1, 3)
        faces = np.array(triangles, dtype=np.int64).reshape(-1, 3)
    except (TypeError, ValueError, OverflowError) as error:
        raise ModelFormatError("malformed_model",
                               f"3MF object {obj} has a vertex or triangle with a missing or invalid value.") from error
    if faces.size and (faces.min() < 0 or faces.max() >= len(verts)):
        raise ModelFormatError("malformed_model",
                               f"3MF object {obj} has a triangle referring to a vertex it does not define.")
    return verts, faces


def _instances(model: _Model3MF, obj: str, matrix: np.ndarray, depth: int,
               out: list[tuple[str, np.ndarray]]) -> None:
    if depth > _MAX_NESTING:
        raise ModelFormatError("malformed_model", "The 3MF components are nested too deeply (or form a cycle).")
    if len(out) >= _MAX_INSTANCES:
        raise ModelFormatError("too_many_triangles", "The 3MF file places too many copies of its objects.")
    if obj in model.meshes:
        out.append((obj, matrix))
    elif obj in model.components:
        for child, child_matrix in model.components[obj]:
            _instances(model, child, child_matrix @ matrix, depth + 1, out)
    else:
        raise ModelFormatError("malformed_model", f"The 3MF build refers to object '{obj}', which is not defined.")


def _parse_3mf(data: bytes, max_triangles: int, max_bytes: int) -> np.ndarray:
    model = _Model3MF()
    with _open_zip(data) as archive:
        path = _model_path(archive)
        info = _entry(archive, path)
        if info is None:
            raise ModelFormatError("malformed_model", f"The 3MF archive has no model part '{path}'.")
        _parse_xml(archive, info, max_bytes, "model", model.start)
    model.finish()
    scale = _3MF_UNITS_MM.get(model.unit)
    if scale is None:
        raise ModelFormatError("malformed_model", f"The 3MF file uses an unknown unit '{model.unit}'.")
    items = model.items or [(obj, _IDENTITY) for obj in model.meshes]
    placed: list[tuple[str, np.ndarray]] = []
    for obj, matrix in items:
        if obj not in model.skipped:
            _instances(model, obj, matrix, 0, placed)
    _check_count(sum(len(model.meshes[obj][1]) for obj, _ in placed), max_triangles)
    parts = [verts[faces] @ matrix[:3, :3] + matrix[3, :3]
             for verts, faces, matrix in ((*model.meshes[obj], matrix) for obj, matrix in placed)]
    if not parts:
        return np.zeros((0, 3, 3))
    triangles = np.concatenate(parts)
    return triangles * scale if scale != 1.0 else triangles


# --- checks and entry point ----------------------------------------------------------------------

def _check_count(count: int, max_triangles: int) -> None:
    if count > max_triangles:
        raise ModelFormatError(
            "too_many_triangles",
            f"The model has {count:,} triangles; the limit is {max_triangles:,}. "
            "Reduce the mesh resolution (decimate) and upload it again.",
        )


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
    _check_count(len(tri), max_triangles)
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
    "3mf": _parse_3mf,
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
    triangles = _PARSERS[fmt](data, max_triangles, max_bytes)
    return ParsedModel(format=fmt, triangles=_validate(triangles, max_triangles))

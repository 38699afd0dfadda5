"""3MF packages: the core specification and the production extension, streamed into NumPy arrays.

What is read:
- the package: ``_rels/.rels`` names the root model part (default ``3D/3dmodel.model``); the root part's
  own relationships (``3D/_rels/3dmodel.model.rels``) name the other model parts;
- model parts (core 1.x): ``unit``, objects with a mesh or with components, build items, transforms;
- the production extension: ``p:path`` on build items (Bambu Studio 1.x) and on components (Bambu Studio
  2.x, OrcaSlicer, PrusaSlicer) pointing at objects kept in other model parts (``3D/Objects/*.model``);
  ``p:UUID`` attributes are accepted and not needed;
- ``requiredextensions``: content of an extension we cannot read (beam lattice, slices, volumetric,
  boolean, displacement, secure content...) that the file *requires* is refused with its name; optional
  content of any extension, and metadata (thumbnails, slicer settings), is ignored.

Invariants: each part is read once, by expat, in chunks; vertices and triangle indices go into NumPy
arrays a chunk at a time, counted as they arrive and refused past :class:`ModelLimits` before memory
proportional to them is taken; DTDs and entities are refused; everything the archive unpacks is capped
at ``max_bytes``. Coordinates come out in millimetres (each part's ``unit``), transforms compose
child-first through component chains across parts (row vectors: ``world = v · M_child · M_parent``).
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.parsers import expat

import numpy as np

from alexandrite.models3d.errors import ModelFormatError, check_count, numbers
from alexandrite.models3d.limits import ModelLimits

__all__ = ["CORE_NS", "PRODUCTION_NS", "parse_3mf"]

CORE_NS = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"
PRODUCTION_NS = "http://schemas.microsoft.com/3dmanufacturing/production/2015/06"
MATERIAL_NS = "http://schemas.microsoft.com/3dmanufacturing/material/2015/02"
TRIANGLE_SETS_NS = "http://schemas.microsoft.com/3dmanufacturing/trianglesets/2021/07"
# Extensions whose required content we read (materials and triangle sets only colour or group triangles).
SUPPORTED_NAMESPACES = frozenset({CORE_NS, PRODUCTION_NS, MATERIAL_NS, TRIANGLE_SETS_NS})
EXTENSION_NAMES = {
    "http://schemas.microsoft.com/3dmanufacturing/beamlattice/2017/02": "beam lattice",
    "http://schemas.microsoft.com/3dmanufacturing/beamlattice/balls/2020/07": "beam lattice balls",
    "http://schemas.microsoft.com/3dmanufacturing/slice/2015/07": "slice",
    "http://schemas.3mf.io/3dmanufacturing/volumetric/2022/01": "volumetric",
    "http://schemas.3mf.io/3dmanufacturing/implicit/2023/12": "implicit",
    "http://schemas.3mf.io/3dmanufacturing/booleanoperations/2023/07": "boolean operations",
    "http://schemas.3mf.io/3dmanufacturing/displacement/2023/10": "displacement",
    "http://schemas.microsoft.com/3dmanufacturing/securecontent/2019/04": "secure content (encryption)",
}
MODEL_REL = "http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"
DEFAULT_ROOT = "3D/3dmodel.model"
UNITS_MM = {"micron": 0.001, "millimeter": 1.0, "centimeter": 10.0, "inch": 25.4, "foot": 304.8,
            "meter": 1000.0}
SKIPPED_TYPES = frozenset({"support", "solidsupport", "other"})

_MAX_ZIP_ENTRIES = 10_000
_MAX_RELS_BYTES = 1 << 20
_MAX_PARTS = 1_000
_MAX_NESTING = 16
_MAX_INSTANCES = 100_000
_READ_CHUNK = 1 << 18  # XML read and parsed at a time (about 8,000 vertices)
_FLUSH = 1 << 16  # vertices or triangles converted to NumPy at a time
_IDENTITY = np.eye(4)
# RuntimeError: an encrypted entry; NotImplementedError: an unsupported compression method.
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError)

_VERTEX, _TRIANGLE = f"{CORE_NS} vertex", f"{CORE_NS} triangle"
_P_PATH = f"{PRODUCTION_NS} path"

ObjectKey = tuple[str, str]  # (model part, object id)


# --- the package ---------------------------------------------------------------------------------

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


def _part_name(target: str, base: str = "") -> str:
    """A part name without the leading slash; relative targets resolve against the ``base`` part's folder."""
    target = target.replace("\\", "/")
    if not target.startswith("/"):
        target = posixpath.join("/" + posixpath.dirname(base), target)
    return posixpath.normpath(target).lstrip("/")


def _refuse_dtd(*_: object) -> int:  # expat handler signature; it never returns
    raise ModelFormatError("unsafe_archive", "The 3MF file declares a DTD or entities, which are not allowed.")


@dataclass
class _Budget:
    """What the whole package may still unpack, and the vertices and triangles it may still define."""

    bytes_left: int
    vertices_left: int
    triangles_left: int
    max_triangles: int
    max_vertices: int


class _Package:
    def __init__(self, data: bytes, limits: ModelLimits) -> None:
        self.archive = _open_zip(data)
        self.names = {info.filename.lower(): info for info in self.archive.infolist()}
        self.budget = _Budget(limits.max_bytes, limits.vertex_limit, limits.max_triangles,
                              limits.max_triangles, limits.vertex_limit)

    def entry(self, name: str) -> zipfile.ZipInfo | None:
        return self.names.get(name.lower())

    def parse(self, info: zipfile.ZipInfo, what: str, cap: int, start: Callable[[str, list[str]], None],
              after_chunk: Callable[[], None] | None = None,
              namespace: Callable[[str | None, str], None] | None = None) -> None:
        """Stream one entry through expat: declared and actual size capped, DTDs and entities refused."""
        cap = min(cap, self.budget.bytes_left)
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
        parser.ordered_attributes = True
        parser.StartElementHandler = start
        if namespace is not None:
            parser.StartNamespaceDeclHandler = namespace
        total = 0
        try:
            with self.archive.open(info) as stream:
                while chunk := stream.read(_READ_CHUNK):
                    total += len(chunk)
                    if total > cap:
                        raise ModelFormatError("archive_too_large",
                                               f"The 3MF part '{info.filename}' unpacks to more than {cap:,} bytes.")
                    parser.Parse(chunk, False)
                    if after_chunk is not None:
                        after_chunk()
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
        self.budget.bytes_left -= total

    def relationships(self, name: str) -> list[tuple[str, str]]:
        """(type, target) of every relationship in the ``.rels`` part ``name`` (none when it is missing)."""
        info = self.entry(name)
        found: list[tuple[str, str]] = []
        if info is None:
            return found

        def start(tag: str, attrs: list[str]) -> None:
            if tag.endswith("Relationship"):
                values = dict(zip(attrs[::2], attrs[1::2], strict=True))
                if values.get("Target"):
                    found.append((values.get("Type", ""), values["Target"]))

        self.parse(info, "relationships", _MAX_RELS_BYTES, start)
        return found

    def root_part(self) -> str:
        for kind, target in self.relationships("_rels/.rels"):
            if kind == MODEL_REL:
                return _part_name(target)
        return DEFAULT_ROOT


# --- one model part ------------------------------------------------------------------------------

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


@dataclass
class _Object:
    kind: str = ""  # "mesh" | "components" | "" (neither, or an extension's content)
    type: str = "model"
    vertices: np.ndarray | None = None  # (v, 3) float64 in mm
    triangles: np.ndarray | None = None  # (t, 3) int32/int64 indices
    components: list[tuple[ObjectKey, np.ndarray]] = field(default_factory=list)


class _Numbers:
    """Attribute strings collected and converted to NumPy a chunk at a time (never a list per vertex)."""

    def __init__(self, what: str, dtype: type, owner: Callable[[], str]) -> None:
        self.what, self.dtype, self.owner = what, dtype, owner
        self.pending: list[str] = []
        self.chunks: list[np.ndarray] = []

    def add(self, found: list[list[str]], names: tuple[str, str, str]) -> None:
        """Append three attribute values per element, in ``names`` order (any attribute order accepted)."""
        a, b, c = names
        if all(len(x) >= 6 and x[0] == a and x[2] == b and x[4] == c for x in found):  # the usual order
            self.pending += [v for x in found for v in (x[1], x[3], x[5])]
        else:
            for x in found:
                values = dict(zip(x[::2], x[1::2], strict=True))
                got = (values.get(a), values.get(b), values.get(c))
                if None in got:
                    raise ModelFormatError("malformed_model", f"3MF object {self.owner()} has a {self.what} with a "
                                                              "missing or invalid value; export it again.")
                self.pending += got  # type: ignore[arg-type]
        if len(self.pending) >= 3 * _FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            text = " ".join(self.pending).encode("ascii", "replace")
            try:
                self.chunks.append(numbers(text, self.what, len(self.pending), self.dtype))
            except ModelFormatError as error:
                raise ModelFormatError(
                    "malformed_model", f"3MF object {self.owner()} has a {self.what} with a missing or invalid "
                    "value; export it again.") from error
            self.pending.clear()

    def take(self, width: int) -> np.ndarray:
        """All values as one (m, width) array; chunks are released as they are copied (peak ≈ 1× + a chunk)."""
        self.flush()
        values: np.ndarray = np.empty(sum(len(c) for c in self.chunks), dtype=self.dtype)
        at = 0
        self.chunks.reverse()
        while self.chunks:
            chunk = self.chunks.pop()
            values[at:at + len(chunk)] = chunk
            at += len(chunk)
        return values.reshape(-1, width)


class _ModelPart:
    """The expat handlers for one model part: objects, components, build items, unit, required extensions."""

    def __init__(self, name: str, budget: _Budget, root: bool) -> None:
        self.name, self.budget, self.root = name, budget, root
        self.unit = "millimeter"
        self.objects: dict[str, _Object] = {}
        self.items: list[tuple[ObjectKey, np.ndarray]] = []
        self.references: set[str] = set()
        self.prefixes: dict[str, str] = {}
        self.current: _Object | None = None
        self.current_id = ""
        self.in_mesh = False
        self.in_build = False
        self.vertices = _Numbers("vertex", np.float64, lambda: self.current_id)
        self.triangles = _Numbers("triangle", np.int64, lambda: self.current_id)
        self.vertex_count = 0
        self.triangle_count = 0
        self.vertex_attrs: list[list[str]] = []
        self.triangle_attrs: list[list[str]] = []

    # expat callbacks ------------------------------------------------------------------------------
    # Vertices and triangles only have their attribute lists appended (the cheapest Python handler
    # possible); :meth:`drain` turns them into numbers after each chunk of XML and before any other
    # element, so the order of objects is kept and the lists never hold more than a chunk's worth.
    def namespace(self, prefix: str | None, uri: str) -> None:
        self.prefixes[prefix or ""] = uri

    def start(self, tag: str, attrs: list[str]) -> None:
        if tag == _VERTEX:
            self.vertex_attrs.append(attrs)
        elif tag == _TRIANGLE:
            self.triangle_attrs.append(attrs)
        elif tag.startswith(CORE_NS):
            self.drain()
            self._structure(tag[len(CORE_NS) + 1:], dict(zip(attrs[::2], attrs[1::2], strict=True)))

    def drain(self) -> None:
        """Move the collected vertex and triangle attributes into the current mesh's numbers."""
        if self.vertex_attrs:
            found, self.vertex_attrs = self.vertex_attrs, []
            if self.in_mesh:
                self.vertex_count += len(found)
                if self.vertex_count > self.budget.vertices_left:
                    raise ModelFormatError(
                        "too_many_vertices",
                        f"The 3MF file defines more than {self.budget.max_vertices:,} vertices; "
                        "reduce the mesh resolution (decimate) and upload it again.")
                self.vertices.add(found, ("x", "y", "z"))
        if self.triangle_attrs:
            found, self.triangle_attrs = self.triangle_attrs, []
            if self.in_mesh:
                self.triangle_count += len(found)
                if self.triangle_count > self.budget.triangles_left:
                    defined = self.budget.max_triangles - self.budget.triangles_left + self.triangle_count
                    raise ModelFormatError(
                        "too_many_triangles",
                        f"The model has at least {defined:,} triangles; the limit is "
                        f"{self.budget.max_triangles:,}. Reduce the mesh resolution (decimate) and upload it again.")
                self.triangles.add(found, ("v1", "v2", "v3"))

    def finish(self) -> None:
        """The part has been read: the last mesh becomes arrays."""
        self.drain()
        if self.in_mesh:
            self._finish_mesh()

    # elements -------------------------------------------------------------------------------------
    def _key(self, attrs: dict[str, str], what: str) -> ObjectKey:
        path = attrs.get(_P_PATH)
        target = _part_name(path, self.name) if path else self.name
        if target != self.name:
            self.references.add(target)
        object_id = attrs.get("objectid")
        if not object_id:
            raise ModelFormatError("malformed_model", f"A 3MF {what} does not say which object it places.")
        return target, object_id

    def _structure(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "model":
            self.unit = attrs.get("unit", "millimeter")
            self._check_required(attrs.get("requiredextensions", ""))
        elif tag == "object":
            if self.in_mesh:
                self._finish_mesh()
            self.current_id = attrs.get("id", "")
            if not self.current_id:
                raise ModelFormatError("malformed_model", "A 3MF object has no id.")
            if self.current_id in self.objects:
                raise ModelFormatError("malformed_model",
                                       f"The 3MF part '{self.name}' defines object '{self.current_id}' twice.")
            self.current = _Object(type=attrs.get("type", "model"))
            self.objects[self.current_id] = self.current
        elif tag == "mesh" and self.current is not None:
            self.current.kind = "mesh"
            self.in_mesh = True
            self.vertex_count = self.triangle_count = 0
        elif tag == "component" and self.current is not None:
            self.current.kind = "components"
            self.current.components.append((self._key(attrs, "component"), _transform(attrs.get("transform"))))
        elif tag == "build":
            if self.in_mesh:
                self._finish_mesh()
            self.current = None
            self.in_build = True
        elif tag == "item" and self.in_build:
            self.items.append((self._key(attrs, "build item"), _transform(attrs.get("transform"))))

    def _check_required(self, required: str) -> None:
        missing = []
        for prefix in required.split():
            uri = self.prefixes.get(prefix, prefix)
            if uri not in SUPPORTED_NAMESPACES:
                missing.append(EXTENSION_NAMES.get(uri, f"'{uri}'"))
        if missing:
            raise ModelFormatError(
                "unsupported_extension",
                f"The 3MF file requires the {', '.join(missing)} extension{'s' if len(missing) > 1 else ''}, "
                "which we cannot read. Export the model as a plain mesh (STL, or 3MF without "
                f"{'them' if len(missing) > 1 else 'it'}) and upload it again.",
            )

    def _finish_mesh(self) -> None:
        assert self.current is not None
        self.in_mesh = False
        vertices = self.vertices.take(3)
        faces = self.triangles.take(3)
        if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
            raise ModelFormatError("malformed_model",
                                   f"3MF object {self.current_id} has a triangle referring to a vertex it does "
                                   "not define.")
        self.budget.vertices_left -= len(vertices)
        self.budget.triangles_left -= len(faces)
        self.current.vertices = vertices
        self.current.triangles = faces.astype(np.int32) if len(vertices) < 2**31 else faces

    def scale(self) -> float:
        scale = UNITS_MM.get(self.unit)
        if scale is None:
            raise ModelFormatError("malformed_model", f"The 3MF file uses an unknown unit '{self.unit}'.")
        return scale


# --- the build -----------------------------------------------------------------------------------

def _read_parts(package: _Package) -> tuple[_ModelPart, dict[str, _ModelPart]]:
    """The root part and every model part it reaches through p:path, each read once."""
    root_name = package.root_part()
    extra = {_part_name(target, root_name) for kind, target in
             package.relationships(posixpath.join(posixpath.dirname(root_name), "_rels",
                                                  posixpath.basename(root_name) + ".rels"))
             if kind == MODEL_REL}
    parts: dict[str, _ModelPart] = {}
    queue = [root_name]
    while queue:
        name = queue.pop(0)
        if name in parts:
            continue
        if len(parts) >= _MAX_PARTS:
            raise ModelFormatError("unsafe_archive", "The 3MF file refers to too many model parts.")
        info = package.entry(name)
        if info is None:
            if name == root_name:
                raise ModelFormatError("malformed_model", f"The 3MF archive has no model part '{name}'.")
            listed = " (its relationships list it)" if name in extra else ""
            raise ModelFormatError("malformed_model",
                                   f"The 3MF file refers to the model part '/{name}'{listed}, which the archive "
                                   "does not contain; export it again.")
        part = _ModelPart(name, package.budget, root=name == root_name)
        package.parse(info, "model" if part.root else f"model part '/{name}'", package.budget.bytes_left,
                      part.start, part.drain, part.namespace)
        part.finish()
        parts[name] = part
        queue.extend(sorted(part.references - parts.keys()))
    return parts[root_name], parts


def _place(parts: dict[str, _ModelPart], key: ObjectKey, matrix: np.ndarray, depth: int,
           out: list[tuple[_Object, np.ndarray]]) -> None:
    if depth > _MAX_NESTING:
        raise ModelFormatError("malformed_model", "The 3MF components are nested too deeply (or form a cycle).")
    if len(out) >= _MAX_INSTANCES:
        raise ModelFormatError("too_many_triangles", "The 3MF file places too many copies of its objects.")
    part = parts.get(key[0])
    obj = part.objects.get(key[1]) if part is not None else None
    if obj is None:
        where = "" if part is not None and part.root else f" in the model part '/{key[0]}'"
        raise ModelFormatError("malformed_model",
                               f"The 3MF build refers to object '{key[1]}'{where}, which is not defined.")
    if obj.type in SKIPPED_TYPES:
        return
    if obj.kind == "mesh":
        out.append((obj, matrix))
    for child, child_matrix in obj.components:
        _place(parts, child, child_matrix @ matrix, depth + 1, out)


def parse_3mf(data: bytes, limits: ModelLimits) -> np.ndarray:
    """Triangles (n, 3, 3) float64 in millimetres of every build item of a 3MF package."""
    package = _Package(data, limits)
    with package.archive:
        root, parts = _read_parts(package)
    for part in parts.values():  # coordinates and translations into millimetres, per part
        scale = part.scale()
        if scale != 1.0:
            for obj in part.objects.values():
                if obj.vertices is not None:
                    obj.vertices *= scale
                obj.components = [(key, _scaled(m, scale)) for key, m in obj.components]
            part.items = [(key, _scaled(m, scale)) for key, m in part.items]
    items = root.items or [((root.name, oid), _IDENTITY) for oid, obj in root.objects.items() if obj.kind == "mesh"]
    placed: list[tuple[_Object, np.ndarray]] = []
    for key, matrix in items:
        _place(parts, key, matrix, 0, placed)
    total = sum(len(obj.triangles) for obj, _ in placed if obj.triangles is not None)
    check_count(total, limits.max_triangles)
    out = np.empty((total, 3, 3))
    at = 0
    for obj, matrix in placed:
        assert obj.vertices is not None and obj.triangles is not None
        k = len(obj.triangles)
        if k:  # only the vertices the triangles use are placed: memory follows triangles, not vertices
            placed_part = out[at:at + k]
            np.take(obj.vertices, obj.triangles, axis=0, out=placed_part)
            if matrix is not _IDENTITY and not np.array_equal(matrix, _IDENTITY):
                placed_part[:] = placed_part @ matrix[:3, :3] + matrix[3, :3]
            at += k
    return out


def _scaled(matrix: np.ndarray, scale: float) -> np.ndarray:
    """A transform whose translation is taken from the part's unit into millimetres."""
    if matrix is _IDENTITY:
        return matrix
    out = matrix.copy()
    out[3, :3] *= scale
    return out

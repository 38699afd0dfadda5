"""Model file parsing: every format gives the same triangles, every bad input a precise error code."""

from __future__ import annotations

import io
import re
import struct
import time
import zipfile

import numpy as np
import pytest

from alexandrite.models3d.formats import ModelFormatError, ParsedModel, detect_format, parse_model
from alexandrite.models3d.geometry import analyse
from alexandrite.models3d.limits import ModelLimits
from alexandrite.models3d.rings import ring
from alexandrite.models3d.shapes import box
from alexandrite.models3d.writers import model_xml_3mf, to_3mf, to_ascii_stl, to_binary_stl, to_obj

CUBE_OBJ = b"v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 0 1\nv 1 0 1\nv 1 1 1\nv 0 1 1\n"
CUBE_QUADS = b"f 1 4 3 2\nf 5 6 7 8\nf 1 2 6 5\nf 2 3 7 6\nf 3 4 8 7\nf 4 1 5 8\n"


def code_of(data: bytes, filename: str | None, **limits: int) -> ModelFormatError:
    with pytest.raises(ModelFormatError) as caught:
        parse_model(data, filename, ModelLimits(**limits))
    assert caught.value.message and caught.value.message == str(caught.value)
    return caught.value


def package(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, body in entries.items():
            zf.writestr(zipfile.ZipInfo(name), body, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def model_3mf(body: str, unit: str = "millimeter") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><model unit="{unit}" '
            f'xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">{body}</model>').encode()


TET_OBJECT = ('<object id="7" type="model"><mesh><vertices><vertex x="0" y="0" z="0"/><vertex x="3" y="0" z="0"/>'
              '<vertex x="0" y="3" z="0"/><vertex x="0" y="0" z="3"/></vertices><triangles>'
              '<triangle v1="0" v2="2" v3="1"/><triangle v1="0" v2="1" v3="3"/><triangle v1="0" v2="3" v3="2"/>'
              '<triangle v1="1" v2="2" v3="3"/></triangles></mesh></object>')


# --- the same mesh in every format -------------------------------------------------------------------

def test_all_formats_give_identical_facts() -> None:
    tri = ring(segments=96, profile_segments=12).astype(np.float32).astype(np.float64)  # exact in every format
    files = {"ring.stl": to_binary_stl(tri), "ring_ascii.stl": to_ascii_stl(tri), "ring.obj": to_obj(tri),
             "ring.3mf": to_3mf(tri)}
    parsed = {name: parse_model(data, name) for name, data in files.items()}
    assert [p.format for p in parsed.values()] == ["stl_binary", "stl_ascii", "obj", "3mf"]
    facts = {name: analyse(p.triangles) for name, p in parsed.items()}
    reference = analyse(tri)
    assert all(f == reference for f in facts.values())
    assert reference.triangles == 2 * 96 * 15 and reference.watertight
    assert reference.volume_mm3 == pytest.approx(391.54, abs=0.01)
    assert np.array_equal(parsed["ring.stl"].triangles, tri)
    assert not parsed["ring.obj"].triangles.flags.writeable


def test_binary_stl_whose_header_starts_with_solid() -> None:
    data = to_binary_stl(box(10, 8, 3), header=b"solid but actually binary facet endsolid")
    parsed = parse_model(data, "cube.stl")
    assert parsed.format == "stl_binary" and parsed.triangles.dtype == np.float32
    assert analyse(parsed.triangles).volume_mm3 == 240.0
    assert detect_format(data, None) == "stl_binary"


def test_ascii_stl_variants() -> None:
    text = to_ascii_stl(box(10, 8, 3), name="facet 12 numbers 3.5")
    crlf = text.replace(b"\n", b"\r\n")
    assert analyse(parse_model(crlf, "a.stl").triangles).volume_mm3 == 240.0
    halves = text.split(b"endfacet\n", 6)
    two_solids = b"endfacet\n".join(halves[:6]) + b"endfacet\nendsolid a\nsolid b 42\n" + halves[6]
    assert parse_model(two_solids, "b.stl").triangles.shape == (12, 3, 3)
    no_normals = re.sub(rb"facet normal [^\n]*", b"facet", to_ascii_stl(box(1, 1, 1)))
    tri = parse_model(no_normals, "c.stl").triangles
    assert analyse(tri).volume_mm3 == 1.0
    shouting = to_ascii_stl(box(2, 2, 2) * 1e-5).upper()  # keywords and exponents in capitals
    assert b"E-" in shouting and detect_format(shouting, None) == "stl_ascii"
    assert analyse(parse_model(shouting, "LOUD.STL").triangles).volume_mm3 == pytest.approx(8e-15, rel=1e-12)


def test_obj_polygons_index_forms_and_relative_indices() -> None:
    quads = parse_model(b"# a cube of quads\r\n" + CUBE_OBJ.replace(b"\n", b"\r\n") + CUBE_QUADS, "cube.obj")
    facts = analyse(quads.triangles)
    assert (facts.triangles, facts.volume_mm3, facts.surface_mm2, facts.watertight) == (12, 1.0, 6.0, True)
    slashed = CUBE_OBJ + b"vt 0 0\nvn 0 0 1\n" + b"".join(
        b"f " + b" ".join(f"{i}/1/1".encode() if k % 2 else f"{i}//1".encode() for k, i in enumerate(face)) + b"\n"
        for face in ([1, 4, 3, 2], [5, 6, 7, 8], [1, 2, 6, 5], [2, 3, 7, 6], [3, 4, 8, 7], [4, 1, 5, 8]))
    assert analyse(parse_model(slashed, "s.obj").triangles) == facts
    # Relative indices count back from the vertices defined so far; extra numbers (w, colours) are ignored.
    relative = (b"v 0 0 0 1\nv 3 0 0 1\nv 0 3 0 0.5 0.5 0.5\nf -3 -1 -2\nv 0 0 3\n"
                b"f -4 -3 -1\nf -4 -1 -2\nf -3 -2 -1 # last face\n")
    tet = analyse(parse_model(relative, "t.obj").triangles)
    assert tet.volume_mm3 == pytest.approx(4.5) and tet.watertight
    hexagon = b"v 0 0 0\nv 2 0 0\nv 3 1 0\nv 2 2 0\nv 0 2 0\nv -1 1 0\nf 1 2 3 4 5 6\n"
    fan = parse_model(hexagon, "h.obj").triangles
    assert fan.shape == (4, 3, 3) and analyse(fan).surface_mm2 == pytest.approx(6.0)


def test_3mf_build_transform_units_components_and_rels() -> None:
    tri = box(10, 8, 3)
    moved = parse_model(to_3mf(tri, transform="2 0 0 0 2 0 0 0 2 100 0 0"), "m.3mf").triangles
    facts = analyse(moved)
    assert facts.volume_mm3 == pytest.approx(240.0 * 8) and facts.bbox_min == pytest.approx((90.0, -8.0, -3.0))
    in_cm = analyse(parse_model(to_3mf(tri, unit="centimeter"), "cm.3mf").triangles)
    assert in_cm.size_mm == pytest.approx((100.0, 80.0, 30.0)) and in_cm.volume_mm3 == pytest.approx(240_000.0)
    assembly = model_3mf(
        f'<resources>{TET_OBJECT}<object id="9"><components><component objectid="7"/>'
        '<component objectid="7" transform="1 0 0 0 1 0 0 0 1 10 0 0"/></components></object>'
        '<object id="11" type="support"><components><component objectid="7"/></components></object></resources>'
        '<build><item objectid="9" transform="1 0 0 0 1 0 0 0 1 0 0 5"/><item objectid="11"/></build>')
    rels = (b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
            b'relationships"><Relationship Target="/3D/parts.model" Id="r" '
            b'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/></Relationships>')
    parsed = parse_model(package({"_rels/.rels": rels, "3D/parts.model": assembly}), "a.3mf")
    two = analyse(parsed.triangles)
    assert two.triangles == 8 and two.volume_mm3 == pytest.approx(9.0) and two.watertight
    assert two.bbox_min == pytest.approx((0.0, 0.0, 5.0)) and two.bbox_max == pytest.approx((13.0, 3.0, 8.0))


def test_detection_ignores_case_and_missing_names() -> None:
    data = to_obj(box(1, 1, 1))
    assert detect_format(data, "RING.OBJ") == "obj"
    assert detect_format(data, None) == "obj"
    assert detect_format(to_3mf(box(1, 1, 1)), "dir.v2/ring") == "3mf"
    assert parse_model(to_ascii_stl(box(1, 1, 1))).format == "stl_ascii"


# --- errors -----------------------------------------------------------------------------------------

def test_empty_file() -> None:
    assert code_of(b"", "ring.stl").code == "empty_file"


def test_unsupported_format() -> None:
    assert code_of(b"PK\x03\x04not really", "model.docx").code == "unsupported_format"
    assert "'.docx'" in code_of(to_binary_stl(box(1, 1, 1)), "ring.docx").message
    assert code_of(b"just some text\n", None).code == "unsupported_format"


@pytest.mark.parametrize(("name", "data", "label"), [
    ("ring.obj", to_binary_stl(box(1, 1, 1)), "binary STL"),
    ("ring.stl", to_3mf(box(1, 1, 1)), "3MF"),
    ("ring.3mf", to_obj(box(1, 1, 1)), "OBJ"),
    ("ring.obj", to_ascii_stl(box(1, 1, 1)), "ASCII STL"),
])
def test_format_mismatch_names_both(name: str, data: bytes, label: str) -> None:
    error = code_of(data, name)
    assert error.code == "format_mismatch" and name[-4:] in error.message and label in error.message


def test_binary_stl_header_lying_about_the_count() -> None:
    data = b"\x00" * 80 + struct.pack("<I", 10_000_000) + b"\x00" * 100
    started = time.perf_counter()
    error = code_of(data, "liar.stl", max_triangles=50_000_000)
    assert time.perf_counter() - started < 0.5
    assert error.code == "malformed_model" and "10,000,000" in error.message and "hold 2" in error.message
    truncated = to_binary_stl(box(1, 1, 1))[:-20]
    assert "claims 12 triangles" in code_of(truncated, "t.stl").message
    assert code_of(b"\x00\x01hello this is not a model" * 10, "garbage.stl").code == "malformed_model"
    assert code_of(b"\x01\x02\x03", "tiny.stl").code == "malformed_model"


def test_too_many_triangles_is_detected_in_every_format() -> None:
    tri = ring(profile="flat", segments=32, profile_segments=4)  # 2 * 32 * 4 = 256 triangles
    for name, data in (("r.stl", to_binary_stl(tri)), ("a.stl", to_ascii_stl(tri)), ("r.obj", to_obj(tri)),
                       ("r.3mf", to_3mf(tri))):
        error = code_of(data, name, max_triangles=255)
        assert error.code == "too_many_triangles" and "256" in error.message and "255" in error.message
        assert len(parse_model(data, name, ModelLimits(max_triangles=256)).triangles) == 256


def test_file_too_large() -> None:
    assert code_of(to_binary_stl(box(1, 1, 1)), "b.stl", max_bytes=500).code == "file_too_large"


def test_no_triangles() -> None:
    assert code_of(b"solid x\nendsolid x\n", "x.stl").code == "no_triangles"
    assert code_of(b"\x00" * 84, "zero.stl").code == "no_triangles"
    assert code_of(b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", "nofaces.obj").code == "no_triangles"
    empty_mesh = model_3mf('<resources><object id="1"><mesh><vertices/><triangles/></mesh></object></resources>'
                           '<build><item objectid="1"/></build>')
    assert code_of(package({"3D/3dmodel.model": empty_mesh}), "e.3mf").code == "no_triangles"


def test_degenerate_mesh() -> None:
    assert code_of(b"v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "flat.obj").code == "degenerate_mesh"
    points = np.zeros((3000, 3, 3))
    points[:, :, 0] = np.arange(3)  # every triangle collinear along x
    assert code_of(to_binary_stl(points), "line.stl").code == "degenerate_mesh"
    points[-1, 2] = (0.0, 1.0, 0.0)  # one real triangle, past the first sample, makes it valid
    assert len(parse_model(to_binary_stl(points), "ok.stl", ModelLimits(max_triangles=10**6)).triangles) == 3000


@pytest.mark.parametrize(("name", "data"), [
    ("nan.stl", to_binary_stl(np.where(box(1, 1, 1) == 0.5, np.nan, box(1, 1, 1)))),
    ("inf.stl", to_ascii_stl(box(1, 1, 1)).replace(b"0.5", b"inf", 1)),
    ("nan.obj", b"v 0 0 0\nv 1 0 nan\nv 0 1 0\nf 1 2 3\n"),
    ("big.obj", b"v 0 0 0\nv 1 0 1e999\nv 0 1 0\nf 1 2 3\n"),
])
def test_non_finite_coordinates(name: str, data: bytes) -> None:
    assert code_of(data, name).code == "malformed_model"


@pytest.mark.parametrize(("data", "fragment"), [
    (CUBE_OBJ + b"f 1 2 3\nf 1 2 9\n", "line 10: face refers to vertex 9 but the file defines 8"),
    (CUBE_OBJ + b"\n\nf 1 2 1000000000000\n", "line 11: face refers to vertex 1000000000000"),
    (CUBE_OBJ + b"f 1 2 0\n", "line 9"),
    (b"v 0 0 0\nf -1 -2 -3\nv 1 1 1\nv 2 2 2\n", "line 2: face refers to vertex -2 but the file defines 1"),
    (CUBE_OBJ + b"f 1 2\n", "line 9: a face needs at least 3 vertices"),
    (b"v 0 0\n" + CUBE_OBJ + CUBE_QUADS, "line 1: a vertex needs x, y and z"),
    (CUBE_OBJ + b"f 1 2 3.5\n", "face lines contain text that is not a number"),
    (CUBE_OBJ + b"f 1 2 3-\n", "face lines contain a malformed number"),
    (b"v 0 0 zero\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "not a number"),
    (b"v 1.2.3 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "malformed number"),
])
def test_bad_obj_files_name_the_problem(data: bytes, fragment: str) -> None:
    error = code_of(data, "bad.obj")
    assert error.code == "malformed_model" and fragment in error.message


def test_bad_ascii_stl() -> None:
    text = to_ascii_stl(box(1, 1, 1))
    missing_vertex = text.replace(b"  vertex", b"  vortex", 1)
    assert "exactly 3 vertex" in code_of(missing_vertex, "m.stl").message
    assert code_of(text.replace(b"0.5", b"0.5.1", 1), "n.stl").code == "malformed_model"
    assert code_of(text.replace(b"outer loop", b"outer loop 7", 1), "x.stl").code == "malformed_model"


def test_3mf_zip_bomb_is_refused_from_its_declared_size() -> None:
    bomb = package({"3D/3dmodel.model": b" " * 5_000_000})
    assert len(bomb) < 20_000
    error = code_of(bomb, "bomb.3mf", max_bytes=1_000_000)
    assert error.code == "archive_too_large" and "5,000,000" in error.message


def test_3mf_with_a_forged_small_size_is_only_read_up_to_it() -> None:
    body = model_xml_3mf(box(1, 1, 1))
    data = bytearray(package({"3D/3dmodel.model": body}))
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(signature) + offset
        assert struct.unpack("<I", data[at:at + 4]) == (len(body),)
        data[at:at + 4] = struct.pack("<I", 100)
    assert code_of(bytes(data), "forged.3mf").code == "malformed_model"


@pytest.mark.parametrize("entry", ["../evil", "3D/../../evil", "/etc/passwd", "C:/windows/evil", "a\\..\\b"])
def test_3mf_unsafe_entry_names(entry: str) -> None:
    data = package({"3D/3dmodel.model": model_xml_3mf(box(1, 1, 1)), entry: b"x"})
    error = code_of(data, "evil.3mf")
    assert error.code == "unsafe_archive" and entry in error.message


def test_3mf_dtd_and_entities_are_refused() -> None:
    laughs = (b'<?xml version="1.0"?><!DOCTYPE model [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
              b'<model>&b;</model>')
    assert code_of(package({"3D/3dmodel.model": laughs}), "lol.3mf").code == "unsafe_archive"


@pytest.mark.parametrize(("model", "fragment"), [
    (model_3mf(TET_OBJECT.replace('v3="3"/></triangles>', 'v3="4"/></triangles>') +
               '<build><item objectid="7"/></build>'), "does not define"),
    (model_3mf(f"<resources>{TET_OBJECT}</resources><build><item objectid=\"8\"/></build>"), "'8'"),
    (model_3mf(f"<resources>{TET_OBJECT}</resources><build><item objectid=\"7\"/></build>", unit="furlong"),
     "unknown unit"),
    (model_3mf(f'<resources>{TET_OBJECT}</resources><build><item objectid="7" transform="1 2"/></build>'),
     "invalid transform"),
    (model_3mf('<resources><object id="1"><components><component objectid="1"/></components></object>'
               '</resources><build><item objectid="1"/></build>'), "nested too deeply"),
    (b"<model><resources>", "not valid XML"),
    (model_3mf(TET_OBJECT.replace('y="3"', 'y="three"')), "invalid value"),
])
def test_bad_3mf_models(model: bytes, fragment: str) -> None:
    error = code_of(package({"3D/3dmodel.model": model}), "bad.3mf")
    assert error.code == "malformed_model" and fragment in error.message


def test_3mf_without_a_model_part_or_not_a_zip() -> None:
    assert "no model part" in code_of(package({"readme.txt": b"hi"}), "m.3mf").message
    assert code_of(b"PK\x03\x04" + b"\x00" * 100, "broken.3mf").code == "malformed_model"


def test_parsed_model_is_a_frozen_value() -> None:
    parsed = parse_model(to_obj(box(1, 1, 1)), "c.obj")
    assert isinstance(parsed, ParsedModel) and parsed.triangles.shape == (12, 3, 3)
    with pytest.raises(AttributeError):
        parsed.format = "stl_binary"  # type: ignore[misc]


def test_an_obj_with_more_vertices_than_the_limit_is_refused_by_count_and_faces_are_required() -> None:
    from alexandrite.models3d.limits import ModelLimits

    vertices = b"".join(b"v %d 0 0\n" % i for i in range(1_001))
    with pytest.raises(ModelFormatError) as caught:
        parse_model(vertices + b"f 1 2 3\n", "m.obj", ModelLimits(max_vertices=1_000))
    assert caught.value.code == "too_many_vertices" and "1,001 vertices" in caught.value.message
    with pytest.raises(ModelFormatError) as caught:
        parse_model(b"# only points\nv 0 0 0\nv 1 0 0\nv 0 1 0\n", "m.obj")
    assert caught.value.code == "no_triangles"
    with pytest.raises(ModelFormatError) as caught:
        parse_model(b"f 1 2 3\n", "m.obj")
    assert caught.value.code == "malformed_model"

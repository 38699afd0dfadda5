"""3MF as slicers write it: the production extension's parts, checked against lib3mf, and the limits."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from alexandrite.models3d.formats import ModelFormatError, parse_model
from alexandrite.models3d.geometry import analyse
from alexandrite.models3d.limits import ModelLimits
from alexandrite.models3d.shapes import box
from tests.fixtures.corpus import CORE, brilliant, ring_with_volume, slicer_3mf, xml_bomb_3mf
from tests.fixtures.lib3mf_reference import read_3mf


def same_triangles(a: np.ndarray, b: np.ndarray, tol: float = 1e-5) -> bool:
    """The same triangles, in any order (lib3mf keeps coordinates in single precision)."""
    if a.shape != b.shape:
        return False
    key = lambda t: t.reshape(-1, 9)[np.lexsort(t.reshape(-1, 9).round(3).T[::-1])]  # noqa: E731
    return bool(np.abs(key(a) - key(b)).max() <= tol)


def rewrite(data: bytes, name: str, edit: object) -> bytes:
    """The package with one entry's text changed by ``edit(text) -> text`` (or removed when it returns None)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == name:
                text = edit(body.decode())  # type: ignore[operator]
                if text is None:
                    continue
                body = text.encode()
            dst.writestr(info.filename, body)
    return out.getvalue()


@pytest.mark.parametrize("flavour", ["bambu1", "bambu2", "orca"])
def test_slicer_packages_read_like_lib3mf(flavour: str) -> None:
    band = ring_with_volume()
    stone, stone_volume = brilliant(3.0)
    data = slicer_3mf([band.triangles, stone], flavour, [(0.0, 0.0, 0.0), (0.0, 0.0, 20.0)])
    ours = parse_model(data, "plate.3mf")
    assert ours.format == "3mf" and len(ours.triangles) == len(band.triangles) + len(stone)
    assert same_triangles(ours.triangles, read_3mf(data))
    facts = analyse(ours.triangles)
    assert facts.volume_mm3 == pytest.approx(band.volume_mm3 + stone_volume, rel=1e-9)
    assert facts.watertight
    # Bambu 2.x and Orca place the assembly on the plate (128, 128); 1.x places the parts themselves.
    expected_x = -band.inner_diameter_mm / 2 - 1.8 + (128.0 if flavour != "bambu1" else 0.0)
    assert facts.bbox_min[0] == pytest.approx(expected_x)
    assert facts.bbox_max[2] == pytest.approx(20.0 + 0.18 * 3.0)


def test_component_transforms_compose_across_parts() -> None:
    """A component chain root -> assembly -> part in another file: child transform first, then parent's."""
    cube = box(2, 2, 2, center=(1, 1, 1))
    data = slicer_3mf([cube], "bambu2", [(10.0, 0.0, 0.0)])
    # Rotate the assembly's item 90° about z, then move it: (x, y) -> (-y, x) + (0, 100).
    rotated = rewrite(data, "3D/3dmodel.model",
                      lambda t: t.replace('transform="1 0 0 0 1 0 0 0 1 128 128 0"', 'transform="0 1 0 -1 0 0 0 0 1 0 100 0"'))
    tri = parse_model(rotated, "r.3mf").triangles
    facts = analyse(tri)
    assert facts.bbox_min == pytest.approx((-2.0, 110.0, 0.0)) and facts.bbox_max == pytest.approx((0.0, 112.0, 2.0))
    assert same_triangles(tri, read_3mf(rotated))


def test_part_units_scale_coordinates_and_translations() -> None:
    cube = box(1, 1, 1, center=(0.5, 0.5, 0.5))
    data = slicer_3mf([cube], "bambu2", [(1.0, 0.0, 0.0)], unit="centimeter")
    data = rewrite(data, "3D/Objects/object_1.model", lambda t: t.replace('unit="millimeter"', 'unit="centimeter"'))
    facts = analyse(parse_model(data, "cm.3mf").triangles)
    # the assembly's item moves by (128, 128) cm, the component by 1 cm, the cube is 1 cm wide
    assert facts.size_mm == pytest.approx((10.0, 10.0, 10.0))
    assert facts.bbox_min == pytest.approx((1290.0, 1280.0, 0.0))


def test_a_part_the_archive_lacks_is_named() -> None:
    data = slicer_3mf([box(2, 2, 2)], "bambu2")
    missing = rewrite(data, "3D/Objects/object_1.model", lambda t: None)
    with pytest.raises(ModelFormatError) as caught:
        parse_model(missing, "m.3mf")
    assert caught.value.code == "malformed_model"
    assert "/3D/Objects/object_1.model" in caught.value.message and "relationships list it" in caught.value.message


def test_an_object_missing_from_its_part_is_named() -> None:
    data = slicer_3mf([box(2, 2, 2)], "bambu1")
    wrong = rewrite(data, "3D/3dmodel.model", lambda t: t.replace('objectid="1"', 'objectid="7"'))
    with pytest.raises(ModelFormatError) as caught:
        parse_model(wrong, "m.3mf")
    assert "'7' in the model part '/3D/Objects/object_1.model'" in caught.value.message


@pytest.mark.parametrize(("namespace", "name"), [
    ("http://schemas.microsoft.com/3dmanufacturing/beamlattice/2017/02", "beam lattice"),
    ("http://schemas.microsoft.com/3dmanufacturing/slice/2015/07", "slice"),
    ("http://schemas.3mf.io/3dmanufacturing/volumetric/2022/01", "volumetric"),
])
def test_required_extensions_we_cannot_read_are_refused_by_name(namespace: str, name: str) -> None:
    data = slicer_3mf([box(2, 2, 2)], "bambu2")
    required = rewrite(data, "3D/3dmodel.model", lambda t: t.replace(
        'requiredextensions="p"', f'xmlns:x="{namespace}" requiredextensions="p x"'))
    with pytest.raises(ModelFormatError) as caught:
        parse_model(required, "m.3mf")
    assert caught.value.code == "unsupported_extension"
    assert f"requires the {name} extension" in caught.value.message and "plain mesh" in caught.value.message


def test_optional_extension_content_is_ignored() -> None:
    beams = "http://schemas.microsoft.com/3dmanufacturing/beamlattice/2017/02"
    data = slicer_3mf([box(2, 2, 2, center=(1, 1, 1))], "bambu2")
    optional = rewrite(data, "3D/Objects/object_1.model", lambda t: t.replace(
        f'xmlns="{CORE}"', f'xmlns="{CORE}" xmlns:b="{beams}"').replace(
        "</triangles></mesh>", '</triangles><b:beamlattice radius="1"><b:beams><b:beam v1="0" v2="1"/>'
                               "</b:beams></b:beamlattice></mesh>"))
    assert analyse(parse_model(optional, "m.3mf").triangles).volume_mm3 == pytest.approx(8.0)


def test_vertex_and_triangle_limits_stop_reading() -> None:
    data = slicer_3mf([ring_with_volume().triangles], "bambu2")  # 2,304 triangles, 1,152 vertices
    with pytest.raises(ModelFormatError) as caught:
        parse_model(data, "m.3mf", ModelLimits(max_triangles=1_000))
    assert caught.value.code == "too_many_triangles" and "1,000" in caught.value.message
    with pytest.raises(ModelFormatError) as caught:
        parse_model(data, "m.3mf", ModelLimits(max_vertices=1_000))
    assert caught.value.code == "too_many_vertices" and "1,000 vertices" in caught.value.message


def test_a_95_mb_xml_bomb_is_refused_while_reading_under_the_vertex_limit() -> None:
    bomb = xml_bomb_3mf()
    assert len(bomb) < 400_000
    with pytest.raises(ModelFormatError) as caught:
        parse_model(bomb, "bomb.3mf", ModelLimits(max_bytes=100 * 2**20, max_triangles=100_000))
    assert caught.value.code == "too_many_vertices" and "300,000 vertices" in caught.value.message


def test_production_namespace_on_an_unprefixed_attribute_is_not_a_path() -> None:
    data = slicer_3mf([box(2, 2, 2)], "bambu1")
    plain = rewrite(data, "3D/3dmodel.model", lambda t: t.replace("p:path=", "path="))
    with pytest.raises(ModelFormatError) as caught:  # "path" without the production prefix means nothing
        parse_model(plain, "m.3mf")
    assert "object '1'" in caught.value.message

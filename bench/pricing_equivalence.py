"""Same models, same answers: every quote field and check result over a corpus, dumped to compare two versions.

Run: .venv/bin/python bench/pricing_equivalence.py dump OUT.json            (with this checkout's code)
     PYTHONPATH=/tmp/old/src .venv/bin/python bench/pricing_equivalence.py dump BEFORE.json
     .venv/bin/python bench/pricing_equivalence.py compare BEFORE.json OUT.json
     .venv/bin/python bench/pricing_equivalence.py --smoke       (three small models, dumped twice and compared)

The corpus: the test corpus's shapes (rings with a known volume, set stones, overlapping bodies, a
mirrored pair, CAD noise, a flipped patch, a tenfold ring, a thin band, slicer 3MF packages), generated
rings of many sizes and profiles centred and moved off the origin, built rings with settings, tori,
boxes, spheres, open and non-manifold surfaces. Each model is priced from a binary STL (float32, as
uploaded) in every alloy, and inspected from its float64 triangles; the hole, the walls and the thin
faces the preview shows are recorded too. Floats are dumped exactly (``repr``); arrays as a SHA-256.
``compare`` lists every difference, with the relative size of float ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.fixtures.corpus (shapes made independently of the code under test)

from alexandrite.contracts.alloys import ALLOY_NAMES  # noqa: E402
from alexandrite.mes.pricing.quote import PricingRejected, price_model  # noqa: E402
from alexandrite.models3d import ring_builder, shapes  # noqa: E402
from alexandrite.models3d.checks import inspect_model  # noqa: E402
from alexandrite.models3d.errors import ModelFormatError  # noqa: E402
from alexandrite.models3d.rings import PROFILES, ring  # noqa: E402
from alexandrite.models3d.rings_detect import find_hole  # noqa: E402
from alexandrite.models3d.walls import check_walls, thin_faces  # noqa: E402
from alexandrite.models3d.writers import to_binary_stl  # noqa: E402
from tests.fixtures import corpus  # noqa: E402


def models() -> dict[str, np.ndarray]:
    """Name -> float64 triangles (n, 3, 3)."""
    out: dict[str, np.ndarray] = {}
    for profile in PROFILES:
        for segments, profile_segments in ((16, 4), (48, 8), (96, 8), (128, 16), (400, 13), (1250, 29)):
            tri = ring(17.3, 4.0, 1.8, profile, segments, profile_segments)
            out[f"ring-{profile}-{segments}x{profile_segments}"] = tri
            out[f"ring-{profile}-{segments}x{profile_segments}-offset"] = tri + (7.3, -3.1, 11.7)
    for inner, width, thickness in ((12.5, 2.0, 1.2), (21.0, 8.0, 3.0), (60.0, 10.0, 4.0), (30.0, 5.0, 0.5)):
        out[f"ring-comfort-{inner}-{width}-{thickness}"] = ring(inner, width, thickness, "comfort", 96, 8)
    out["ring-small-bench"] = ring(segments=96, profile_segments=8)
    out["ring-large-bench"] = ring(segments=3125, profile_segments=29)
    tilt = np.array([[1, 0, 0], [0, math.cos(0.7), -math.sin(0.7)], [0, math.sin(0.7), math.cos(0.7)]])
    out["ring-tilted-offset"] = ring(segments=96, profile_segments=8) @ tilt.T + (40.0, -12.0, 3.0)
    for setting in ring_builder.SETTINGS:
        for profile in ("comfort", "flat"):
            spec = ring_builder.RingSpec(size=7.0, profile=profile, setting=setting, stone_mm=5.0)
            out[f"built-{setting}-{profile}"] = ring_builder.build_ring(spec)
    out["built-prongs-coarse"] = ring_builder.build_ring(ring_builder.RingSpec(size=4, setting="prongs", stone_mm=2.0),
                                                        segments=48, profile_segments=8)
    out["corpus-flat"] = corpus.ring_with_volume().triangles
    out["corpus-stones"] = corpus.ring_with_stones()[0]
    out["corpus-stones-3"] = corpus.ring_with_stones(3, 3.0)[0]
    out["corpus-overlapping"] = corpus.overlapping_bodies()[0]
    out["corpus-earring"] = corpus.earring()[0]
    out["corpus-mirrored-pair"] = corpus.mirrored_pair()[0]
    out["corpus-noise"] = corpus.with_cad_noise(corpus.ring_with_volume(profile="comfort").triangles)
    out["corpus-noise-centred-box"] = corpus.with_cad_noise(shapes.box(10, 6, 4))
    out["corpus-flipped"] = corpus.flipped_patch(corpus.ring_with_volume().triangles)
    out["corpus-tenfold"] = corpus.tenfold_ring().triangles
    out["corpus-thin-band"] = corpus.thin_band().triangles
    out["torus"] = shapes.torus(12.0, 2.0, 64, 16)
    out["torus-fine-offset"] = shapes.torus(10.0, 1.5, 400, 60) + (1.0, 2.0, 3.0)
    out["box"] = shapes.box(20, 10, 2)
    out["box-inside-out"] = shapes.box(20, 10, 2)[:, ::-1]
    out["sphere"] = shapes.icosphere(5.0, 3)
    out["sphere-with-cavity"] = np.concatenate([shapes.icosphere(5.0, 3), shapes.icosphere(3.0, 2)[:, ::-1]])
    out["tetrahedron"] = shapes.tetrahedron([[0, 0, 0], [3, 0, 0], [0, 3, 0], [0, 0, 3]])
    out["parts-ring-of-boxes"] = np.concatenate([shapes.box(2, 2, 2, center=(12 * math.cos(a), 12 * math.sin(a), 0))
                                                 for a in np.linspace(0, 2 * math.pi, 8, endpoint=False)])
    band = ring(segments=96, profile_segments=8)
    out["open-ring"] = band[5:]
    out["non-manifold"] = np.concatenate([shapes.box(4, 4, 4), shapes.box(4, 4, 4)[:2]])
    out["two-rings-apart"] = np.concatenate([band, band + (40.0, 0.0, 0.0)])
    out["two-rings-overlapping"] = np.concatenate([band, band + (1.0, 0.0, 0.0)])
    return out


def digest(array: np.ndarray | None) -> str | None:
    return None if array is None else hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def plain(value: Any) -> Any:
    """JSON-safe, with floats kept exact (json writes repr) and non-finite floats as strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def inspection_record(tri: np.ndarray) -> dict[str, Any]:
    found = inspect_model(tri, min_wall_mm=0.7)
    record: dict[str, Any] = {
        "facts": found.facts.as_dict(), "problem": None if found.problem is None else vars(found.problem),
        "shells": [s.as_dict() for s in found.shells], "stones": [s.as_dict() for s in found.stones],
        "metal_volume_mm3": found.metal_volume_mm3, "metal_surface_mm2": found.metal_surface_mm2,
        "united_shells": found.united_shells, "overlap_mm3": found.overlap_mm3, "metal_bodies": found.metal_bodies,
        "genus": found.genus, "hole": None if found.hole is None else found.hole.as_dict(),
        "wall": None if found.wall is None else found.wall.as_dict(), "notes": found.notes, "kind": found.kind,
        "oriented": digest(found.oriented), "metal_mask": digest(found.metal_mask),
    }
    if found.problem is None and found.oriented is not None and found.metal_mask is not None:
        metal = found.oriented[found.metal_mask]
        for genus in (1, 2):
            hole = find_hole(metal, genus)
            record[f"find_hole_genus{genus}"] = None if hole is None else hole.as_dict()
        for minimum in (0.5, 0.8, 1.5):
            record[f"walls_{minimum}"] = check_walls(metal, minimum).as_dict()
            record[f"walls_{minimum}_all_faces"] = check_walls(metal, minimum, max_rays=len(metal)).as_dict()
        for minimum in (0.8, 1.5):
            thin, sampled = thin_faces(metal, minimum, max_rays=2_000)
            record[f"thin_faces_{minimum}"] = {"faces": digest(np.asarray(thin, dtype=np.int64)),
                                               "count": len(thin), "sampled": sampled}
    return record


def quote_record(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for alloy in ALLOY_NAMES:
        for confirm in ((), ("scale",)):
            key = f"{alloy}{'+scale' if confirm else ''}"
            try:
                out[key] = price_model(data, "model.stl", alloy, confirm=confirm).as_dict()
            except PricingRejected as rejected:
                out[key] = {"rejected": rejected.code, "message": rejected.message, "details": rejected.details}
            except ModelFormatError as error:
                out[key] = {"format_error": error.code, "message": error.message}
    return out


def dump(path: str, only: set[str] | None = None) -> int:
    result: dict[str, Any] = {}
    for name, tri in models().items():
        if only is not None and name not in only:
            continue
        tri = np.asarray(tri, dtype=np.float64)
        result[name] = {"triangles": len(tri), "inspection": inspection_record(tri),
                        "quotes": quote_record(to_binary_stl(tri))}
        print(f"{name}: {len(tri):,} triangles", flush=True)
    Path(path).write_text(json.dumps(plain(result), indent=1, sort_keys=True))
    return 0


def differences(before: Any, after: Any, where: str = "") -> list[tuple[str, str]]:
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after)):
            if key not in before or key not in after:
                found.append((f"{where}/{key}", "missing on one side"))
            else:
                found += differences(before[key], after[key], f"{where}/{key}")
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [d for i, (b, a) in enumerate(zip(before, after, strict=True))
                for d in differences(b, a, f"{where}[{i}]")]
    if before == after:
        return []
    if isinstance(before, float) and isinstance(after, float):
        return [(where, f"{before!r} -> {after!r} (relative {abs(after - before) / max(abs(before), 1e-300):.1e})")]
    return [(where, f"{before!r} -> {after!r}")]


def compare(before_path: str, after_path: str) -> int:
    before, after = (json.loads(Path(p).read_text()) for p in (before_path, after_path))
    found = differences(before, after)
    fields = sum(1 for _ in _leaves(before))
    print(f"{'models':>7} {'values compared':>16} {'differ':>7}")
    print(f"{len(before):>7} {fields:>16,} {len(found):>7}")
    for where, what in found:
        print(f"  {where}: {what}")
    return 1 if found else 0


def _leaves(value: Any) -> Any:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def smoke() -> int:
    """The same three small models dumped twice and compared: the script works, and the checks are deterministic."""
    with tempfile.TemporaryDirectory(prefix="pricing-equivalence-") as tmp:
        first, second = str(Path(tmp) / "first.json"), str(Path(tmp) / "second.json")
        for path in (first, second):
            dump(path, only={"ring-small-bench", "corpus-stones-3", "open-ring"})
        return compare(first, second)


def main(argv: list[str]) -> int:
    if argv == ["--smoke"]:
        return smoke()
    if len(argv) == 2 and argv[0] == "dump":
        return dump(argv[1])
    if len(argv) == 3 and argv[0] == "compare":
        return compare(argv[1], argv[2])
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""3MF reading: time and memory of our streaming reader against lib3mf, and the cost of a hostile file.

Run: .venv/bin/python bench/bench_3mf.py [--sizes 100000,1000000] [--src OTHER/src] [--smoke]

Each measurement runs in a fresh child process, which reports its wall time, its peak resident set
(``VmHWM``) and how much that peak exceeds the process's size before reading (``extra``: what the read
itself took, file bytes already in memory):

- rings: a comfort ring of N triangles written as a one-part 3MF ("plain") and as a Bambu Studio 2.x
  package (mesh in ``3D/Objects/object_1.model``, placed through ``p:path``), read by ours
  (``parse_model``) and by lib3mf (the consortium's reader, its triangles copied out to NumPy);
- bomb: a 3MF of a few hundred KB whose model unpacks to ~95 MB of XML (2M vertices, 1M triangles, all
  the same), read by ours with the shop's limits (2M triangles), whatever the outcome.

``--src`` points the child processes at another checkout's ``src`` (the code before a change) to compare.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, time
sys.path.insert(0, {src!r}); sys.path.insert(0, {root!r})
data = open({path!r}, "rb").read()
from alexandrite.models3d.formats import parse_model
from alexandrite.models3d.limits import ModelLimits
from tests.fixtures.lib3mf_reference import read_3mf
import lib3mf
limits = ModelLimits(max_bytes=100 * 1024 * 1024, max_triangles=2_000_000)
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
before = status("VmRSS")
started = time.perf_counter()
outcome = "ok"
if {tool!r} == "ours":
    try:
        triangles = len(parse_model(data, "m.3mf", limits).triangles)
    except Exception as error:
        outcome, triangles = getattr(error, "code", type(error).__name__), 0
else:
    triangles = len(read_3mf(data))
seconds = time.perf_counter() - started
print(json.dumps({{"seconds": seconds, "triangles": triangles, "outcome": outcome,
                  "rss_mb": status("VmHWM"), "extra_mb": status("VmHWM") - before}}))
"""


def child(tool: str, path: str, src: str) -> dict[str, object]:
    code = CHILD.format(src=src, root=str(ROOT), path=path, tool=tool)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def ring_3mf(triangles: int, layout: str) -> bytes:
    """A comfort ring of about `triangles` triangles as a one-part 3MF ("plain") or a Bambu 2.x package."""
    from alexandrite.models3d.rings import ring
    from alexandrite.models3d.writers import to_3mf
    from tests.fixtures.corpus import slicer_3mf

    points = 2 ** max(3, round(math.log2(math.sqrt(triangles / 8))))
    segments, profile_segments = max(8, round(triangles / (2 * points))), points - 3
    mesh = ring(segments=segments, profile_segments=profile_segments)
    return to_3mf(mesh) if layout == "plain" else slicer_3mf([mesh], "bambu2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--src", default=str(ROOT / "src"), help="the source tree the children import")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and a small bomb, in seconds")
    args = parser.parse_args(argv)
    sizes = [2_000] if args.smoke else [int(s) for s in args.sizes.split(",") if s.strip()]
    print(f"load {open('/proc/loadavg').read().split()[:3]}; src {args.src}")
    print(f"{'file':>24} {'tool':>8} {'s':>7} {'peak RSS MB':>12} {'extra MB':>9} {'triangles':>10} outcome")
    with tempfile.TemporaryDirectory(prefix="bench-3mf-") as tmp:
        for size in sizes:
            for layout in ("plain", "bambu2"):
                path = os.path.join(tmp, f"ring-{size}-{layout}.3mf")
                Path(path).write_bytes(ring_3mf(size, layout))
                for tool in ("ours", "lib3mf"):
                    row = child(tool, path, args.src)
                    print(f"{f'{layout} {size:,} ({os.path.getsize(path) / 1e6:.1f} MB)':>24} {tool:>8} "
                          f"{row['seconds']:7.3f} {row['rss_mb']:12.0f} {row['extra_mb']:9.0f} "
                          f"{row['triangles']:>10,} {row['outcome']}", flush=True)
        from tests.fixtures.corpus import xml_bomb_3mf

        bomb = xml_bomb_3mf(20_000, 10_000) if args.smoke else xml_bomb_3mf()
        path = os.path.join(tmp, "bomb.3mf")
        Path(path).write_bytes(bomb)
        row = child("ours", path, args.src)
        print(f"{f'bomb ({len(bomb) / 1e3:.0f} KB)':>24} {'ours':>8} {row['seconds']:7.3f} {row['rss_mb']:12.0f} "
              f"{row['extra_mb']:9.0f} {row['triangles']:>10,} {row['outcome']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

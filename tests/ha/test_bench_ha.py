"""bench/bench_ha.py at its smoke size: it brings up `alexandrite up --ha`, measures both layouts, prints its
table and the throughput ratio, and the HA layout stops leaving no process or port behind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ha.conftest import needs_ha_tools

pytestmark = [pytest.mark.ha, pytest.mark.e2e, needs_ha_tools]
ROOT = Path(__file__).resolve().parents[2]


def test_bench_ha_smoke_prints_its_table() -> None:
    result = subprocess.run([sys.executable, "bench/bench_ha.py", "--smoke"], cwd=ROOT, capture_output=True,
                            text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["layout", "orders"])
    single, ha = lines[header + 1].split(), lines[header + 2].split()
    assert single[:3] == ["single", "node", "12"] and ha[:2] == ["HA", "12"]
    ratio = re.search(r"^HA / single node throughput: (\d+\.\d\d)$", result.stdout, re.MULTILINE)
    assert ratio is not None and float(ratio.group(1)) > 0, result.stdout
    assert "stopped cleanly: yes" in result.stdout
    print("\n" + "\n".join(lines[header:]))

"""``alexandrite ha`` without a layout, and the ``--ha`` options of ``up``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alexandrite.cli import build_parser

pytestmark = pytest.mark.ha


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alexandrite", *args], capture_output=True, text=True, timeout=120)


def test_ha_commands_on_a_directory_without_a_layout(tmp_path: Path) -> None:
    status = cli("ha", "status", "--dir", str(tmp_path))
    assert status.returncode == 1 and f"no HA layout in {tmp_path}" in status.stderr
    down = cli("ha", "down", "--dir", str(tmp_path))
    assert down.returncode == 0 and f"no HA layout in {tmp_path}" in down.stdout


def test_up_takes_the_ha_options() -> None:
    args = build_parser().parse_args(["up", "--ha", "--dir", "/tmp/x", "--keep", "--workers", "3"])
    assert (args.ha, args.ha_dir, args.keep, args.workers, args.replicas) == (True, "/tmp/x", True, 3, 0)
    assert build_parser().parse_args(["up"]).ha is False

"""The walls between the rooms hold: import-linter's contracts (pyproject.toml) pass, and they really catch
an import through a wall (checked on a copy of the package with one forbidden import added)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(source_root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    only = [arg for contract in contracts for arg in ("--contract", contract)]
    return subprocess.run([str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache", *only], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_every_import_contract_is_kept() -> None:
    result = lint(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "forbidden", "contract"), [
    ("shop/handlers.py", "from alexandrite.mes import domain as _mes_domain", "services"),
    ("kit/db.py", "from alexandrite.orders import records as _records", "layers"),
    ("models3d/geometry.py", "from alexandrite.contracts import alloys as _alloys", "layers"),
    ("models3d/geometry.py", "import sqlalchemy as _sqlalchemy", "models3d"),
    ("crm/domain.py", "import fastapi as _fastapi", "domain"),
])
def test_an_import_through_a_wall_breaks_the_build(tmp_path: Path, module: str, forbidden: str,
                                                  contract: str) -> None:
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "alexandrite", copy / "alexandrite",
                    ignore=shutil.ignore_patterns("__pycache__", "static", "templates"))
    target = copy / "alexandrite" / module
    target.write_text(target.read_text() + f"\n{forbidden}  # noqa\n")
    assert lint(ROOT / "src", contract).returncode == 0  # the contract holds on the real package
    result = lint(copy, contract)
    assert result.returncode != 0 and "1 broken" in result.stdout, result.stdout

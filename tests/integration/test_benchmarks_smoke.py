"""Every script under bench/ runs in its ``--smoke`` size and prints its table.

The check is the exit code and the table's column headers, never a timing: the figures of a
seconds-long run on a shared machine mean nothing, only that the script still works (sandbox,
processes, load generator, anchor, clean-up) does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"

# script (relative to bench/) -> column headers its table must show
TABLES: dict[str, tuple[str, ...]] = {
    "bench_api.py": ("endpoint", "req/s", "p50 ms", "p99 ms", "anchor req/s", "anchor p99", "ratio"),
    "bench_capacity.py": ("server", "orders/s", "create p50", "upload p50", "submit p50", "cpu %", "ratio"),
    "bench_dashboard.py": ("orders", "page", "variant", "p50 ms", "p95 ms", "naive/p95"),
    "bench_idle.py": ("process", "variant", "cpu s", "% of a core", "x anchor", "database", "xact/s"),
    "bench_pipeline.py": ("model", "workers", "orders/s", "p50 ms", "bare ms/msg", "overhead x", "scaling",
                          "cpu ms/order"),
    "bench_relay.py": ("batch", "messages", "relay msg/s", "relay cpu µs", "bare msg/s", "bare cpu µs", "ratio",
                       "cpu x"),
    "bench_pricing.py": ("triangles", "placed", "plain s", "checks s", "checks/plain", "trimesh s", "trimesh/plain"),
    "pricing_equivalence.py": ("models", "values compared", "differ"),
    "bench_3mf.py": ("file", "tool", "peak RSS MB", "extra MB", "triangles", "outcome"),
    "bench_sse.py": ("variant", "watchers", "changes", "cpu s", "MB/watcher", "p50 ms", "p95 ms", "polling/sse cpu"),
    "bench_tracing.py": ("variant", "min", "median", "min/none"),
    "profile_layers.py": ("what", "create", "upload", "submit", "get", "whole app", "solve_dependencies", "how", "cpu µs"),
    "profile_statements.py": ("request", "round trips", "statements", "transactions", "process", "per order"),
    "pyspy_shares.py": ("layer (exclusive)", "phase / function (inclusive)", "hottest functions"),
    "anchors/bare_amqp.py": ("messages", "seconds", "msg/s", "ms/msg"),
    # Brings up real clusters: smoke-run with the HA suite (tests/ha/test_bench_ha.py), not here.
    "bench_ha.py": ("layout", "orders", "orders/s"),
}
ELSEWHERE = {"bench_ha.py"}


def runnable_scripts() -> list[str]:
    """Every script with a command line under bench/ (support modules and the anchor app excluded)."""
    found = []
    for path in sorted(BENCH.rglob("*.py")):
        if "__name__ == \"__main__\"" in path.read_text():
            found.append(str(path.relative_to(BENCH)))
    return found


def test_every_script_is_smoke_tested() -> None:
    assert set(runnable_scripts()) == set(TABLES), "register the new bench script and its table headers here"


@pytest.mark.parametrize("script", sorted(set(TABLES) - ELSEWHERE))
def test_script_runs_and_prints_its_table(script: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALEX_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    done = subprocess.run([sys.executable, str(BENCH / script), "--smoke"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    output = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}\n{output[-4000:]}\n{done.stderr[-4000:]}"
    missing = [header for header in TABLES[script] if header not in output]
    assert not missing, f"{script} printed no table with {missing}:\n{output[-4000:]}"

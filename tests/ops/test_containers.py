"""Dockerfile and compose.yaml, checked without a Docker engine: structure, references, real CLI commands."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from alexandrite.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = {"migrate", "shop", "crm", "mes", "pricing-worker"}
STACK = APP_SERVICES | {"postgres", "rabbitmq", "redis", "prometheus", "alertmanager", "grafana"}


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions per stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), rest.strip()))
    return stages


def test_dockerfile_is_multi_stage_small_and_non_root() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "build and runtime stages"
    bases = [rest for stage in stages for ins, rest in stage if ins == "FROM"]
    assert all(re.match(r"python:3\.11-slim-\w+ AS \w+", base) for base in bases), bases
    assert not any(":latest" in base for base in bases)
    runtime = stages[-1]
    assert ("COPY", "--from=build /opt/venv /opt/venv") in runtime, "only the built venv reaches the runtime image"
    users = [rest for ins, rest in runtime if ins == "USER"]
    assert users and not users[-1].startswith(("0", "root")), users
    assert ("ENTRYPOINT", '["alexandrite"]') in runtime
    assert not any(ins == "ADD" for stage in stages for ins, _ in stage), "COPY, never ADD"
    assert not any(ins == "RUN" and "apt-get install" in rest for ins, rest in runtime), "no build tools at run time"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ignored[0] == "*" and "!src/" in ignored


def test_compose_runs_the_whole_stack() -> None:
    services = compose()["services"]
    assert STACK <= set(services)
    for name, service in services.items():
        assert "image" in service, name
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
    for name in APP_SERVICES - {"migrate"}:
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("postgres", "rabbitmq", "redis", "shop", "crm", "mes"):
        assert "healthcheck" in services[name], name
    host_ports = [p.split(":")[0] for s in services.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports))
    assert services["pricing-worker"]["deploy"]["replicas"] >= 2


def test_compose_references_exist() -> None:
    document = compose()
    named = set(document.get("volumes", {}))
    for name, service in document["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (name, source)
            else:
                assert source in named, (name, source)
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).exists()
    prometheus = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    for job in prometheus["scrape_configs"]:
        hosts = [t.split(":")[0] for c in job.get("static_configs", []) for t in c["targets"]]
        hosts += [n for c in job.get("dns_sd_configs", []) for n in c["names"]]
        assert set(hosts) <= set(document["services"]), job["job_name"]
    for path in (ROOT / "deploy/compose").rglob("*.y*ml"):
        assert yaml.safe_load(path.read_text()), path


def container_commands() -> list[list[str]]:
    commands = [s["command"] for s in compose()["services"].values() if "build" in s or s.get("image", "")
                .startswith("alexandrite")]
    for path in (ROOT / "deploy/k8s/base").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            pod = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
            commands += [c["args"] for c in pod.get("containers", []) if c.get("image") == "alexandrite"]
    return commands


def test_every_container_command_is_a_real_cli_command() -> None:
    commands = container_commands()
    assert len(commands) >= 8
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(command)  # exits (SystemExit) on an unknown command or option
        assert args.command in ("serve", "worker", "migrate"), command


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) is not installed")
def test_prometheus_config_passes_promtool() -> None:
    result = subprocess.run(["promtool", "check", "config", "--syntax-only",
                             str(ROOT / "deploy/compose/prometheus.yml")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool (Debian prometheus-alertmanager) is not installed")
def test_alertmanager_config_passes_amtool() -> None:
    result = subprocess.run(["amtool", "check-config", str(ROOT / "deploy/compose/alertmanager.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr

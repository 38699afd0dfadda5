"""The exporters in deploy/prometheus/exporters really export what the rules and dashboards read."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.processes import free_port
from tests.observability_config import PROMETHEUS, exporter_allow_list, exposed_names

EXPORTERS = PROMETHEUS / "exporters"


def option_file(name: str) -> dict[str, str]:
    values = {}
    for line in (EXPORTERS / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value.strip('"')
    return values


def scrape(port: int, path: str = "/metrics", timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run_exporter(binary: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} (Debian package {binary}) is not installed")
    return subprocess.Popen([path, *args], env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def expected(prefix: str) -> set[str]:
    return {name for name in exporter_allow_list() if name.startswith(prefix)}


@pytest.mark.parametrize(("binary", "prefix"), [
    ("prometheus-postgres-exporter", "pg_"),
    ("prometheus-redis-exporter", "redis_"),
    ("prometheus-node-exporter", "node_"),
])
def test_exporter_provides_the_listed_metrics(binary: str, prefix: str, tmp_path: Path) -> None:
    options = option_file(binary)
    port = free_port()
    args = [arg.replace("127.0.0.1:9187", f"127.0.0.1:{port}").replace("127.0.0.1:9121", f"127.0.0.1:{port}")
            .replace("127.0.0.1:9110", f"127.0.0.1:{port}")
            .replace("/etc/alexandrite/postgres-exporter-queries.yaml",
                     str(PROMETHEUS / "postgres-exporter-queries.yaml"))
            for arg in shlex.split(options["ARGS"])]
    env = {}
    if "DATA_SOURCE_NAME" in options:  # the local server trusts postgres; the file names a pg_monitor role
        env["DATA_SOURCE_NAME"] = options["DATA_SOURCE_NAME"].replace("exporter@", "postgres@")
    process = run_exporter(binary, args, env)
    try:
        names: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # some collectors need a first round
            names = exposed_names(scrape(port))
            if expected(prefix) <= names:
                break
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    assert expected(prefix) <= names, sorted(expected(prefix) - names)


def test_rabbitmq_plugin_provides_the_listed_metrics() -> None:
    try:
        text = urllib.request.urlopen("http://127.0.0.1:15692/metrics/per-object", timeout=5).read().decode()
    except OSError:
        pytest.skip("RabbitMQ's rabbitmq_prometheus plugin is not enabled here (port 15692)")
    assert expected("rabbitmq_") <= exposed_names(text)

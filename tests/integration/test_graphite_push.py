"""The optional Graphite push, received by a real carbon-cache (Debian's graphite-carbon)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import Counter

from alexandrite.kit.graphite import parse_address, run_graphite_push, series_prefix
from alexandrite.kit.settings import Settings
from tests.e2e.processes import free_port

CARBON = shutil.which("carbon-cache")
pytestmark = pytest.mark.skipif(CARBON is None, reason="carbon-cache (Debian graphite-carbon) is not installed")

PUSHED = Counter("alexandrite_graphite_probe_total", "Counts pushes in the Graphite test", ["kind"])


@pytest.fixture
def carbon(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """carbon-cache on free ports with its own config, storage and logs under tmp_path."""
    port, pickle, query = free_port(), free_port(), free_port()
    storage = tmp_path / "storage"
    conf = tmp_path / "conf"
    for folder in (storage / "whisper", storage / "log", conf):
        folder.mkdir(parents=True)
    (conf / "storage-schemas.conf").write_text("[default]\npattern = .*\nretentions = 1s:10m\n")
    (conf / "carbon.conf").write_text(f"""[cache]
STORAGE_DIR = {storage}/
LOCAL_DATA_DIR = {storage}/whisper/
CONF_DIR = {conf}/
LOG_DIR = {storage}/log/
PID_DIR = {storage}/
DATABASE = whisper
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = inf
MAX_CREATES_PER_MINUTE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {port}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {pickle}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {query}
LOG_LISTENER_CONN_SUCCESS = False
""")
    process = subprocess.Popen(
        [CARBON, f"--config={conf / 'carbon.conf'}", f"--pidfile={storage / 'carbon.pid'}",
         f"--logdir={storage / 'log'}", "--nodaemon", "start"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"carbon-cache exited: {process.stdout.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield port, storage / "whisper"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def whisper_value(path: Path) -> float | None:
    """The latest non-empty value of a whisper file (whisper-fetch from graphite-carbon's deps)."""
    fetch = shutil.which("whisper-fetch")
    assert fetch is not None
    out = subprocess.run([fetch, "--from", str(int(time.time()) - 300), str(path)], capture_output=True,
                         text=True, check=True).stdout
    values = [float(v) for _, v in (line.split() for line in out.splitlines()) if v != "None"]
    return values[-1] if values else None


async def test_metrics_arrive_in_carbon(carbon: tuple[int, Path], settings: Settings) -> None:
    port, whisper = carbon
    PUSHED.labels("probe").inc(7)
    pushing = settings.replace(**{"graphite_address": f"127.0.0.1:{port}",
                                          "graphite_interval_seconds": 0.3})
    stop = asyncio.Event()
    task = asyncio.create_task(run_graphite_push(pushing, "shop", stop, instance="test-1"))
    prefix = series_prefix(pushing, "shop", "test-1").replace(".", "/")
    target = whisper / prefix / "alexandrite_graphite_probe_total" / "kind" / "probe.wsp"
    deadline = time.monotonic() + 60
    value = None
    try:
        while time.monotonic() < deadline:
            if target.exists():
                value = await asyncio.to_thread(whisper_value, target)
                if value is not None:
                    break
            await asyncio.sleep(0.3)
    finally:
        stop.set()
        await task
    assert value == 7.0, f"no datapoint in {target}; carbon has {sorted(p.name for p in whisper.rglob('*'))[:20]}"
    # Everything the process exports goes along, e.g. the HTTP histograms' families.
    assert (whisper / prefix).is_dir() and any((whisper / prefix).iterdir())


def test_bad_graphite_addresses_are_refused() -> None:
    assert parse_address("carbon.local:2003") == ("carbon.local", 2003)
    for bad in ("carbon.local", ":2003", "carbon:port"):
        with pytest.raises(ValueError):
            parse_address(bad)
    with pytest.raises(ValueError, match="host:port"):
        Settings(_env_file=None, graphite_address="nowhere")  # type: ignore[call-arg]

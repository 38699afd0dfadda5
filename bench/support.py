"""Shared pieces of the benchmarks: a sandbox that is always dropped, child processes that are always
stopped, wrk runs, the anchor app, and the table printing.

Every bench script imports this module after putting ``bench/`` and the repository root on
``sys.path``. Nothing here connects to anything at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ANCHORS = BENCH / "anchors"
WRK_SCRIPT = BENCH / "wrk" / "api.lua"

for _path in (str(REPO), str(REPO / "src")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from alexandrite.devtools.sandbox import deprovision, provision, sandbox_env, sandbox_settings  # noqa: E402
from alexandrite.kit.setting_groups import BrokerSettings  # noqa: E402
from alexandrite.kit.settings import Settings  # noqa: E402

# --- the run ------------------------------------------------------------------------------------------

def stop_on_sigterm() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every ``finally`` (processes, databases, vhost) runs."""

    def _raise(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)


def machine_line() -> str:
    """Date, host, cores and the load average: printed first by every script."""
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
            f"loadavg {' '.join(load)}")


def loadavg() -> float:
    return os.getloadavg()[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@contextlib.contextmanager
def sandbox(name: str, **overrides: object) -> Iterator[Settings]:
    """Own databases (migrated with the project's code), RabbitMQ vhost, Redis prefix and storage;
    dropped on the way out, whatever happens (a half-made sandbox too)."""
    root = Path(tempfile.mkdtemp(prefix=f"alex-{name}-"))
    settings = sandbox_settings(root, **overrides)
    try:
        provision(settings)
        yield settings
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            deprovision(settings)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def workdir(name: str) -> Iterator[Path]:
    """A scratch directory (logs, id lists): removed when the run succeeds, kept and named when it fails."""
    path = Path(tempfile.mkdtemp(prefix=f"alex-{name}-"))
    try:
        yield path
    except BaseException:
        print(f"# logs kept in {path}", file=sys.stderr)
        raise
    shutil.rmtree(path, ignore_errors=True)


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The sandbox's environment for a child process, with the relay's production poll interval (the
    sandbox's is shorter, for quick tests)."""
    env = sandbox_env(settings, dict(os.environ))
    env.update({"ALEX_LOG_LEVEL": "WARNING", "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
                "ALEX_RELAY_IDLE_SECONDS": str(BrokerSettings.model_fields["relay_idle_seconds"].default)})
    env.update(extra)
    return env


# --- child processes ------------------------------------------------------------------------------------

@dataclass
class Children:
    """Processes started in their own session; :meth:`stop_all` ends them (SIGTERM, then SIGKILL)."""

    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(list(argv), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                   start_new_session=True)
        self.processes[name] = process
        return process

    def service(self, name: str, service: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return self.start(name, [sys.executable, "-m", "alexandrite", "serve", service, "--port", str(port)], env)

    def worker(self, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return self.start(name, [sys.executable, "-m", "alexandrite", "worker", "--name", name,
                                 "--metrics-port", str(free_port())], env)

    def stop(self, name: str, timeout: float = 30) -> None:
        process = self.processes.pop(name)
        _stop(process, timeout)

    def stop_all(self, timeout: float = 30) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            _stop(process, timeout)
        self.processes.clear()

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_http(url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")
        time.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_calls(pid: int) -> int:
    """System calls of the write family a process made so far (/proc/<pid>/io ``syscw``): each socket
    write of the event loop (``write``/``writev``) counts one; a steadier figure than CPU time on a
    shared machine."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    return 0


# The shared servers a run drives, by the command name of their processes (/proc/<pid>/comm).
SERVERS = {"PostgreSQL": ("postgres",), "RabbitMQ": ("beam.smp", "erl_child_setup"), "Redis": ("redis-server",)}


def server_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of every process of each of :data:`SERVERS` (a process that ends between two
    readings takes its CPU with it: PostgreSQL backends of pooled connections live through a run)."""
    totals = dict.fromkeys(SERVERS, 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
            server = next((s for s, names in SERVERS.items() if name in names), None)
            if server is not None:
                totals[server] += cpu_seconds(int(entry.name))
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
    return totals


# --- the anchor app -------------------------------------------------------------------------------------

@dataclass
class AnchorApp:
    """The minimal FastAPI + pydantic + asyncpg app (bench/anchors/anchor_app.py) with its own database."""

    settings: Settings
    children: Children
    port: int = field(default_factory=free_port)
    pool_size: int = 10
    socket_dir: str | None = None  # connect by PostgreSQL's Unix socket there (as ALEX_PG_SOCKET_DIR does)

    @property
    def database(self) -> str:
        return f"{self.settings.db.prefix}_anchor"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def dsn(self) -> str:
        dsn = f"{plain_dsn(self.settings.db.dsn).rstrip('/')}/{self.database}"
        if not self.socket_dir:
            return dsn
        scheme, _, rest = dsn.partition("://")
        user, _, host_and_path = rest.rpartition("@")
        port = host_and_path.split("/", 1)[0].rpartition(":")[2] or "5432"
        return f"{scheme}://{user}@/{self.database}?host={self.socket_dir}&port={port}"

    def start(self) -> None:
        asyncio.run(_admin(self.settings, f'CREATE DATABASE "{self.database}"'))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALEX_")}
        env.update({"ANCHOR_DSN": self.dsn(), "ANCHOR_POOL_SIZE": str(self.pool_size)})
        process = self.children.start("anchor", [
            sys.executable, "-m", "uvicorn", "anchor_app:app", "--app-dir", str(ANCHORS), "--host", "127.0.0.1",
            "--port", str(self.port), "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
            "--no-access-log"], env)
        wait_http(f"{self.url}/health", process)

    def drop(self) -> None:
        asyncio.run(_admin(self.settings, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))


async def _admin(settings: Settings, statement: str) -> None:
    conn = await asyncpg.connect(plain_dsn(settings.admin_database_url()))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _outbox_rows(settings: Settings) -> int:
    conn = await asyncpg.connect(plain_dsn(settings.database_url("shop")))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM outbox"))
    finally:
        await conn.close()


def drain_outbox(settings: Settings, timeout: float = 120.0) -> float:
    """Wait until the shop's relay has published its whole outbox; the seconds it took (so that a
    backlog left by one run does not load the machine during the next one)."""
    started = time.monotonic()
    while asyncio.run(_outbox_rows(settings)) > 0:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the shop's outbox was not drained within {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started


# --- wrk ------------------------------------------------------------------------------------------------

@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: int  # connect/read/write errors, timeouts and answers outside 2xx/3xx
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(url: str, *, duration: float, connections: int, threads: int = 2, method: str = "GET",
        path: str = "/", headers: dict[str, str] | None = None, body: bytes | None = None,
        ids_file: Path | None = None, idempotency_prefix: str | None = None, timeout: str = "10s") -> WrkResult:
    """One wrk run through bench/wrk/api.lua (a body, headers, ``{id}`` taken in turn from ``ids_file``,
    a fresh Idempotency-Key per request when ``idempotency_prefix`` is given)."""
    threads = max(1, min(threads, connections))
    env = dict(os.environ, WRK_METHOD=method, WRK_PATH=path, WRK_THREADS=str(threads),
               WRK_HEADERS="\n".join(f"{k}: {v}" for k, v in (headers or {}).items()))
    with tempfile.TemporaryDirectory(prefix="alex-wrk-") as tmp:
        if body is not None:
            body_file = Path(tmp) / "body"
            body_file.write_bytes(body)
            env["WRK_BODY_FILE"] = str(body_file)
        if ids_file is not None:
            env["WRK_IDS_FILE"] = str(ids_file)
        if idempotency_prefix:
            env["WRK_IDEMPOTENCY_PREFIX"] = idempotency_prefix
        done = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(duration, 1):.0f}s", f"--timeout={timeout}",
             "-s", str(WRK_SCRIPT), url], env=env, capture_output=True, text=True,
            timeout=duration + 120, check=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(requests=data["requests"], seconds=data["duration_us"] / 1e6,
                     errors=data["connect"] + data["read"] + data["write"] + data["status"] + data["timeout"],
                     p50_ms=data["p50"] / 1000, p90_ms=data["p90"] / 1000, p99_ms=data["p99"] / 1000,
                     max_ms=data["max"] / 1000)


# --- printing -------------------------------------------------------------------------------------------

def table_line(values: Sequence[object], widths: Sequence[int]) -> str:
    cells = []
    for value, width in zip(values, widths, strict=True):
        if isinstance(value, float):
            text = f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1000 else f"{value:,.0f}"
        else:
            text = str(value)
        cells.append(text.rjust(width) if width > 0 else text.ljust(-width))
    return " ".join(cells)


def print_table(header: Sequence[str], widths: Sequence[int], rows: Sequence[Sequence[object]]) -> None:
    print(table_line(header, widths))
    for row in rows:
        print(table_line(row, widths), flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def new_token() -> str:
    return uuid.uuid4().hex[:10]


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# --- the shop under test --------------------------------------------------------------------------------

SMALL_RING = {"segments": 96, "profile_segments": 8}  # 2,112 triangles, ~106 kB binary STL
LARGE_RING = {"segments": 3125, "profile_segments": 29}  # 200,000 triangles, ~10 MB binary STL


def ring_stl(kind: str = "small") -> bytes:
    from alexandrite.models3d.rings import ring
    from alexandrite.models3d.writers import to_binary_stl

    return to_binary_stl(ring(**(LARGE_RING if kind == "large" else SMALL_RING)))


def stl_triangles(data: bytes) -> int:
    return (len(data) - 84) // 50


def shop_env(settings: Settings, port: int, **extra: str) -> dict[str, str]:
    """One shop process for HTTP benchmarks: throttling off, submit backpressure off (no mes to ask)."""
    return child_env(settings, ALEX_SHOP_PORT=str(port), ALEX_SHOP_URL=f"http://127.0.0.1:{port}",
                     ALEX_RATE_LIMIT_ENABLED="false", ALEX_BACKPRESSURE_MODE="off", ALEX_DB_POOL_SIZE="10",
                     **extra)


def start_shop(settings: Settings, children: Children, name: str = "shop", **extra: str) -> str:
    """One shop process on a free port (another port is tried when someone took it meanwhile)."""
    for attempt in range(3):
        port = free_port()
        process = children.service(name, "shop", port, shop_env(settings, port, **extra))
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/health/ready", process)
            return url
        except (RuntimeError, TimeoutError) as error:
            log = children.log_tail(name)
            children.stop(name)
            if "address already in use" not in log or attempt == 2:
                raise RuntimeError(f"{error}\n{log}") from error
    raise AssertionError("unreachable")


def partner_key(settings: Settings, name: str = "bench-partner") -> str:
    """A partner account made with the project's own handler; returns its API key."""
    from alexandrite.kit.db import Database
    from alexandrite.shop.handlers import create_partner

    async def _make() -> str:
        db = Database(settings.database_url("shop"), pool_size=1)
        try:
            return await create_partner(db, name)
        finally:
            await db.dispose()

    return asyncio.run(_make())


def multipart(model: bytes, boundary: str = "alexandrite-bench-boundary") -> tuple[bytes, str]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"ring.stl\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + model + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def uploaded_order(url: str, key: str, model: bytes) -> str:
    """One order created and given its model through the API; returns its id."""
    headers = {"X-API-Key": key}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        created = client.post("/api/v1/orders", json={"alloy": "gold_585"})
        created.raise_for_status()
        order_id = str(created.json()["id"])
        client.put(f"/api/v1/orders/{order_id}/model",
                   files={"file": ("ring.stl", model, "model/stl")}).raise_for_status()
    return order_id


async def _clone(settings: Settings, template: str, count: int) -> list[str]:
    conn = await asyncpg.connect(plain_dsn(settings.database_url("shop")))
    try:
        async with conn.transaction():
            rows = await conn.fetch(
                "INSERT INTO orders SELECT (jsonb_populate_record(NULL::orders, to_jsonb(o) "
                "|| jsonb_build_object('id', gen_random_uuid()))).* FROM orders o, generate_series(1, $2) "
                "WHERE o.id = $1 RETURNING id", uuid.UUID(template), count)
            ids = [r["id"] for r in rows]
            await conn.execute(
                "INSERT INTO order_history (order_id, seq, status, previous_status, at, by) "
                "SELECT n.id, h.seq, h.status, h.previous_status, h.at, h.by "
                "FROM order_history h, unnest($2::uuid[]) AS n(id) WHERE h.order_id = $1", uuid.UUID(template), ids)
        await conn.execute("ANALYZE orders; ANALYZE order_history")
    finally:
        await conn.close()
    return [str(i) for i in ids]


def clone_orders(settings: Settings, template: str, count: int) -> list[str]:
    """``count`` copies of one order (row and history, new ids) written straight into the shop's
    database: many orders in the template's state (e.g. FILE_UPLOADED, ready to submit) in a second."""
    return asyncio.run(_clone(settings, template, count))


async def _anchor_rows(dsn: str, count: int) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(50):  # the app makes its table at start
            if await conn.fetchval("SELECT to_regclass('anchor_orders')") is not None:
                break
            await asyncio.sleep(0.1)
        rows = await conn.fetch("INSERT INTO anchor_orders (id, owner, alloy, status) SELECT gen_random_uuid(), "
                                "'bench', 'gold_585', 'INITIATED' FROM generate_series(1, $1) RETURNING id", count)
        await conn.execute("ANALYZE anchor_orders")
    finally:
        await conn.close()
    return [str(r["id"]) for r in rows]


def anchor_rows(anchor: AnchorApp, count: int) -> list[str]:
    return asyncio.run(_anchor_rows(anchor.dsn(), count))


def ids_file(directory: Path, name: str, ids: Sequence[str]) -> Path:
    path = directory / f"{name}.ids"
    path.write_text("\n".join(ids) + "\n")
    return path

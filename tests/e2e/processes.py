"""Start the platform as real processes for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from alexandrite.kit.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_block(count: int, low: int = 10_000, high: int = 15_000) -> int:
    """The first of ``count`` consecutive free ports, below the ephemeral range (32768+ here), so that
    no outgoing connection takes one of them between this check and the process binding it."""
    for _ in range(200):
        base = random.randrange(low, high - count)  # noqa: S311 - a port, not a secret
        try:
            with contextlib.ExitStack() as held:
                for port in range(base, base + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports in {low}-{high}")


async def fetch(settings: Settings, service: str, query: str, *args: object) -> list[asyncpg.Record]:
    """Rows of one query on a service's database (tests look at what the processes stored)."""
    conn = await asyncpg.connect(settings.database_url(service).replace("+asyncpg", ""))  # type: ignore[arg-type]
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


@dataclass
class Platform:
    settings: Settings
    env: dict[str, str]
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    worker_metrics_ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def configure(cls, settings: Settings, base_env: dict[str, str], log_dir: Path) -> "Platform":
        ports = {service: free_port() for service in ("shop", "crm", "mes")}
        urls = {service: f"http://127.0.0.1:{port}" for service, port in ports.items()}
        env = dict(base_env)
        for service in ports:
            env[f"ALEX_{service.upper()}_PORT"] = str(ports[service])
            env[f"ALEX_{service.upper()}_URL"] = urls[service]
        env["ALEX_LOG_LEVEL"] = "INFO"
        settings = settings.replace(**{
            **{f"{s}_port": p for s, p in ports.items()}, **{f"{s}_url": u for s, u in urls.items()}})
        log_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings=settings, env=env, log_dir=log_dir)

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen([sys.executable, "-m", "alexandrite", *argv], env=self.env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        return process

    def start_all(self, workers: int) -> None:
        for service in ("shop", "crm", "mes"):
            self.start(service, "serve", service)
        for index in range(workers):
            self.start_worker(f"worker-{index + 1}")
        self.wait_ready()

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        self.worker_metrics_ports[name] = port = free_port()
        return self.start(name, "worker", "--name", name, "--metrics-port", str(port))

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for service in ("shop", "crm", "mes"):
            url = self.settings.service_url(service) + "/health/ready"  # type: ignore[arg-type]
            while True:
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service} not ready; see {self.log_dir}")
                time.sleep(0.2)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def signal(self, name: str, sig: int) -> None:
        """Send a signal without waiting (SIGSTOP / SIGCONT freeze and thaw a process)."""
        os.killpg(self.processes[name].pid, sig)

    def stop_all(self) -> dict[str, int | None]:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        codes = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                codes[name] = process.wait()
        return codes

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.log_dir.glob("*.log"))


@contextmanager
def api_services(settings: Settings, test_env: dict[str, str], label: str) -> Iterator[Platform]:
    """shop, crm and mes served as real processes (no webhook dispatcher), for tests that talk HTTP to
    all three; each run's logs in ``test-artifacts/<label>-<id>``."""
    env = {**test_env, "ALEX_RUN_WEBHOOKS": "false", "ALEX_LOG_LEVEL": "WARNING"}
    running = Platform.configure(settings, env, Path("test-artifacts") / f"{label}-{uuid.uuid4().hex[:6]}")
    try:
        for service in ("shop", "crm", "mes"):
            running.start(service, "serve", service)
        running.wait_ready()
        yield running
    finally:
        running.stop_all()

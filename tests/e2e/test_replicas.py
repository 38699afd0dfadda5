"""`alexandrite up --replicas 2`: HAProxy in front, a rolling restart of every instance under load loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token
from alexandrite.ops.loadbalancer import haproxy_binary
from tests.e2e.processes import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(haproxy_binary("haproxy") is None, reason="haproxy (Debian package) is not installed"),
]


class Running:
    def __init__(self, process: subprocess.Popen[bytes], run_dir: Path, urls: dict[str, str], env: dict[str, str]):
        self.process, self.run_dir, self.urls, self.env = process, run_dir, urls, env

    def status(self) -> dict:
        return json.loads((self.run_dir / "up.json").read_text())

    def log(self) -> str:
        text = (self.run_dir / "up.log").read_text(errors="replace")[-3000:]
        for path in sorted((self.run_dir / "logs").glob("*.log")):
            text += f"\n== {path.name}\n" + path.read_text(errors="replace")[-1500:]
        return text


@pytest.fixture
def replicated(settings: Settings, test_env: dict[str, str], tmp_path: Path) -> Iterator[Running]:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = dict(test_env)
    urls = {}
    for service in ("shop", "crm", "mes"):
        port = free_port()
        env[f"ALEX_{service.upper()}_PORT"] = str(port)
        urls[service] = env[f"ALEX_{service.upper()}_URL"] = f"http://127.0.0.1:{port}"
    env.update({"ALEX_RUN_DIR": str(run_dir), "ALEX_LB_STATS_PORT": str(free_port()),
                "ALEX_INSTANCE_BASE_PORT": str(random.randrange(20000, 40000)), "ALEX_LOG_LEVEL": "WARNING"})
    log = open(run_dir / "up.log", "ab")  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "alexandrite", "up", "--replicas", "2", "--workers", "0",
                                "--no-migrate"], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    running = Running(process, run_dir, urls, env)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "up.json").exists():
            assert process.poll() is None, running.log()
            assert time.monotonic() < deadline, running.log()
            time.sleep(0.3)
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


async def steady_load(running: Running, settings: Settings, stop: asyncio.Event
                      ) -> tuple[Counter[str], list[str], dict[str, str]]:
    """Clients that keep creating and reading orders on shop and reading crm and mes, counting every answer."""
    outcomes: Counter[str] = Counter()
    created: list[str] = []
    staff = {role: issue_token(settings, Principal(role=role, subject=f"lb-{role}", name=role), 3600)
             for role in ("seller", "operator")}
    async with httpx.AsyncClient(timeout=30) as client:
        email = f"lb-{uuid.uuid4().hex[:8]}@example.com"
        signup = await client.post(f"{running.urls['shop']}/api/v1/auth/signup",
                                   json={"email": email, "password": "password-123", "name": "LB"})
        assert signup.status_code == 201, signup.text
        token = (await client.post(f"{running.urls['shop']}/api/v1/auth/token",
                                   json={"email": email, "password": "password-123"})).json()["access_token"]
        customer = {"Authorization": f"Bearer {token}"}

        async def call(name: str, method: str, url: str, expected: int, **kwargs: object) -> httpx.Response | None:
            try:
                response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
            except httpx.HTTPError as error:
                outcomes[f"{name} error {type(error).__name__}"] += 1
                return None
            outcomes[name if response.status_code == expected else f"{name} {response.status_code}"] += 1
            return response

        async def shop_client() -> None:
            while not stop.is_set():
                response = await call("shop create", "POST", f"{running.urls['shop']}/api/v1/orders", 201,
                                      json={"alloy": "silver_925"}, headers=customer)
                if response is not None and response.status_code == 201:
                    created.append(response.json()["id"])
                    await call("shop read", "GET", f"{running.urls['shop']}/api/v1/orders/{created[-1]}", 200,
                               headers=customer)

        async def staff_client(service: str, role: str, path: str) -> None:
            headers = {"Authorization": f"Bearer {staff[role]}"}
            while not stop.is_set():
                await call(f"{service} list", "GET", f"{running.urls[service]}{path}", 200, headers=headers)

        await asyncio.gather(shop_client(), shop_client(), staff_client("crm", "seller", "/api/v1/crm/orders"),
                             staff_client("mes", "operator", "/api/v1/production/orders"))
    return outcomes, created, customer


def restart(running: Running) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alexandrite", "restart", "--timeout", "300"], env=running.env,
                          capture_output=True, text=True, timeout=320)


async def test_rolling_restart_under_load_loses_no_request(replicated: Running, settings: Settings) -> None:
    before = replicated.status()
    assert {s: len(v) for s, v in before["instances"].items()} == {"shop": 2, "crm": 2, "mes": 2}
    old_pids = {i["pid"] for v in before["instances"].values() for i in v}

    stop = asyncio.Event()
    load = asyncio.create_task(steady_load(replicated, settings, stop))
    await asyncio.sleep(2)
    started = time.monotonic()
    result = await asyncio.to_thread(restart, replicated)
    restart_seconds = time.monotonic() - started
    await asyncio.sleep(2)
    stop.set()
    outcomes, created, customer = await load

    assert result.returncode == 0, result.stderr + replicated.log()
    after = replicated.status()
    assert after["generation"] == before["generation"] + 1
    new_pids = {i["pid"] for v in after["instances"].values() for i in v}
    assert len(new_pids) == 6 and not new_pids & old_pids, "every instance was replaced"

    failures = {k: v for k, v in outcomes.items() if k not in ("shop create", "shop read", "crm list", "mes list")}
    assert not failures, f"lost requests: {failures}; answered: {dict(outcomes)}"
    print(f"\nrolling restart of {len(new_pids)} instances took {restart_seconds:.1f} s; "
          f"answered {sum(outcomes.values())} "
          f"requests, failed 0: {dict(outcomes)}")
    assert min(outcomes[k] for k in ("shop create", "shop read", "crm list", "mes list")) > 10, outcomes

    # Every order the clients were told about is there, read through the load balancer.
    async with httpx.AsyncClient(timeout=30) as client:
        shop = replicated.urls["shop"]
        missing = [o for o in created
                   if (await client.get(f"{shop}/api/v1/orders/{o}", headers=customer)).status_code != 200]
    assert not missing, missing[:5]

    # HAProxy exports its own metrics (per backend server) for Prometheus.
    stats = httpx.get(f"http://127.0.0.1:{after['lb_stats_port']}/metrics", timeout=10).text
    assert 'haproxy_server_status{proxy="shop",server="s0"' in stats

    # The post-deploy smoke test passes against the load balancer and fails where nothing listens.
    urls = replicated.urls
    smoke = [sys.executable, "-m", "alexandrite.ops.smoke", "--shop", urls["shop"], "--crm", urls["crm"]]
    passed = subprocess.run([*smoke, "--mes", urls["mes"]], capture_output=True, text=True, timeout=60)
    assert passed.returncode == 0 and "smoke: passed" in passed.stdout, passed.stdout + passed.stderr
    failed = subprocess.run([*smoke, "--mes", f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True,
                            timeout=60)
    assert failed.returncode == 1 and "mes: ConnectError" in failed.stderr


def test_restart_without_a_running_up_fails_clearly(test_env: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "alexandrite", "restart", "--run-dir", str(tmp_path)],
                            env=test_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "no `alexandrite up --replicas` is running" in result.stderr

"""The command line, run as a real process against this run's sandbox."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aio_pika
import httpx
import pytest

from alexandrite.kit.messaging.topology import declare_consumer_queue
from alexandrite.kit.setting_groups import DEFAULT_SECRET
from alexandrite.kit.settings import Settings
from tests.e2e.processes import free_port

pytestmark = pytest.mark.e2e


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alexandrite", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_partner_create_prints_a_working_key_once(test_env: dict[str, str]) -> None:
    name = f"cli-partner-{os.getpid()}-{time.time_ns() % 10**6}"
    created = cli(test_env, "partner", "create", name)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("alx_") and len(key) > 40
    again = cli(test_env, "partner", "create", name)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_bad_command_lines_fail_with_a_message(test_env: dict[str, str]) -> None:
    for args, expected in (
        (("serve", "billing"), "invalid choice"),
        (("simulate", "--orders", "0"), "--orders must be at least 1"),
        (("dlq", "replay"), "--id MESSAGE_ID"),
        (("token", "alice"), "--role"),
    ):
        result = cli(test_env, *args)
        assert result.returncode != 0, args
        assert expected in result.stderr, (args, result.stderr)
    # the published development secret (a test run's own generated ones would pass)
    production = cli({**test_env, "ALEX_ENVIRONMENT": "production", "ALEX_SECRET_KEY": DEFAULT_SECRET}, "migrate")
    assert production.returncode == 2 and "refusing to start in production" in production.stderr


def test_dlq_list_and_replay_from_the_command_line(test_env: dict[str, str], settings: Settings) -> None:
    queue_name = f"test.cli.{time.time_ns() % 10**9}"

    async def dead_letter() -> None:
        connection = await aio_pika.connect(settings.broker.url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await declare_consumer_queue(channel, queue_name, settings.broker.retry_delays_ms)
            await channel.default_exchange.publish(
                aio_pika.Message(b'{"not": "an envelope"}', message_id="cli-dead-1",
                                 headers={"x-error": "bad schema", "event_type": "shop.order.bogus"}),
                routing_key=f"{queue_name}.dlq")

    async def take(name: str) -> list[bytes]:
        connection = await aio_pika.connect(settings.broker.url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(name)
            got = []
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                got.append(message.body)
            return got

    asyncio.run(dead_letter())
    listed = cli(test_env, "dlq", "list", "--queue", queue_name)
    assert listed.returncode == 0, listed.stderr
    assert "cli-dead-1" in listed.stdout and "bad schema" in listed.stdout and "1 dead letter(s)" in listed.stdout
    listed_json = cli(test_env, "dlq", "list", "--queue", queue_name, "--json")
    assert '"not": "an envelope"' in listed_json.stdout  # listing consumed nothing
    replayed = cli(test_env, "dlq", "replay", "--queue", queue_name, "--id", "cli-dead-1")
    assert replayed.returncode == 0 and "replayed 1 message(s)" in replayed.stdout
    assert asyncio.run(take(queue_name)) == [b'{"not": "an envelope"}']
    assert asyncio.run(take(f"{queue_name}.dlq")) == []


def test_up_starts_everything_and_ctrl_c_stops_it(test_env: dict[str, str], tmp_path: Path) -> None:
    ports = {s: free_port() for s in ("shop", "crm", "mes")}
    env = dict(test_env)
    for service, port in ports.items():
        env[f"ALEX_{service.upper()}_PORT"] = str(port)
        env[f"ALEX_{service.upper()}_URL"] = f"http://127.0.0.1:{port}"
    env["ALEX_WORKER_METRICS_PORT"] = str(free_port())
    process = subprocess.Popen([sys.executable, "-m", "alexandrite", "up", "--workers", "1"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        ready: set[str] = set()
        while ready != set(ports) and time.monotonic() < deadline:
            for service, port in ports.items():
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                        ready.add(service)
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        assert ready == set(ports)
        worker = httpx.get(f"http://127.0.0.1:{env['ALEX_WORKER_METRICS_PORT']}/metrics", timeout=5)
        assert worker.status_code == 200
    finally:
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "http://127.0.0.1:" in output and "stopped" in output
    for port in ports.values():
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1)

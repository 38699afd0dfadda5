"""RabbitMQ: the declared topology has quorum queues only, and deploy/rabbitmq/definitions.json is the code's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from alexandrite.kit.settings import Settings
from alexandrite.ops.rabbitmq_definitions import definitions, definitions_json

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "deploy" / "rabbitmq" / "definitions.json"


def broker_queues(vhost: str) -> list[dict]:
    result = subprocess.run(["rabbitmqctl", "list_queues", "-q", "-p", vhost, "name", "type", "durable", "arguments",
                             "--formatter", "json"], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="rabbitmqctl is not installed")
def test_declared_topology_has_only_durable_quorum_queues(settings: Settings) -> None:
    # The session fixture ran setup_topology on this run's vhost.
    vhost = settings.broker.url.rsplit("/", 1)[1]
    queues = broker_queues(vhost)
    declared = {q["name"]: q for q in definitions(settings)["queues"]}
    on_broker = {q["name"]: q for q in queues}
    assert set(declared) <= set(on_broker), set(declared) - set(on_broker)
    classic = [q["name"] for q in queues if q["type"] != "quorum"]
    assert not classic, f"classic queues declared: {classic}"
    assert all(q["durable"] for q in queues)
    for name, queue in declared.items():
        arguments = {key: value for key, _, value in on_broker[name]["arguments"]}
        assert arguments == queue["arguments"], name
    assert all(q["arguments"]["x-queue-type"] == "quorum" for q in declared.values())


def test_committed_definitions_match_the_code() -> None:
    defaults = Settings.model_construct()
    assert COMMITTED.read_text() == definitions_json(defaults), (
        "regenerate: alexandrite rabbitmq definitions --output deploy/rabbitmq/definitions.json")
    exported = json.loads(COMMITTED.read_text())
    assert {e["name"] for e in exported["exchanges"]} == {"alexandrite.events"}
    assert {b["destination"] for b in exported["bindings"]} == {"shop.events", "crm.events", "mes.events"}
    pricing = next(q for q in exported["queues"] if q["name"] == "mes.pricing.jobs")
    assert pricing["arguments"]["x-overflow"] == "reject-publish" and pricing["arguments"]["x-max-length"] > 0


def test_definitions_command_prints_the_same_json(test_env: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "definitions.json"
    result = subprocess.run([sys.executable, "-m", "alexandrite", "rabbitmq", "definitions", "--vhost", "prod",
                             "--output", str(target)], env=test_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    exported = json.loads(target.read_text())
    assert exported["vhosts"] == [{"name": "prod"}] and all(q["vhost"] == "prod" for q in exported["queues"])

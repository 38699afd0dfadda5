"""deploy/prometheus, deploy/grafana and deploy/filebeat: valid, consistent, and about metrics we export."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from contextlib import redirect_stdout

import pytest
import structlog
import yaml
from prometheus_client import REGISTRY, generate_latest

import alexandrite.kit.auth_failures  # noqa: F401
import alexandrite.kit.metrics  # noqa: F401 - registers the metrics
import alexandrite.mes.metrics  # noqa: F401
from alexandrite.kit.logs import configure_logging, scrub
from alexandrite.kit.settings import SERVICES
from tests.observability_config import (
    GRAFANA,
    PROMETHEUS,
    RUNBOOKS,
    alerts,
    dashboards,
    exposed_names,
    metric_names,
    missing_names,
    used_metric_names,
)

ROOT = PROMETHEUS.parents[1]
FILEBEAT = ROOT / "deploy" / "filebeat"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True,  # type: ignore[list-item]
                          timeout=120)


@needs_promtool
def test_promtool_checks_rules_config_and_rule_tests() -> None:
    for args in (["check", "rules", "rules/recording.yml", "rules/alerts.yml"],
                 ["check", "config", "prometheus.yml"],
                 ["test", "rules", "tests/alerts.test.yml"]):
        result = promtool(*args)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


def test_metric_name_extraction() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, status) (rate(alexandrite_x_bucket{service="mes", le="0.5"}[1h])))'
            ' / on(service) group_left foo:bar:rate5m > (14.4 * 0.001) and time() - up offset 5m')
    assert metric_names(expr) == {"alexandrite_x_bucket", "foo:bar:rate5m", "up"}


def test_every_alert_has_a_runbook_and_severity() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names)) >= 10
    for rule in alerts():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["runbook_url"] == f"docs/runbooks/{rule['alert']}.md"
        runbook = RUNBOOKS / f"{rule['alert']}.md"
        assert runbook.exists() and runbook.read_text().startswith(f"# {rule['alert']}\n")
    wanted = {"OrdersPastSLA", "DeadLettersPresent", "QueueWithoutConsumers", "PricingQueueWaitHigh",
              "ErrorBudgetBurn", "LatencyBudgetBurn", "OutboxLag", "ReplicationLag"}
    assert wanted <= set(names)


def test_rules_and_dashboards_use_metrics_the_code_declares() -> None:
    """Fast check against the registry (the end-to-end test scrapes the real processes too)."""
    declared = exposed_names(generate_latest(REGISTRY).decode())
    for family in REGISTRY.collect():  # labelled families without samples yet: their sample names
        for suffix in ("", "_total", "_bucket", "_count", "_sum"):
            declared.add(family.name + suffix)
    assert not missing_names(used_metric_names(), declared)


def test_dashboards_and_provisioning_are_valid() -> None:
    boards = dashboards()
    assert set(boards) == {"order-pipeline.json", "service-red.json", "infrastructure-use.json"}
    uids = [board["uid"] for board in boards.values()]
    assert len(set(uids)) == 3
    for board in boards.values():
        assert board["panels"] and all(panel["targets"] for panel in board["panels"])
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids))
    red_vars = {v["name"] for v in boards["service-red.json"]["templating"]["list"]}
    assert "service" in red_vars
    for path in (GRAFANA / "provisioning").rglob("*.yml"):
        assert yaml.safe_load(path.read_text())["apiVersion"] == 1


def _log_line(**fields: object) -> dict:
    out = io.StringIO()
    with redirect_stdout(out):
        configure_logging("shop")
        structlog.get_logger("test").info("order_created", **fields)
    structlog.reset_defaults()
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_log_lines_carry_the_ecs_fields_filebeat_maps() -> None:
    line = _log_line(order_id="0f5f94f0-6c3c-4018-b40f-eb535a87bccd", email="ada@example.test",
                     detail="sent to ada@example.test with Bearer abcdefghijklmnopqrstuvwxyz")
    assert {"@timestamp", "log.level", "message", "ecs.version", "service.name", "labels.order_id"} <= set(line)
    assert line["service.name"] == "shop" and line["email"] == "[redacted]"
    assert "ada@" not in json.dumps(line) and "abcdefghijklmnop" not in json.dumps(line)

    config = yaml.safe_load((FILEBEAT / "filebeat.yml").read_text())
    indices = config["output.elasticsearch"]["indices"]
    routed = {rule["when.equals"]["service.name"]: rule["index"] for rule in indices}
    assert set(routed) == set(SERVICES)
    for inp in config["filebeat.inputs"]:
        ndjson = next(p["ndjson"] for p in inp["parsers"] if "ndjson" in p)
        assert ndjson["expand_keys"] is True and ndjson["message_key"] == "message"

    policy = json.loads((FILEBEAT / "ilm-policy.json").read_text())["policy"]
    assert policy["phases"]["delete"]["actions"] == {"delete": {}}
    for index in routed.values():
        template = json.loads((FILEBEAT / "index-templates" / f"{index}.json").read_text())
        assert any(index.startswith(p.rstrip("*")) for p in template["index_patterns"])
        assert template["template"]["settings"]["index.lifecycle.name"] == "alexandrite-logs"
        mapped = template["template"]["mappings"]["properties"]
        for field in ("@timestamp", "message", "service.name", "log.level", "trace.id", "span.id",
                      "labels.order_id"):
            node = mapped
            for part in field.split(".")[:-1]:
                node = node[part]["properties"]
            assert field.split(".")[-1] in node, f"{index} maps no {field}"


def test_scrub_removes_secrets_from_any_value() -> None:
    assert scrub("login ada.lovelace+x@example.co.uk failed") == "login [redacted] failed"
    assert scrub("Authorization: Bearer eyJzdWIiOiJhIn0.c2lnbmF0dXJlLXZhbHVl") == "Authorization: [redacted]"
    assert scrub("key alx_" + "a" * 40) == "key [redacted]"
    assert scrub("service_started on port 8001") == "service_started on port 8001"

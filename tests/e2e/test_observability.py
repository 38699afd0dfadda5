"""End to end, real processes: what /metrics, traces, logs and delay notices say matches what happened.

One platform (three APIs, two pricing workers) runs with tracing exported to files, a tiny SLA for
PRICE_CALCULATED and a local SMTP sink. A simulation drives orders to CLOSED; then every process is
scraped and its counters and histograms are compared with the order histories in the databases.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from alexandrite.devtools.simulate import ring_model, simulate
from alexandrite.devtools.smtp_sink import SmtpSink
from alexandrite.kit.messaging.topology import PRICING_QUEUE, events_queue
from alexandrite.kit.settings import SERVICES, Settings
from tests.e2e.processes import Platform, fetch, free_port
from tests.observability_config import exposed_names, missing_names, used_metric_names

pytestmark = pytest.mark.e2e
ORDERS = 16
SLA_SECONDS = 4.0
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
Samples = dict[tuple[str, str, frozenset[tuple[str, str]]], float]


class Observed:
    def __init__(self, platform: Platform, sink: SmtpSink, trace_dir: Path) -> None:
        self.platform, self.sink, self.trace_dir = platform, sink, trace_dir
        self.secrets: list[str] = []  # values no log line may contain
        self.sim_orders: list[str] = []

    @property
    def settings(self) -> Settings:
        return self.platform.settings

    def endpoints(self) -> dict[str, str]:
        urls = {service: self.settings.service_url(service) + "/metrics" for service in SERVICES}
        for name, port in self.platform.worker_metrics_ports.items():
            urls[name] = f"http://127.0.0.1:{port}/metrics"
        return urls

    async def scrape(self) -> tuple[Samples, dict[str, str]]:
        """Every sample of every process, keyed by (process, sample name, labels); and the raw texts."""
        samples: Samples = {}
        texts = {}
        token = {"Authorization": f"Bearer {self.settings.obs.metrics_token}"}  # workers' side ports ignore it
        async with httpx.AsyncClient(timeout=10, headers=token) as client:
            for process, url in self.endpoints().items():
                response = await client.get(url)
                assert response.status_code == 200, url
                texts[process] = response.text
                for family in text_string_to_metric_families(response.text):
                    for sample in family.samples:
                        samples[(process, sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples, texts


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (_, n, ls), v in samples.items() if n == name and wanted <= ls)


async def history_counts(settings: Settings) -> dict[str, tuple[Counter[str], Counter[str]]]:
    """Per service: (transitions into each status, transitions out of each status) in its history."""
    counts = {}
    for service in SERVICES:
        into = await fetch(settings, service, "SELECT status, count(*) AS n FROM order_history GROUP BY status")
        out = await fetch(settings, service, "SELECT previous_status AS status, count(*) AS n FROM order_history "
                          "WHERE previous_status IS NOT NULL GROUP BY previous_status")
        counts[service] = (Counter({r["status"]: r["n"] for r in into}), Counter({r["status"]: r["n"] for r in out}))
    return counts


async def quiescent(settings: Settings, timeout: float = 60) -> None:
    """Outboxes drained and every work queue empty: nothing is still on its way."""
    deadline = time.monotonic() + timeout
    connection = await aio_pika.connect(settings.broker.url)
    async with connection:
        channel = await connection.channel()
        while True:
            queued = 0
            for queue in [events_queue(s) for s in SERVICES] + [PRICING_QUEUE]:
                declared = await channel.declare_queue(queue, passive=True)
                queued += declared.declaration_result.message_count or 0
            left = sum([(await fetch(settings, s, "SELECT count(*) AS n FROM outbox"))[0]["n"] for s in SERVICES])
            if queued == 0 and left == 0:
                await asyncio.sleep(0.5)  # messages in flight (unacked) are not counted: let them finish
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not quiescent: {queued} queued, {left} in outboxes")
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def observed(settings: Settings, test_env: dict[str, str]) -> Iterator[Observed]:
    log_dir = Path("test-artifacts") / f"obs-{uuid.uuid4().hex[:6]}"
    smtp_port = free_port()
    env = {
        **test_env,
        "ALEX_TRACING": "file",
        "ALEX_TRACE_DIR": str((log_dir / "traces").resolve()),
        "ALEX_SLA_SECONDS": json.dumps({"PRICE_CALCULATED": SLA_SECONDS}),
        "ALEX_WATCHDOG_INTERVAL_SECONDS": "0.5",
        "ALEX_NOTIFIER_INTERVAL_SECONDS": "0.3",
        "ALEX_STATUS_GAUGE_INTERVAL_SECONDS": "0.5",
        "ALEX_SMTP_PORT": str(smtp_port),
    }
    platform = Platform.configure(settings, env, log_dir)
    with SmtpSink(port=smtp_port) as sink:
        try:
            platform.start_all(workers=2)
            yield Observed(platform, sink, log_dir / "traces")
        finally:
            platform.stop_all()


async def test_metrics_of_every_process_match_the_simulation(observed: Observed) -> None:
    settings = observed.settings
    await quiescent(settings)
    before, _ = await observed.scrape()
    db_before = await history_counts(settings)

    outcomes, _ = await simulate(settings, ORDERS, concurrency=8, close=True, timeout=120, seed=11)
    assert not [o.error for o in outcomes if o.error]
    observed.sim_orders = [o.order_id for o in outcomes]
    ids = [uuid.UUID(o) for o in observed.sim_orders]
    for _ in range(100):  # production hears of CLOSED last
        rows = await fetch(settings, "mes", "SELECT count(*) AS n FROM production_orders "
                           "WHERE id = ANY($1) AND status = 'CLOSED'", ids)
        if rows[0]["n"] == ORDERS:
            break
        await asyncio.sleep(0.1)
    await quiescent(settings)
    after, texts = await observed.scrape()
    db_after = await history_counts(settings)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # Every transition each service recorded was counted once, and its time in the status it left observed.
    for service in SERVICES:
        into = db_after[service][0] - db_before[service][0]
        out = db_after[service][1] - db_before[service][1]
        assert into["CLOSED"] == ORDERS and into["PRICE_CALCULATED"] == ORDERS, service
        for status in set(into) | set(out):
            assert delta("alexandrite_order_transitions_total", service=service, status=status) == into[status], (
                service, status)
            assert delta("alexandrite_order_time_in_status_seconds_count", service=service,
                         status=status) == out[status], (service, status)
        assert delta("alexandrite_order_duration_seconds_count", service=service, outcome="CLOSED") == ORDERS

    # Pricing: each order priced once, by the workers, each job's queue wait observed once.
    assert delta("alexandrite_pricing_duration_seconds_count", outcome="priced") == ORDERS
    assert delta("alexandrite_pricing_queue_wait_seconds_count") == ORDERS
    assert delta("alexandrite_messages_processed_total", queue=PRICING_QUEUE, outcome="priced") == ORDERS
    assert delta("alexandrite_message_processing_seconds_count", queue=PRICING_QUEUE) == ORDERS
    # Consumers: mes took each order's submission once (applied, or parked until its predecessor came).
    assert sum(delta("alexandrite_messages_processed_total", queue="mes.events", type="shop.order.submitted",
                     outcome=outcome) for outcome in ("ok", "deferred")) == ORDERS
    assert delta("alexandrite_messages_processed_total", queue="crm.events",
                 type="mes.order.price_calculated") == ORDERS
    assert delta("alexandrite_message_failures_total") == 0
    # HTTP RED by route template; no raw id in any label of any process.
    assert delta("alexandrite_http_requests_total", service="shop", method="POST", route="/api/v1/orders",
                 status="201") == ORDERS
    assert delta("alexandrite_http_requests_total", service="shop", method="POST",
                 route="/api/v1/orders/{order_id}/submit", status="202") == ORDERS
    assert delta("alexandrite_http_request_duration_seconds_count", service="crm", method="POST",
                 route="/api/v1/crm/orders/{order_id}/approve") == ORDERS
    assert not [key for key in after if any(UUID.search(v) for _, v in key[2])]
    # Outboxes: everything published, nothing waiting.
    shop_events = sum(n for status, n in (db_after["shop"][0] - db_before["shop"][0]).items()
                      if status in ("INITIATED", "FILE_UPLOADED", "SUBMITTED"))
    assert delta("alexandrite_outbox_published_total", service="shop") == shop_events
    for _ in range(40):  # the relays export their backlog every 5 seconds
        samples, _ = await observed.scrape()
        if total(samples, "alexandrite_outbox_backlog") == 0:
            break
        await asyncio.sleep(0.25)
    assert total(samples, "alexandrite_outbox_backlog") == 0
    assert total(samples, "alexandrite_outbox_oldest_age_seconds") == 0

    # Orders in each status: the gauge is what the database says.
    live = {r["status"]: r["n"] for r in await fetch(
        settings, "mes", "SELECT status, count(*) AS n FROM production_orders "
        "WHERE status NOT IN ('CLOSED', 'CANCELLED') GROUP BY status")}
    for _ in range(50):
        samples, _ = await observed.scrape()
        gauge = {dict(ls)["status"]: v for (p, n, ls), v in samples.items()
                 if p == "mes" and n == "alexandrite_orders_in_status"}
        if all(gauge.get(status, 0) == live.get(status, 0) for status in gauge) and gauge:
            break
        await asyncio.sleep(0.2)
    assert {s: v for s, v in gauge.items() if v} == {s: float(n) for s, n in live.items()}

    # Every metric the alert rules and dashboards use is exported by a process (or a listed exporter).
    exported = set().union(*(exposed_names(text) for text in texts.values()))
    assert not missing_names(used_metric_names(), exported)


async def test_a_late_order_gets_exactly_one_notice(observed: Observed) -> None:
    settings = observed.settings
    shop = settings.net.shop_url
    email, password = f"waiting-{uuid.uuid4().hex[:8]}@example.test", uuid.uuid4().hex
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.post(f"{shop}/api/v1/auth/signup", json={
            "email": email, "password": password, "name": "Grace Waiting"})).status_code == 201
        token = (await client.post(f"{shop}/api/v1/auth/token", json={"email": email, "password": password})
                 ).json()["access_token"]
        observed.secrets += [email, password, token]
        auth = {"Authorization": f"Bearer {token}"}
        import random

        model = ring_model(random.Random(3))
        late = []
        for _ in range(2):
            order = (await client.post(f"{shop}/api/v1/orders", json={"alloy": "silver_925"}, headers=auth)).json()
            await client.put(f"{shop}/api/v1/orders/{order['id']}/model", headers=auth,
                             files={"file": ("ring.stl", model, "model/stl")})
            assert (await client.post(f"{shop}/api/v1/orders/{order['id']}/submit", headers=auth)).status_code == 202
            late.append(order["id"])

        # Nobody approves: after the SLA the watchdog reports them and the shop mails the customer.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            mails = [m for m in observed.sink.messages if m["X-Alexandrite-Order"] in late]
            if len(mails) >= len(late):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(3)  # six more watchdog scans and notifier rounds: still one notice each
        mails = [m for m in observed.sink.messages if m["X-Alexandrite-Order"] in late]
        assert sorted(m["X-Alexandrite-Order"] for m in mails) == sorted(late)
        assert all(m["To"] == email and m["X-Alexandrite-Notice"] == "delay:PRICE_CALCULATED" for m in mails)

        view = (await client.get(f"{shop}/api/v1/orders/{late[0]}", headers=auth)).json()
        assert view["status"] == "PRICE_CALCULATED"
        assert view["delay"]["stage"] == "PRICE_CALCULATED" and view["delay"]["sla_seconds"] == SLA_SECONDS
        assert view["delay"]["new_eta"] > view["delay"]["detected_at"]

        samples, _ = await observed.scrape()
        assert total(samples, "alexandrite_orders_past_sla", stage="PRICE_CALCULATED") >= len(late)
        assert total(samples, "alexandrite_notifications_sent_total", kind="delay") >= len(late)

    # A second watchdog (the command) finds nothing new to report for these orders.
    env = {**observed.platform.env}
    result = subprocess.run([sys.executable, "-m", "alexandrite", "watchdog", "--once"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "new delay(s) reported" in result.stdout and not any(o in result.stdout for o in late)


def spans(trace_dir: Path) -> list[dict[str, Any]]:
    found = []
    for path in trace_dir.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                found.append(json.loads(line))
    return found


async def test_one_trace_runs_through_every_service(observed: Observed) -> None:
    order = observed.sim_orders[0]
    every = spans(observed.trace_dir)
    submitted = [s for s in every if s["attributes"].get("alexandrite.order_id") == order
                 and s["attributes"].get("alexandrite.message_type") == "shop.order.submitted"]
    assert submitted, f"no consumer span for {order} in {observed.trace_dir}"
    trace_id = submitted[0]["context"]["trace_id"]
    trace = [s for s in every if s["context"]["trace_id"] == trace_id]
    services = {s["resource"]["attributes"]["service.name"] for s in trace}
    assert {"shop", "mes", "mes-worker", "crm"} <= services
    names = {s["name"] for s in trace}
    assert any(s["kind"] == "SpanKind.SERVER" and s["attributes"].get("http.route") == "/api/v1/orders/{order_id}/submit"
               for s in trace), names
    assert "mes.pricing.jobs process" in names and "crm.events process" in names
    assert any(s["attributes"].get("db.system") in ("postgresql", "postgres") for s in trace), names
    # Each span's parent is in the trace: one tree from the customer's request to the CRM.
    ids = {s["context"]["span_id"] for s in trace}
    assert all(s["parent_id"] in ids for s in trace if s["parent_id"])


async def test_logs_are_ecs_json_without_secrets(observed: Observed) -> None:
    settings = observed.settings
    lines = []
    for path in observed.platform.log_dir.glob("*.log"):
        lines += [(path.name, line) for line in path.read_text(errors="replace").splitlines() if line.strip()]
    assert len(lines) > 50
    parsed = []
    for name, line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{name}: not a JSON line: {line[:300]}") from None
    for record in parsed:
        assert {"@timestamp", "log.level", "message", "ecs.version", "service.name"} <= set(record), record
    assert {r["service.name"] for r in parsed} == set(SERVICES)
    assert any("trace.id" in r and "span.id" in r and "labels.order_id" in r for r in parsed)
    text = "\n".join(line for _, line in lines)
    assert not EMAIL.findall(text)
    for secret in [settings.auth.secret_key, settings.auth.service_token, settings.auth.carrier_webhook_secret, *observed.secrets]:
        assert secret not in text
    assert "Bearer " not in text and "alx_" not in text

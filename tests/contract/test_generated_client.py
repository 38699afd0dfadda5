"""A partner's whole order through a client generated from the shop's OpenAPI (openapi-python-client), against
the real platform (shop, CRM, MES and a pricing worker as processes): no raw HTTP, every answer parsed by the
generated models, errors included."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from alexandrite.kit.settings import Settings
from alexandrite.models3d.writers import to_binary_stl
from tests.e2e.processes import Platform
from tests.fixtures.corpus import ring_with_volume

pytestmark = pytest.mark.e2e
PACKAGE = "alexandrite_shop_client"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PRICING_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def platform(settings: Settings, test_env: dict[str, str]) -> Iterator[Platform]:
    env = {**test_env, "ALEX_RUN_WEBHOOKS": "false", "ALEX_LOG_LEVEL": "WARNING"}
    running = Platform.configure(settings, env, Path("test-artifacts") / f"contract-{uuid.uuid4().hex[:6]}")
    try:
        running.start_all(workers=1)
        yield running
    finally:
        running.stop_all()


@pytest.fixture(scope="module")
def generated(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The client as a partner makes it: generated from the running shop's /openapi.json, then imported."""
    root = tmp_path_factory.mktemp("generated-client")
    config = root / "config.yml"
    config.write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    url = platform.settings.service_url("shop") + "/openapi.json"  # type: ignore[arg-type]
    result = subprocess.run([str(GENERATOR), "generate", "--url", url, "--meta", "none", "--config", str(config),
                             "--output-path", str(root / PACKAGE)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout, result.stdout  # every path and schema was understood
    sys.path.insert(0, str(root))
    try:
        def load(name: str) -> ModuleType:
            return importlib.import_module(f"{PACKAGE}.{name}")

        yield SimpleNamespace(
            client=load("client"), models=load("models"), types=load("types"),
            create_order=load("api.shop.create_order"), upload_model=load("api.shop.upload_model"),
            submit_order=load("api.shop.submit_order"), get_order=load("api.shop.get_order"),
            list_orders=load("api.shop.list_orders"), cancel_order=load("api.shop.cancel_order"),
        )
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _partner_key(platform: Platform) -> str:
    out = subprocess.run([sys.executable, "-m", "alexandrite", "partner", "create",
                          f"contract-{uuid.uuid4().hex[:6]}"], env=platform.env, capture_output=True, text=True,
                         timeout=60, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_a_partner_order_through_the_generated_client(platform: Platform, generated: SimpleNamespace) -> None:
    api, models = generated, generated.models
    shop = platform.settings.service_url("shop")  # type: ignore[arg-type]
    partner = api.client.AuthenticatedClient(base_url=shop, token=_partner_key(platform), prefix="",
                                             auth_header_name="X-API-Key", raise_on_unexpected_status=True)

    # create, with an Idempotency-Key; the same key again gives the same order, marked as a replay
    key = f"contract-{uuid.uuid4()}"
    created = api.create_order.sync_detailed(client=partner, body=models.CreateOrder(alloy=models.Alloy.GOLD_585),
                                             idempotency_key=key)
    assert created.status_code == 201 and isinstance(created.parsed, models.OrderOut)
    order = created.parsed
    assert order.status == models.OrderStatus.INITIATED and order.alloy == models.Alloy.GOLD_585
    assert order.history[0].status == models.OrderStatus.INITIATED and order.model is None
    again = api.create_order.sync_detailed(client=partner, body=models.CreateOrder(alloy=models.Alloy.GOLD_585),
                                           idempotency_key=key)
    assert again.status_code == 201 and again.parsed.id == order.id
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in created.headers

    # upload a model from the test corpus: a file part with a filename
    ring = ring_with_volume()
    upload = models.BodyUploadModel(file=api.types.File(payload=io.BytesIO(to_binary_stl(ring.triangles)),
                                                        file_name="ring.stl", mime_type="model/stl"))
    uploaded = api.upload_model.sync_detailed(order_id=order.id, client=partner, body=upload)
    assert uploaded.status_code == 200, uploaded.content[:300]
    assert uploaded.parsed.status == models.OrderStatus.FILE_UPLOADED
    facts = uploaded.parsed.model
    assert isinstance(facts, models.ModelFacts) and facts.format_ == "stl_binary" and facts.filename == "ring.stl"
    assert facts.triangles == len(ring.triangles) and facts.watertight is True

    # submit, then poll until priced
    submitted = api.submit_order.sync_detailed(order_id=order.id, client=partner)
    assert submitted.status_code == 202 and submitted.parsed.status == models.OrderStatus.SUBMITTED
    deadline = time.monotonic() + PRICING_TIMEOUT
    seen = set()
    while True:
        current = api.get_order.sync(order_id=order.id, client=partner)
        assert isinstance(current, models.OrderOut)
        seen.add(current.status)
        if current.status == models.OrderStatus.PRICE_CALCULATING and current.progress:
            assert isinstance(current.progress, models.PricingProgress)
        if current.status in (models.OrderStatus.PRICE_CALCULATED, models.OrderStatus.PRICE_CALCULATION_FAILED):
            break
        assert time.monotonic() < deadline, f"not priced in {PRICING_TIMEOUT} s: {current.status}"
        time.sleep(0.2)
    assert current.status == models.OrderStatus.PRICE_CALCULATED, current.failure
    quote = current.quote
    assert isinstance(quote, models.Quote) and quote.currency == "EUR" and quote.total > 0
    assert quote.volume_mm3 == pytest.approx(ring.volume_mm3, rel=0.01)
    assert quote.breakdown["metal"] > 0
    assert [h.status for h in current.history][:4] == [
        models.OrderStatus.INITIATED, models.OrderStatus.FILE_UPLOADED, models.OrderStatus.SUBMITTED,
        models.OrderStatus.PRICE_CALCULATING]

    # list: the order is there, with its total
    page = api.list_orders.sync(client=partner, limit=50)
    assert isinstance(page, models.OrderPage)
    listed = {item.id: item for item in page.items}
    assert listed[order.id].status == models.OrderStatus.PRICE_CALCULATED and listed[order.id].total == quote.total

    # cancel
    cancelled = api.cancel_order.sync_detailed(order_id=order.id, client=partner,
                                               body=models.CancelOrder(reason="contract test"))
    assert cancelled.status_code == 200 and cancelled.parsed.status == models.OrderStatus.CANCELLED

    # one of each error, parsed into the generated Error model
    def error(response: object, status: int, code: str) -> None:
        assert response.status_code == status, response.content[:300]  # type: ignore[attr-defined]
        parsed = response.parsed  # type: ignore[attr-defined]
        assert isinstance(parsed, models.Error), type(parsed)
        assert parsed.error.code == models.ErrorCode(code) and parsed.error.message

    stranger = api.client.AuthenticatedClient(base_url=shop, token="not-a-key", prefix="",
                                              auth_header_name="X-API-Key")
    error(api.create_order.sync_detailed(client=stranger, body=models.CreateOrder(alloy=models.Alloy.SILVER_925)),
          401, "invalid_api_key")
    error(api.get_order.sync_detailed(order_id=uuid.uuid4(), client=partner), 404, "not_found")
    invalid = api.list_orders.sync_detailed(client=partner, limit=500)
    error(invalid, 422, "invalid_request")
    assert invalid.parsed.error.details[0]["loc"] == ["query", "limit"]
    error(api.submit_order.sync_detailed(order_id=order.id, client=partner), 409, "illegal_transition")
    fresh = api.create_order.sync(client=partner, body=models.CreateOrder(alloy=models.Alloy.SILVER_925))
    error(api.submit_order.sync_detailed(order_id=fresh.id, client=partner), 409, "model_required")
    garbage = models.BodyUploadModel(file=api.types.File(payload=io.BytesIO(b"solid nothing\n"), file_name="x.stl"))
    rejected = api.upload_model.sync_detailed(order_id=fresh.id, client=partner, body=garbage)
    assert rejected.status_code == 422 and rejected.parsed.error.code in models.ErrorCode


@pytest.mark.parametrize("service", ["shop", "crm", "mes"])
def test_every_committed_document_makes_a_clean_client(service: str, tmp_path: Path) -> None:
    """The generator understands every path and schema of each service (no skipped endpoint or model)."""
    document = Path(__file__).resolve().parents[2] / "contracts" / "openapi" / f"{service}.json"
    config = tmp_path / "config.yml"
    config.write_text(f"package_name_override: {service}_client\npost_hooks: []\n")
    result = subprocess.run([str(GENERATOR), "generate", "--path", str(document), "--meta", "none", "--config",
                             str(config), "--output-path", str(tmp_path / f"{service}_client")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "Warning" not in result.stdout, result.stdout + result.stderr
    models = (tmp_path / f"{service}_client" / "models").glob("*.py")
    assert {"error.py", "error_code.py", "order_status.py", "quote.py", "model_facts.py"} <= {m.name for m in models}

"""The committed contract documents are what the code generates, valid, not breaking the released ones,
and they describe the JSON the code really sends (events on the bus, partner webhook bodies)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from alexandrite.cli import main
from alexandrite.contracts.events import OrderDelayed, StatusChanged, status_envelope
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.devtools.contract_diff import breaking_changes
from alexandrite.devtools.contract_docs import RELEASED, generate, load, stale
from alexandrite.kit.settings import Settings
from alexandrite.shop.asyncapi import build_asyncapi
from alexandrite.shop.webhooks.deliveries import status_payload

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
ASYNCAPI_SCHEMA = ROOT / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0-without-$id.json"
DOCUMENTS = generate(Settings())


def test_committed_documents_are_what_the_code_generates() -> None:
    assert stale(CONTRACTS, DOCUMENTS) == [], "run: alexandrite contract export (and commit the diff)"
    assert set(DOCUMENTS) == {"openapi/shop.json", "openapi/crm.json", "openapi/mes.json", "asyncapi/events.json"}


def test_the_current_contract_breaks_nothing_released() -> None:
    for name, document in DOCUMENTS.items():
        released = CONTRACTS / RELEASED / name
        assert released.is_file(), name
        assert breaking_changes(load(released), document) == [], name


def test_the_cli_checks_and_compares(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "check", "--dir", str(CONTRACTS)]) == 0
    assert main(["contract", "breaking", str(CONTRACTS / RELEASED), str(CONTRACTS)]) == 0
    assert "no breaking changes" in capsys.readouterr().out


def test_the_cli_fails_on_a_breaking_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = json.loads((CONTRACTS / "openapi" / "shop.json").read_text())
    del shop["components"]["schemas"]["OrderOut"]["properties"]["quote"]
    (tmp_path / "shop.json").write_text(json.dumps(shop))
    assert main(["contract", "breaking", str(CONTRACTS / "openapi" / "shop.json"), str(tmp_path / "shop.json")]) == 1
    assert "OrderOut" not in capsys.readouterr().out  # reported where clients meet it: the operation
    assert main(["contract", "export", "--dir", str(tmp_path / "out")]) == 0
    assert stale(tmp_path / "out", DOCUMENTS) == []


def test_asyncapi_is_a_valid_3_0_document() -> None:
    assert ASYNCAPI_SCHEMA.is_file(), "npm ci installs @asyncapi/specs (scripts/setup.sh)"
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(DOCUMENTS["asyncapi/events.json"]))
    assert errors == [], [e.message[:200] for e in errors[:5]]
    broken = build_asyncapi()
    broken["operations"]["deliverToPartner"]["action"] = "push"
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def _validator(name: str) -> jsonschema.Draft202012Validator:
    document = DOCUMENTS["asyncapi/events.json"]
    registry: Registry[Any] = Registry().with_resource(
        "urn:events", Resource.from_contents(document, default_specification=DRAFT202012))
    return jsonschema.Draft202012Validator({"$ref": f"urn:events#/components/schemas/{name}"}, registry=registry,
                                           format_checker=jsonschema.FormatChecker())


def test_bus_events_and_webhook_bodies_match_their_description() -> None:
    order_id = uuid.uuid4()
    change = StatusChanged(status=OrderStatus.PRICE_CALCULATED, previous_status=OrderStatus.PRICE_CALCULATING,
                           actor="worker-1", quote={"total": 412.85, "currency": "EUR"})
    envelope = status_envelope(producer="mes", order_id=order_id, seq=5, change=change)
    _validator("StatusChangedEnvelope").validate(json.loads(envelope.model_dump_json()))
    body = {"delivery_id": str(uuid.uuid4()), **status_payload(order_id, 5, change)}  # as the dispatcher sends it
    _validator("WebhookStatusChanged").validate(json.loads(json.dumps(body)))
    now = datetime.now(UTC)
    delay = OrderDelayed(stage="PACKAGING", status=OrderStatus.PACKAGING, since=now, sla_seconds=3600,
                         detected_at=now, new_eta=now, owner_kind="partner")
    delayed = {"delivery_id": str(uuid.uuid4()), "type": "order.delayed", "order_id": str(order_id),
               **delay.model_dump(mode="json", exclude_none=True, exclude={"owner_kind"})}  # shop/delays.py
    _validator("WebhookOrderDelayed").validate(delayed)
    with pytest.raises(jsonschema.ValidationError):
        _validator("WebhookStatusChanged").validate({**body, "status": "PRICED"})
    with pytest.raises(jsonschema.ValidationError):
        _validator("WebhookStatusChanged").validate({k: v for k, v in body.items() if k != "delivery_id"})


def test_every_status_change_has_a_channel() -> None:
    addresses = {c["address"] for c in DOCUMENTS["asyncapi/events.json"]["channels"].values()}
    for status in OrderStatus:
        assert any(a.endswith(f".order.{status.value.lower()}") for a in addresses), status
    assert {"shop.order.submitted", "mes.order.price_calculated", "crm.order.manufacturing_approved",
            "mes.order.delayed", "{webhookUrl}"} <= addresses

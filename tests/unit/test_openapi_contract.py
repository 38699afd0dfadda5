"""The services' public OpenAPI documents describe what the services do (no servers needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from alexandrite.contracts.failure_codes import FAILURE_CODES, MODEL_FILE_CODES, PRICING_CHECK_CODES
from alexandrite.kit.settings import Settings

SRC = Path(__file__).resolve().parents[2] / "src" / "alexandrite"
# HTML pages answer with a page, not the JSON error body: their codes are not part of the API.
PAGE_MODULES = ("pages.py", "ring_pages.py", "preview.py")


def _documents() -> dict[str, dict[str, Any]]:
    from alexandrite.crm.app import create_app as crm
    from alexandrite.mes.app import create_app as mes
    from alexandrite.shop.app import create_app as shop

    settings = Settings()
    return {name: factory(settings).openapi() for name, factory in (("shop", shop), ("crm", crm), ("mes", mes))}


DOCUMENTS = _documents()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]


@pytest.mark.parametrize("service", DOCUMENTS)
def test_documents_are_valid_openapi(service: str) -> None:
    validate(DOCUMENTS[service])


@pytest.mark.parametrize("service", DOCUMENTS)
def test_every_error_answer_is_the_error_body(service: str) -> None:
    document = DOCUMENTS[service]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, method, op in _operations(document):
        errors = {s: r for s, r in op["responses"].items() if int(s) >= 400}
        assert errors, (method, path)
        for status, answer in errors.items():
            assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, (
                method, path, status)
        if path.startswith("/api/"):
            assert {"429", "503"} <= set(errors), (method, path)
            assert "Retry-After" in errors["429"]["headers"] and "RateLimit-Reset" in errors["429"]["headers"]
        if "{" in path:
            assert "404" in errors and "422" in errors, (method, path)


@pytest.mark.parametrize("service", DOCUMENTS)
def test_security_on_every_route_that_needs_it(service: str) -> None:
    document = DOCUMENTS[service]
    schemes = document["components"]["securitySchemes"]
    assert schemes["BearerAuth"] == {**schemes["BearerAuth"], "type": "http", "scheme": "bearer"}
    for path, method, op in _operations(document):
        public = path in ("/api/v1/auth/signup", "/api/v1/auth/token", "/api/v1/crm/webhooks/carrier")
        if public:
            assert op["security"] == [], (method, path)
        else:
            assert {"BearerAuth": []} in op["security"] and "401" in op["responses"], (method, path)


def test_partners_authenticate_with_their_api_key() -> None:
    shop = DOCUMENTS["shop"]
    assert shop["components"]["securitySchemes"]["ApiKeyAuth"] == {
        **shop["components"]["securitySchemes"]["ApiKeyAuth"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    for path in ("/api/v1/orders", "/api/v1/webhook"):
        for op in shop["paths"][path].values():
            assert {"ApiKeyAuth": []} in op["security"]
    assert "ApiKeyAuth" not in DOCUMENTS["crm"]["components"]["securitySchemes"]


def test_internal_routes_and_probes_are_not_public() -> None:
    for document in DOCUMENTS.values():
        assert not [p for p in document["paths"] if p.startswith(("/internal", "/health", "/metrics"))]


def test_the_model_upload_is_a_binary_file_part() -> None:
    shop = DOCUMENTS["shop"]
    body = shop["paths"]["/api/v1/orders/{order_id}/model"]["put"]["requestBody"]["content"]["multipart/form-data"]
    ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
    assert shop["components"]["schemas"][ref]["properties"]["file"] == {
        "type": "string", "format": "binary", "title": "File"}
    assert "contentMediaType" not in str(shop)


def test_response_headers_of_the_order_routes() -> None:
    paths = DOCUMENTS["shop"]["paths"]
    assert "Idempotent-Replayed" in paths["/api/v1/orders"]["post"]["responses"]["201"]["headers"]
    assert "Pricing-ETA-Seconds" in paths["/api/v1/orders/{order_id}/submit"]["post"]["responses"]["202"]["headers"]
    assert "RateLimit-Remaining" in paths["/api/v1/orders/{order_id}"]["get"]["responses"]["200"]["headers"]
    upload = paths["/api/v1/orders/{order_id}/model"]["put"]["responses"]
    assert "uploads_busy" in upload["503"]["description"] and "Retry-After" in upload["503"]["headers"]


@pytest.mark.parametrize("service", DOCUMENTS)
def test_status_alloy_and_failure_codes_are_enums(service: str) -> None:
    schemas = DOCUMENTS[service]["components"]["schemas"]
    assert len(schemas["OrderStatus"]["enum"]) == 13
    assert schemas["Alloy"]["enum"] == sorted(["gold_585", "gold_750", "silver_925", "platinum_950"])
    assert schemas["FailureCode"]["enum"] == sorted(FAILURE_CODES)
    out = schemas["OrderOut"]["properties"]
    assert out["status"] == {"$ref": "#/components/schemas/OrderStatus"}
    for typed, schema in (("quote", "Quote"), ("model", "ModelFacts"), ("failure", "PricingFailure")):
        assert {"$ref": f"#/components/schemas/{schema}"} in out[typed]["anyOf"], typed
    assert schemas["PricingFailure"]["properties"]["code"] == {"$ref": "#/components/schemas/FailureCode"}


def _codes_raised(pattern: str, *, skip: tuple[str, ...] = ()) -> set[str]:
    found = set()
    for path in SRC.rglob("*.py"):
        if path.name in skip:
            continue
        found |= set(re.findall(pattern, path.read_text()))
    return found


def test_every_error_code_the_code_raises_is_listed() -> None:
    listed = set()
    for document in DOCUMENTS.values():
        listed |= set(document["components"]["schemas"]["ErrorCode"]["enum"])
    raised = (_codes_raised(r'ApiError\(\s*\d{3},\s*"([a-z_]+)"', skip=PAGE_MODULES)
              | _codes_raised(r'error_body\(\s*"([a-z_]+)"', skip=PAGE_MODULES)
              | _codes_raised(r'"code":"([a-z_]+)"'))
    assert raised and raised <= listed, sorted(raised - listed)
    assert set(MODEL_FILE_CODES) <= set(DOCUMENTS["shop"]["components"]["schemas"]["ErrorCode"]["enum"])


def test_failure_codes_are_every_code_pricing_can_fail_with() -> None:
    file_codes = _codes_raised(r'ModelFormatError\(\s*"([a-z_]+)"')
    pricing = _codes_raised(r'PricingRejected\(\s*"([a-z_]+)"') | _codes_raised(r'"code": "(unknown_alloy)"')
    assert file_codes == set(MODEL_FILE_CODES)
    assert pricing == set(PRICING_CHECK_CODES)


def test_a_contract_for_a_route_that_does_not_exist_fails_loudly() -> None:
    from fastapi import FastAPI

    from alexandrite.kit.openapi import ContractSpec, RouteContract, install_contract

    app = FastAPI()

    @app.get("/api/v1/things")
    async def things() -> dict[str, str]:
        return {}

    install_contract(app, ContractSpec(routes={("GET", "/api/v1/thing"): RouteContract(errors={409: ("conflict",)})}))
    with pytest.raises(ValueError, match="GET /api/v1/thing"):
        app.openapi()

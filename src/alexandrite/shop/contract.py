"""What the shop's public API description says beyond its routes: error codes, headers, security."""

from __future__ import annotations

from alexandrite.contracts.failure_codes import MODEL_FILE_CODES
from alexandrite.kit.openapi import ContractSpec, RouteContract

ORDERS = "/api/v1/orders"
ONE = ORDERS + "/{order_id}"
WEBHOOK = "/api/v1/webhook"
_STRING = {"type": "string"}
_TRANSITION = ("illegal_transition", "not_owner", "order_in_transit", "conflict")

DESCRIPTION = """\
Orders of custom jewellery for customers (bearer token from `POST /api/v1/auth/token`) and partner
sellers (`X-API-Key`). An order is created, gets a 3D model, is submitted, and is priced asynchronously:
poll `GET /api/v1/orders/{order_id}` (status `PRICE_CALCULATING` carries `progress`) or register a webhook.

Every error answers `{"error": {"code", "message", "details"}}`; branch on `code`. Rate limits answer 429
with `Retry-After` and `RateLimit-*`. Versioning: `/api/v1` only grows (new paths, new optional fields,
new optional parameters); anything else is a new version. See docs/partners.md.
"""

SHOP_CONTRACT = ContractSpec(
    description=DESCRIPTION,
    api_key_roles=frozenset({"partner"}),
    error_codes=(
        "invalid_api_key", "invalid_credentials", "email_taken", "email_lookalike", "file_too_large",
        "model_required", "confirmation_required", "idempotency_key_reused", "pricing_overloaded", "uploads_busy",
        "invalid_webhook_url", *MODEL_FILE_CODES,
    ),
    routes={
        ("POST", "/api/v1/auth/signup"): RouteContract(errors={409: ("email_taken",), 422: ("email_lookalike",)}),
        ("POST", "/api/v1/auth/token"): RouteContract(errors={401: ("invalid_credentials",),
                                                              429: ("too_many_failures",)}),
        ("POST", ORDERS): RouteContract(
            errors={409: ("conflict",), 422: ("idempotency_key_reused",)},
            headers={201: {"Idempotent-Replayed": {
                "description": "`true` when this answer repeats the order an earlier request with the same "
                               "Idempotency-Key created (nothing new was created)",
                "schema": {"type": "string", "enum": ["true"]}}}},
        ),
        ("GET", ORDERS): RouteContract(errors={422: ("invalid_cursor",)}),
        ("PUT", ONE + "/model"): RouteContract(errors={
            409: _TRANSITION, 413: ("file_too_large",), 422: MODEL_FILE_CODES,
            503: ("uploads_busy", "storage_unavailable")}),
        ("POST", ONE + "/submit"): RouteContract(
            operation_id="submit_order",
            errors={409: ("model_required", "confirmation_required", *_TRANSITION),
                    503: ("pricing_overloaded", "dependency_unavailable")},
            headers={202: {"Pricing-ETA-Seconds": {
                "description": "Seconds the pricing backlog is expected to take before this order is priced "
                               "(sent while the backlog is measurable)", "schema": {"type": "integer"}}}},
        ),
        ("POST", ONE + "/cancel"): RouteContract(errors={409: _TRANSITION, 503: ("dependency_unavailable",)},
                                                 operation_id="cancel_order"),
        ("GET", ONE + "/events"): RouteContract(
            errors={429: ("too_many_streams",), 503: ("too_many_streams", "shutting_down", "live_disabled")},
            operation_id="watch_order"),
        ("PUT", WEBHOOK): RouteContract(errors={422: ("invalid_webhook_url",)}, operation_id="register_webhook"),
        ("GET", WEBHOOK): RouteContract(operation_id="get_webhook"),
        ("DELETE", WEBHOOK): RouteContract(operation_id="delete_webhook"),
        ("GET", WEBHOOK + "/deliveries"): RouteContract(operation_id="list_webhook_deliveries"),
        ("POST", WEBHOOK + "/deliveries/replay"): RouteContract(operation_id="replay_webhook_deliveries"),
    },
)

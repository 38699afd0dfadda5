"""What the CRM's public API description says beyond its routes: error codes per route."""

from __future__ import annotations

from alexandrite.kit.openapi import ContractSpec, RouteContract

ONE = "/api/v1/crm/orders/{order_id}"
_TRANSITION = ("illegal_transition", "not_owner", "order_in_transit", "conflict")

CRM_CONTRACT = ContractSpec(
    description="Sellers' view of orders: search, approve for manufacturing, cancel, close, notes; "
                "the carrier tracking webhook. Errors answer `{\"error\": {\"code\", \"message\", \"details\"}}`.",
    error_codes=("invalid_signature",),
    routes={
        ("GET", "/api/v1/crm/orders"): RouteContract(errors={422: ("invalid_cursor",)}),
        ("POST", ONE + "/approve"): RouteContract(errors={409: _TRANSITION}),
        ("POST", ONE + "/cancel"): RouteContract(errors={409: _TRANSITION, 503: ("dependency_unavailable",)}),
        ("POST", ONE + "/close"): RouteContract(errors={409: _TRANSITION}),
        ("POST", "/api/v1/crm/webhooks/carrier"): RouteContract(errors={
            401: ("invalid_signature",), 404: ("not_found",), 413: ("payload_too_large",)}),
    },
)

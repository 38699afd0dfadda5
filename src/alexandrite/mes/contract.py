"""What the MES's public API description says beyond its routes: error codes per route."""

from __future__ import annotations

from alexandrite.kit.openapi import ContractSpec, RouteContract

ONE = "/api/v1/production/orders/{order_id}"
_TRANSITION = ("illegal_transition", "not_owner", "order_in_transit", "conflict")

MES_CONTRACT = ContractSpec(
    description="Production: orders in work for operators (take, complete, package, ship) and the pricing "
                "queue. Errors answer `{\"error\": {\"code\", \"message\", \"details\"}}`.",
    error_codes=("invalid_sort", "invalid_filter"),
    routes={
        ("GET", "/api/v1/production/orders"): RouteContract(
            errors={422: ("invalid_cursor", "invalid_sort", "invalid_filter")}),
        **{("POST", f"{ONE}/{step}"): RouteContract(errors={409: _TRANSITION})
           for step in ("take", "complete", "package", "ship")},
    },
)

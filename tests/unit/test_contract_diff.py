"""The breaking-change check catches each kind of break, and lets compatible growth pass."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from alexandrite.devtools.contract_diff import breaking_changes


def _openapi() -> dict[str, Any]:
    return {
        "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
        "paths": {
            "/orders": {"post": {
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/CreateOrder"}}}},
                "responses": {"201": {"description": "ok", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Order"}}}}},
            }},
            "/orders/{order_id}": {"get": {
                "parameters": [{"name": "order_id", "in": "path", "required": True,
                                "schema": {"type": "string", "format": "uuid"}}],
                "responses": {"200": {"description": "ok", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Order"}}}}},
            }},
        },
        "components": {"schemas": {
            "CreateOrder": {"type": "object", "required": ["alloy"], "properties": {
                "alloy": {"type": "string", "enum": ["gold", "silver"]},
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "weight": {"type": "number"}}},
            "Order": {"type": "object", "required": ["id", "status", "total"], "properties": {
                "id": {"type": "string"}, "status": {"$ref": "#/components/schemas/Status"},
                "total": {"type": "number"},
                "items": {"type": "array", "items": {"type": "object", "required": ["sku"],
                                                      "properties": {"sku": {"type": "string"}}}}}},
            "Status": {"type": "string", "enum": ["NEW", "DONE"]},
        }},
    }


def _schemas(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["components"]["schemas"]  # type: ignore[no-any-return]


BREAKS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "path removed": lambda d: d["paths"].pop("/orders/{order_id}"),
    "operation removed": lambda d: d["paths"]["/orders"].pop("post"),
    "success response removed": lambda d: d["paths"]["/orders"]["post"]["responses"].pop("201"),
    "response field removed": lambda d: _schemas(d)["Order"]["properties"].pop("total"),
    "response field no longer always present": lambda d: _schemas(d)["Order"]["required"].remove("total"),
    "nested response field removed": lambda d: _schemas(d)["Order"]["properties"]["items"]["items"][
        "properties"].pop("sku"),
    "enum value removed": lambda d: _schemas(d)["Status"].update(enum=["NEW"]),
    "request enum value removed": lambda d: _schemas(d)["CreateOrder"]["properties"]["alloy"].update(enum=["gold"]),
    "request type narrowed": lambda d: _schemas(d)["CreateOrder"]["properties"].update(
        weight={"type": "integer"}),
    "request null no longer accepted": lambda d: _schemas(d)["CreateOrder"]["properties"].update(
        note={"type": "string"}),
    "response type widened": lambda d: _schemas(d)["Order"]["properties"].update(
        total={"anyOf": [{"type": "number"}, {"type": "null"}]}),
    "response type changed": lambda d: _schemas(d)["Order"]["properties"].update(total={"type": "string"}),
    "request field newly required": lambda d: _schemas(d)["CreateOrder"]["required"].append("note"),
    "parameter newly required": lambda d: d["paths"]["/orders"]["post"]["parameters"][0].update(required=True),
    "request now restricted to values": lambda d: _schemas(d)["CreateOrder"]["properties"].update(
        note={"type": "string", "enum": ["a"]}),
}

COMPATIBLE: dict[str, Callable[[dict[str, Any]], Any]] = {
    "path added": lambda d: d["paths"].update({"/health": {"get": {"responses": {"200": {"description": "ok"}}}}}),
    "optional request field added": lambda d: _schemas(d)["CreateOrder"]["properties"].update(
        size={"type": "integer"}),
    "response field added": lambda d: _schemas(d)["Order"]["properties"].update(eta={"type": "number"}),
    "request type widened": lambda d: _schemas(d)["CreateOrder"]["properties"].update(
        weight={"anyOf": [{"type": "number"}, {"type": "string"}]}),
    "request enum value added": lambda d: _schemas(d)["CreateOrder"]["properties"]["alloy"].update(
        enum=["gold", "silver", "platinum"]),
    "error response added": lambda d: d["paths"]["/orders"]["post"]["responses"].update(
        {"409": {"description": "conflict"}}),
    "response type narrowed": lambda d: _schemas(d)["Order"]["properties"].update(total={"type": "integer"}),
}


@pytest.mark.parametrize("kind", BREAKS)
def test_each_kind_of_break_is_caught(kind: str) -> None:
    old = _openapi()
    new = copy.deepcopy(old)
    BREAKS[kind](new)
    found = breaking_changes(old, new)
    assert found, kind


@pytest.mark.parametrize("kind", COMPATIBLE)
def test_compatible_growth_passes(kind: str) -> None:
    old = _openapi()
    new = copy.deepcopy(old)
    COMPATIBLE[kind](new)
    assert breaking_changes(old, new) == [], kind


def test_a_break_says_where_and_what() -> None:
    old = _openapi()
    new = copy.deepcopy(old)
    _schemas(new)["Order"]["properties"].pop("total")
    found = [str(b) for b in breaking_changes(old, new)]
    assert "POST /orders 201 application/json.total: response field removed" in found
    assert "GET /orders/{order_id} 200 application/json.total: response field removed" in found


def _asyncapi() -> dict[str, Any]:
    return {
        "asyncapi": "3.0.0", "info": {"title": "t", "version": "1"},
        "channels": {"hook": {"address": "{url}", "messages": {
            "changed": {"$ref": "#/components/messages/changed"}}}},
        "components": {
            "messages": {"changed": {"payload": {"$ref": "#/components/schemas/Changed"}}},
            "schemas": {"Changed": {"type": "object", "required": ["seq"], "properties": {
                "seq": {"type": "integer"}, "status": {"type": "string", "enum": ["A", "B"]}}}},
        },
    }


@pytest.mark.parametrize("change", [
    lambda d: d["channels"].pop("hook"),
    lambda d: d["channels"]["hook"]["messages"].pop("changed"),
    lambda d: d["components"]["schemas"]["Changed"]["properties"].pop("seq"),
    lambda d: d["components"]["schemas"]["Changed"]["properties"]["status"].update(enum=["A"]),
    lambda d: d["components"]["schemas"]["Changed"]["properties"].update(seq={"type": "string"}),
])
def test_asyncapi_breaks_are_caught(change: Callable[[dict[str, Any]], Any]) -> None:
    old = _asyncapi()
    new = copy.deepcopy(old)
    change(new)
    assert breaking_changes(old, new)


def test_asyncapi_growth_passes() -> None:
    old = _asyncapi()
    new = copy.deepcopy(old)
    new["components"]["schemas"]["Changed"]["properties"]["note"] = {"type": "string"}
    new["channels"]["other"] = {"address": "x.y", "messages": {}}
    assert breaking_changes(old, new) == []

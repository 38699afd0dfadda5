"""Breaking changes between two versions of an OpenAPI 3.1 or AsyncAPI 3.0 document.

What a client built against OLD relies on, and NEW must keep:

- every path and operation (method), every success response (2xx) and its media types;
- request side (what clients send): no newly required parameter, property or body; no removed property or
  enum value a client may send; no narrowed type (a type OLD accepted that NEW does not);
- response side (what clients read, including every message a consumer receives): no removed property,
  no property that may now be absent (no longer required), no removed enum value, no type OLD never gave
  (a widened type: a generated client cannot parse it, e.g. a field that becomes nullable);
- AsyncAPI: every channel address and every message of a channel, payloads compared as responses.

Adding paths, operations, optional request fields, response fields and error answers is not breaking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REQUEST = "request"
RESPONSE = "response"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@dataclass(frozen=True)
class Break:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


class _Resolver:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def __call__(self, schema: Any) -> dict[str, Any]:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 50:
            target: Any = self.document
            for part in schema["$ref"].lstrip("#/").split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra} if extra else target
            seen += 1
        return schema if isinstance(schema, dict) else {}


def _types(schema: dict[str, Any], resolve: _Resolver) -> set[str]:
    """The JSON types a schema admits (``any`` when it does not say)."""
    schema = resolve(schema)
    variants = schema.get("anyOf") or schema.get("oneOf")
    if variants:
        found: set[str] = set()
        for variant in variants:
            found |= _types(variant, resolve)
        return found
    declared = schema.get("type")
    if isinstance(declared, list):
        return set(declared)
    if isinstance(declared, str):
        return {declared} | ({"integer"} if declared == "number" else set())
    if "enum" in schema or "const" in schema:
        return {"string"}
    if "properties" in schema:
        return {"object"}
    return {"any"}


def _enum(schema: dict[str, Any], resolve: _Resolver) -> set[Any] | None:
    schema = resolve(schema)
    if "enum" in schema:
        return set(map(str, schema["enum"]))
    if "const" in schema:
        return {str(schema["const"])}
    values: set[Any] = set()
    for variant in schema.get("anyOf") or schema.get("oneOf") or ():
        found = _enum(variant, resolve)
        if found:
            values |= found
    return values or None


def _object_variant(schema: dict[str, Any], resolve: _Resolver) -> dict[str, Any] | None:
    schema = resolve(schema)
    if "properties" in schema:
        return schema
    for variant in schema.get("anyOf") or schema.get("oneOf") or ():
        found = _object_variant(variant, resolve)
        if found is not None:
            return found
    return None


def _items(schema: dict[str, Any], resolve: _Resolver) -> dict[str, Any] | None:
    schema = resolve(schema)
    if isinstance(schema.get("items"), dict):
        return schema["items"]
    for variant in schema.get("anyOf") or schema.get("oneOf") or ():
        found = _items(variant, resolve)
        if found is not None:
            return found
    return None


class _Comparison:
    def __init__(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.old = _Resolver(old)
        self.new = _Resolver(new)
        self.breaks: list[Break] = []
        self._seen: set[tuple[int, int, str]] = set()

    def add(self, where: str, what: str) -> None:
        self.breaks.append(Break(where, what))

    def schema(self, where: str, old: Any, new: Any, side: str) -> None:
        old_s, new_s = self.old(old), self.new(new)
        key = (id(old_s), id(new_s), side)
        if key in self._seen:  # a recursive schema: already being compared further up
            return
        self._seen.add(key)
        try:
            self._compare(where, old_s, new_s, side)
        finally:
            self._seen.discard(key)

    def _compare(self, where: str, old_s: dict[str, Any], new_s: dict[str, Any], side: str) -> None:
        old_t, new_t = _types(old_s, self.old), _types(new_s, self.new)
        if "any" not in old_t and "any" not in new_t:
            if side == REQUEST and old_t - new_t:
                self.add(where, f"type narrowed: {sorted(old_t)} -> {sorted(new_t)}")
            if side == RESPONSE and new_t - old_t:
                self.add(where, f"type widened (clients cannot read it): {sorted(old_t)} -> {sorted(new_t)}")
        old_e, new_e = _enum(old_s, self.old), _enum(new_s, self.new)
        if old_e is not None:
            if new_e is not None and old_e - new_e:
                self.add(where, f"enum values removed: {sorted(old_e - new_e)}")
        elif new_e is not None and side == REQUEST and "any" not in old_t:
            self.add(where, f"now restricted to the values {sorted(new_e)}")
        old_o, new_o = _object_variant(old_s, self.old), _object_variant(new_s, self.new)
        if old_o is not None and new_o is not None:
            self.properties(where, old_o, new_o, side)
        old_i, new_i = _items(old_s, self.old), _items(new_s, self.new)
        if old_i is not None and new_i is not None:
            self.schema(where + "[]", old_i, new_i, side)

    def properties(self, where: str, old: dict[str, Any], new: dict[str, Any], side: str) -> None:
        old_p, new_p = old.get("properties", {}), new.get("properties", {})
        old_r, new_r = set(old.get("required", [])), set(new.get("required", []))
        closed = new.get("additionalProperties") is False
        for name, schema in old_p.items():
            if name not in new_p:
                if side == RESPONSE:
                    self.add(f"{where}.{name}", "response field removed")
                elif closed:
                    self.add(f"{where}.{name}", "request field removed (clients sending it are refused)")
                continue
            if side == RESPONSE and name in old_r and name not in new_r:
                self.add(f"{where}.{name}", "response field no longer always present")
            self.schema(f"{where}.{name}", schema, new_p[name], side)
        if side == REQUEST:
            for name in sorted(new_r - old_r):
                self.add(f"{where}.{name}", "request field newly required")


def _media(where: str, cmp: _Comparison, old: dict[str, Any], new: dict[str, Any], side: str) -> None:
    old_c, new_c = old.get("content", {}), new.get("content", {})
    for media, body in old_c.items():
        if media not in new_c:
            cmp.add(where, f"media type {media} removed")
        elif "schema" in body and "schema" in new_c[media]:
            cmp.schema(f"{where} {media}", body["schema"], new_c[media]["schema"], side)


def _parameters(operation: dict[str, Any], resolve: _Resolver) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for parameter in operation.get("parameters", []):
        parameter = resolve(parameter)
        found[(parameter.get("in", ""), str(parameter.get("name", "")).lower())] = parameter
    return found


def openapi_breaks(old: dict[str, Any], new: dict[str, Any]) -> list[Break]:
    cmp = _Comparison(old, new)
    new_paths = new.get("paths", {})
    for path, item in old.get("paths", {}).items():
        if path not in new_paths:
            cmp.add(path, "path removed")
            continue
        for method in METHODS:
            if method not in item:
                continue
            where = f"{method.upper()} {path}"
            if method not in new_paths[path]:
                cmp.add(where, "operation removed")
                continue
            old_op, new_op = item[method], new_paths[path][method]
            old_params, new_params = _parameters(old_op, cmp.old), _parameters(new_op, cmp.new)
            for key, parameter in new_params.items():
                if parameter.get("required") and not (key in old_params and old_params[key].get("required")):
                    cmp.add(f"{where} {key[0]} {key[1]}", "parameter newly required")
            for key, parameter in old_params.items():
                if key in new_params:
                    cmp.schema(f"{where} {key[0]} {key[1]}", parameter.get("schema", {}),
                               new_params[key].get("schema", {}), REQUEST)
                elif key[0] == "path":
                    cmp.add(f"{where} {key[0]} {key[1]}", "path parameter removed")
            old_body, new_body = old_op.get("requestBody"), new_op.get("requestBody")
            if new_body is not None:
                new_body = cmp.new(new_body)
                if old_body is None:
                    if new_body.get("required"):
                        cmp.add(where, "request body newly required")
                else:
                    old_body = cmp.old(old_body)
                    if new_body.get("required") and not old_body.get("required"):
                        cmp.add(where, "request body newly required")
                    _media(f"{where} request", cmp, old_body, new_body, REQUEST)
            elif old_body is not None:
                cmp.add(where, "request body removed")
            new_responses = new_op.get("responses", {})
            for status, answer in old_op.get("responses", {}).items():
                if not status.startswith("2"):
                    if status in new_responses:
                        _media(f"{where} {status}", cmp, cmp.old(answer), cmp.new(new_responses[status]), RESPONSE)
                    continue
                if status not in new_responses:
                    cmp.add(f"{where} {status}", "success response removed")
                    continue
                _media(f"{where} {status}", cmp, cmp.old(answer), cmp.new(new_responses[status]), RESPONSE)
    return cmp.breaks


def asyncapi_breaks(old: dict[str, Any], new: dict[str, Any]) -> list[Break]:
    cmp = _Comparison(old, new)
    new_by_address = {c.get("address"): c for c in new.get("channels", {}).values()}
    for name, channel in old.get("channels", {}).items():
        address = channel.get("address")
        where = f"channel {address or name}"
        if address not in new_by_address:
            cmp.add(where, "channel removed")
            continue
        new_messages = new_by_address[address].get("messages", {})
        for key, message in channel.get("messages", {}).items():
            if key not in new_messages:
                cmp.add(f"{where} message {key}", "message removed")
                continue
            old_m, new_m = cmp.old(message), cmp.new(new_messages[key])
            cmp.schema(f"{where} message {key}", old_m.get("payload", {}), new_m.get("payload", {}), RESPONSE)
            if "headers" in old_m and "headers" in new_m:
                cmp.schema(f"{where} message {key} headers", old_m["headers"], new_m["headers"], RESPONSE)
    return cmp.breaks


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[Break]:
    """Every change of ``new`` that breaks a client of ``old`` (both OpenAPI, or both AsyncAPI)."""
    if "asyncapi" in old or "asyncapi" in new:
        return asyncapi_breaks(old, new)
    return openapi_breaks(old, new)

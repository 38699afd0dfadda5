"""The public API description of a service: FastAPI's OpenAPI, completed so generated clients get it right.

FastAPI describes routes and bodies; what this adds is what the middleware and handlers around the routes
really do, which FastAPI cannot see:

- security schemes (bearer tokens; the partner ``X-API-Key`` where the service takes one) on every route
  that requires a role, ``security: []`` on the public ones;
- the one error body ``{"error": {"code", "message", "details"}}`` (schema ``Error``, its ``code`` an enum
  of every machine-readable code the service answers) on every 4xx/5xx the route can give: 401/403 where
  authentication is required, 404 for a path with an id, 422 for a route that takes input, 413 for one
  that takes a body, 429 (rate limits) and 503 (load shedding) everywhere under ``/api``, and what the
  service says a route adds (409, upload 503 ...); FastAPI's ``HTTPValidationError`` is gone;
- response headers (``RateLimit-*`` on every limited answer, ``Retry-After`` on 429/503,
  ``WWW-Authenticate`` on 401, and the ones the service names per route);
- uploads as ``type: string, format: binary`` (what generators turn into a file part).

The kit knows no service: each service passes its specifics in a :class:`ContractSpec`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from alexandrite.contracts.alloys import ALLOY_NAMES
from alexandrite.contracts.failure_codes import FAILURE_CODES
from alexandrite.kit.auth import api_routes, guarded_by

# Every code the kit's own middleware and handlers answer with (kit/errors.py, auth, throttle, body limits,
# peers, pagination, order records). Services add theirs in ContractSpec.error_codes.
KIT_ERROR_CODES: tuple[str, ...] = (
    "bad_request", "conflict", "database_busy", "database_unavailable", "dependency_unavailable",
    "duplicate_authorization", "error", "forbidden", "headers_too_large", "illegal_transition", "invalid_cursor",
    "invalid_request", "live_disabled", "method_not_allowed", "not_found", "not_owner", "order_in_transit",
    "overloaded", "payload_too_large", "rate_limited", "rate_limiter_unavailable", "shutting_down",
    "storage_unavailable", "too_many_failures", "too_many_streams", "unauthorized", "unavailable",
    "unsupported_media_type",
)

BEARER = "BearerAuth"
API_KEY = "ApiKeyAuth"
API_KEY_HEADER = "X-API-Key"
METHODS = ("get", "put", "post", "delete", "patch")

_INT = {"type": "integer"}
RATE_LIMIT_HEADERS: dict[str, dict[str, Any]] = {
    "RateLimit-Limit": {"description": "Requests allowed in the window of the tightest limit that applies",
                        "schema": _INT},
    "RateLimit-Remaining": {"description": "Requests left in that window", "schema": _INT},
    "RateLimit-Reset": {"description": "Seconds until the window frees up", "schema": _INT},
}
RETRY_AFTER: dict[str, Any] = {"description": "Seconds to wait before retrying", "schema": _INT}

# What each status means here, and the kit's codes that answer it on any route that can give it.
_STATUS_TEXT = {
    400: ("The request cannot be read (a body that does not parse, two Authorization headers)", ("bad_request",)),
    401: ("Missing or invalid credentials", ("unauthorized",)),
    403: ("The caller's role may not do this", ("forbidden",)),
    404: ("No such resource (or not the caller's)", ("not_found",)),
    409: ("The resource's state does not allow this now", ("conflict",)),
    413: ("The request body is too large", ("payload_too_large",)),
    422: ("The request is not valid", ("invalid_request",)),
    429: ("Too many requests; see Retry-After", ("rate_limited",)),
    503: ("Temporarily unavailable; see Retry-After", ("overloaded", "database_unavailable", "database_busy")),
}


def operation_id(route: Any) -> str:
    """A route's operation id: its function's name (``create_order``), what generated clients call it."""
    return str(route.name)


@dataclass(frozen=True)
class RouteContract:
    """What one route adds to the generic description: more error answers and response headers."""

    errors: Mapping[int, Iterable[str]] = field(default_factory=dict)  # status -> codes
    headers: Mapping[int, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)  # status -> headers
    summary: str | None = None
    operation_id: str | None = None


@dataclass(frozen=True)
class ContractSpec:
    """A service's specifics for its public description."""

    error_codes: Iterable[str] = ()
    api_key_roles: frozenset[str] = frozenset()  # roles that may authenticate with X-API-Key
    routes: Mapping[tuple[str, str], RouteContract] = field(default_factory=dict)  # (METHOD, path) -> extras
    description: str = ""
    version: str = "1.0.0"
    limited_prefixes: tuple[str, ...] = ("/api/",)  # rate-limited and shed (throttle middleware)
    hidden_prefixes: tuple[str, ...] = ("/health/",)  # probes: for orchestrators, not for clients
    # Inline enums equal to one of these lists become one named schema (one enum type in generated clients).
    named_enums: Mapping[str, Iterable[str]] = field(default_factory=lambda: {
        "Alloy": ALLOY_NAMES, "FailureCode": FAILURE_CODES})


def error_schemas(codes: Iterable[str]) -> dict[str, Any]:
    """``Error``, ``ErrorBody`` and the ``ErrorCode`` enum as OpenAPI components."""
    return {
        "ErrorCode": {"type": "string", "enum": sorted(set(codes)), "title": "ErrorCode",
                      "description": "Machine-readable reason; clients branch on it, never on the message"},
        "ErrorBody": {
            "type": "object", "title": "ErrorBody", "required": ["code", "message"],
            "properties": {
                "code": {"$ref": "#/components/schemas/ErrorCode"},
                "message": {"type": "string", "description": "For people; may change without notice"},
                "details": {"description": "Optional structured facts: for invalid_request a list of "
                                           "{loc, msg, type}; otherwise an object"},
            },
        },
        "Error": {
            "type": "object", "title": "Error", "required": ["error"],
            "properties": {"error": {"$ref": "#/components/schemas/ErrorBody"}},
            "example": {"error": {"code": "not_found", "message": "No such order."}},
        },
    }


def _error_response(status: int, codes: Iterable[str], headers: Mapping[str, Any] | None = None,
                    text: str | None = None) -> dict[str, Any]:
    text = text or _STATUS_TEXT.get(status, ("Error", ()))[0]
    listed = sorted(set(codes))
    answer: dict[str, Any] = {
        "description": f"{text}. Error codes: {', '.join(listed)}",
        "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"},
            "example": {"error": {"code": listed[0], "message": text + "."}},
        }},
    }
    if headers:
        answer["headers"] = dict(headers)
    return answer


def _binary_uploads(node: Any) -> None:
    """``contentMediaType`` strings (how FastAPI describes UploadFile under OpenAPI 3.1) as ``format: binary``."""
    if isinstance(node, dict):
        if node.get("type") == "string" and "contentMediaType" in node:
            node.pop("contentMediaType")
            node["format"] = "binary"
        for value in node.values():
            _binary_uploads(value)
    elif isinstance(node, list):
        for value in node:
            _binary_uploads(value)


def _is_string_enum(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "string" and isinstance(value.get("enum"), list)


def _name_enums(node: Any, named: Mapping[str, list[str]]) -> Any:
    """``node`` with inline string enums equal to a named list replaced by a reference to the named schema."""
    if _is_string_enum(node):
        for name, values in named.items():
            if sorted(node["enum"]) == values:
                kept = {k: v for k, v in node.items() if k in ("description", "default")}
                return {"$ref": f"#/components/schemas/{name}", **kept}
        return node
    if isinstance(node, dict):
        return {key: _name_enums(value, named) for key, value in node.items()}
    if isinstance(node, list):
        return [_name_enums(value, named) for value in node]
    return node


def _references(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref.rsplit("/", 1)[-1])
        for value in node.values():
            found |= _references(value)
    elif isinstance(node, list):
        for value in node:
            found |= _references(value)
    return found


def _drop_unused(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    while True:
        used = _references({k: v for k, v in document.items() if k != "components"})
        for schema in list(schemas.values()):
            used |= _references(schema)
        used |= _references(document["components"].get("responses", {}))
        unused = [name for name in schemas if name not in used and name not in ("Error", "ErrorBody", "ErrorCode")]
        if not unused:
            return
        for name in unused:
            del schemas[name]


def complete(document: dict[str, Any], app: FastAPI, spec: ContractSpec) -> dict[str, Any]:
    """The completed description (a new dict; ``document`` is FastAPI's own)."""
    doc = copy.deepcopy(document)
    doc["info"]["version"] = spec.version
    if spec.description:
        doc["info"]["description"] = spec.description
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(error_schemas([*KIT_ERROR_CODES, *spec.error_codes]))
    security_schemes: dict[str, Any] = {
        BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                 "description": "A token from POST /api/v1/auth/token (customers) or a staff token"},
    }
    if spec.api_key_roles:
        security_schemes[API_KEY] = {"type": "apiKey", "in": "header", "name": API_KEY_HEADER,
                                     "description": "A partner's API key (alexandrite partner create)"}
    components["securitySchemes"] = security_schemes

    guards = {}
    for path, route, extra in api_routes(app.routes):
        for method in getattr(route, "methods", None) or ():
            guards[(method.lower(), path)] = guarded_by(route, extra)

    for path in [p for p in doc.get("paths", {}) if p.startswith(spec.hidden_prefixes)]:
        del doc["paths"][path]
    named = {name: sorted(values) for name, values in spec.named_enums.items()}
    described = {(m.upper(), p) for p, item in doc.get("paths", {}).items() for m in item if m in METHODS}
    unknown = sorted(f"{m} {p}" for m, p in spec.routes if (m, p) not in described)
    if unknown:  # the service's contract names a route it does not serve (renamed or removed)
        raise ValueError(f"contract for routes that do not exist: {', '.join(unknown)}")
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            _complete_operation(path, method, operation, guards.get((method, path)), spec)
    _binary_uploads(doc)
    doc = _name_enums(doc, named)
    schemas = doc["components"]["schemas"]
    for name, values in named.items():
        schemas[name] = {"type": "string", "enum": values, "title": name}
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    _drop_unused(doc)
    return doc


def _complete_operation(path: str, method: str, operation: dict[str, Any], guard: Any, spec: ContractSpec) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    extra = spec.routes.get((method.upper(), path), RouteContract())
    if extra.summary:
        operation["summary"] = extra.summary
    if extra.operation_id:
        operation["operationId"] = extra.operation_id
    errors: dict[int, set[str]] = {}

    def add(status: int, *codes: str) -> None:
        errors.setdefault(status, set()).update(codes or _STATUS_TEXT[status][1])

    if isinstance(guard, frozenset):
        by_key = bool(guard & spec.api_key_roles)
        operation["security"] = [{BEARER: []}] + ([{API_KEY: []}] if by_key else [])
        add(401)
        if by_key:
            add(401, "invalid_api_key")
        add(400, "duplicate_authorization")
        add(403)
    elif isinstance(guard, str):
        operation["security"] = []
    body = operation.get("requestBody")
    if body is not None and not body.get("required"):
        # An optional body is described as the object, not "object or null": a client sends it or sends nothing
        # (generators otherwise send their "unset" marker as JSON).
        for media in body.get("content", {}).values():
            variants = media.get("schema", {}).get("anyOf", [])
            kept = [v for v in variants if v != {"type": "null"}]
            if len(kept) == 1 and len(variants) == 2:
                media["schema"] = kept[0]
    has_input = bool(operation.get("parameters")) or "requestBody" in operation
    if "{" in path:
        add(404)
    if has_input:
        add(422)
    if "requestBody" in operation:
        add(413)
        add(400, "bad_request")  # a body that does not parse (FastAPI answers before validation)
    limited = path.startswith(spec.limited_prefixes)
    if limited:
        add(429)
        add(503, "overloaded")
        if isinstance(guard, frozenset) or "{" in path or has_input:
            add(503)  # reaches the database
    for code, codes in extra.errors.items():
        add(code, *codes)

    texts: dict[int, str] = {}
    for key in list(responses):
        if key.isdigit() and int(key) >= 400:  # FastAPI's (422) or the route's own words for it
            described = responses.pop(key)
            errors.setdefault(int(key), set()).update(_STATUS_TEXT.get(int(key), ("", ("error",)))[1])
            if int(key) != 422 and described.get("description"):
                texts[int(key)] = described["description"]
    for status in sorted(errors):
        headers: dict[str, Any] = dict(extra.headers.get(status, {}))
        if status == 401:
            headers.setdefault("WWW-Authenticate", {"description": "The scheme to authenticate with",
                                                    "schema": {"type": "string"}})
        if status in (429, 503):
            headers.setdefault("Retry-After", RETRY_AFTER)
        if status == 429:
            headers.update(RATE_LIMIT_HEADERS)
        responses[str(status)] = _error_response(status, errors[status], headers, texts.get(status))
    for key, answer in responses.items():
        if key.isdigit() and int(key) < 400:
            headers = dict(extra.headers.get(int(key), {}))
            if limited:
                headers.update(RATE_LIMIT_HEADERS)
            if headers:
                answer["headers"] = {**answer.get("headers", {}), **headers}


def install_contract(app: FastAPI, spec: ContractSpec) -> None:
    """Serve the completed description at ``/openapi.json`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=spec.version, openapi_version=app.openapi_version,
                                   description=spec.description or app.description, routes=app.routes)
            app.openapi_schema = complete(document, app, spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

"""AsyncAPI 3.0 description of the order events: on the bus (RabbitMQ) and to partners' webhooks (signed).

Built from the event models the code publishes and validates with (``alexandrite.contracts.events``):
the envelope's payload for a status change is :class:`StatusChanged`, for a delay :class:`OrderDelayed`;
a partner's webhook body is the same change without the internal fields (``actor``, ``owner``,
``owner_kind``) plus ``delivery_id``, ``type``, ``order_id`` and ``seq`` (``shop.webhooks.deliveries``,
``shop.delays``, ``shop.webhooks.dispatch``). The shop serves it at ``/asyncapi.json``.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from alexandrite.contracts.events import (
    DELIVERY_STAGE,
    EVENTS_EXCHANGE,
    ORDER_DELAYED_TYPE,
    ORDER_DELAYED_VERSION,
    STATUS_EVENT_VERSION,
    Envelope,
    OrderDelayed,
    StatusChanged,
    status_event_type,
)
from alexandrite.contracts.order_status import TRANSITIONS, OrderStatus
from alexandrite.shop.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER

VERSION = "1.0.0"
REF = "#/components/schemas/{model}"
# What a partner's webhook body leaves out of the bus event (internal actors and owners).
WEBHOOK_HIDDEN = {"StatusChanged": ("actor", "owner"), "OrderDelayed": ("owner_kind",)}

SIGNATURE_SCHEME = (
    f"`{SIGNATURE_HEADER}: v1=<hex HMAC-SHA256(secret, \"<{TIMESTAMP_HEADER}>.\" + raw body)>`, the secret the "
    "partner got when registering the endpoint (PUT /api/v1/webhook). Refuse a timestamp more than 300 s "
    "from now (replays); compare in constant time; deduplicate on delivery_id; order by seq per order_id."
)


def producers() -> dict[OrderStatus, list[str]]:
    """Which services publish each status change (from the transition table)."""
    found: dict[OrderStatus, set[str]] = {}
    for (_, target), services in TRANSITIONS.items():
        found.setdefault(target, set()).update(services)
    found.setdefault(OrderStatus.INITIATED, set()).add("shop")
    return {status: sorted(found[status]) for status in OrderStatus if status in found}


def _schemas(models: list[type[BaseModel]]) -> dict[str, Any]:
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    return dict(top.get("$defs", {}))


def _webhook_body(schemas: dict[str, Any], source: str, type_word: str, name: str) -> dict[str, Any]:
    body = copy.deepcopy(schemas[source])
    for hidden in WEBHOOK_HIDDEN[source]:
        body["properties"].pop(hidden, None)
        body["required"] = [r for r in body.get("required", []) if r != hidden]
    body["properties"] = {
        "delivery_id": {"type": "string", "format": "uuid",
                        "description": f"The same on every retry of this delivery (also in {DELIVERY_HEADER})"},
        "type": {"type": "string", "const": type_word},
        "order_id": {"type": "string", "format": "uuid"},
        **({"seq": {"type": "integer", "minimum": 1, "description": "The order's sequence number"}}
           if source == "StatusChanged" else {}),
        **body["properties"],
    }
    body["required"] = ["delivery_id", "type", "order_id", *(["seq"] if source == "StatusChanged" else []),
                        *body.get("required", [])]
    body["title"] = name
    return body


def _envelope(schemas: dict[str, Any], payload: str, name: str) -> dict[str, Any]:
    envelope = copy.deepcopy(schemas["Envelope"])
    envelope["properties"]["payload"] = {"$ref": REF.format(model=payload)}
    envelope["title"] = name
    return envelope


def build_asyncapi() -> dict[str, Any]:
    schemas = _schemas([Envelope, StatusChanged, OrderDelayed])
    schemas["StatusChangedEnvelope"] = _envelope(schemas, "StatusChanged", "StatusChangedEnvelope")
    schemas["OrderDelayedEnvelope"] = _envelope(schemas, "OrderDelayed", "OrderDelayedEnvelope")
    schemas["WebhookStatusChanged"] = _webhook_body(schemas, "StatusChanged", "order.status_changed",
                                                    "WebhookStatusChanged")
    schemas["WebhookOrderDelayed"] = _webhook_body(schemas, "OrderDelayed", "order.delayed", "WebhookOrderDelayed")
    del schemas["Envelope"]
    schemas["OrderDelayed"]["properties"]["stage"]["description"] = (
        f"The late stage: an order status, or {DELIVERY_STAGE} for the promised delivery")

    amqp_headers = {
        "type": "object",
        "properties": {
            "event_type": {"type": "string", "description": "The envelope's type (also the routing key)"},
            "order_id": {"type": "string", "format": "uuid"},
            "seq": {"type": "integer"},
            "traceparent": {"type": "string", "description": "W3C trace context"},
        },
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {
        "statusChanged": {
            "name": "StatusChanged", "title": "An order's status changed", "contentType": "application/json",
            "summary": f"Envelope (version {STATUS_EVENT_VERSION}) whose payload is the change; routing key "
                       "<producer>.order.<status in lower case>",
            "headers": amqp_headers, "payload": {"$ref": REF.format(model="StatusChangedEnvelope")},
            "bindings": {"amqp": {"contentEncoding": "utf-8", "messageType": "<routing key>",
                                  "bindingVersion": "0.3.0"}},
        },
        "orderDelayed": {
            "name": "OrderDelayed", "title": "An order is late against a stage's SLA",
            "contentType": "application/json",
            "summary": f"Envelope (version {ORDER_DELAYED_VERSION}) whose payload is the delay; once per "
                       "order and stage", "headers": amqp_headers,
            "payload": {"$ref": REF.format(model="OrderDelayedEnvelope")},
        },
    }
    exchange = {"name": EVENTS_EXCHANGE, "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"}
    for status, services in producers().items():
        for producer in services:
            key = status_event_type(producer, status)
            channel_id = key.replace(".", "_")
            channels[channel_id] = {
                "address": key, "title": f"{status.value} from {producer}",
                "servers": [{"$ref": "#/servers/rabbitmq"}],
                "messages": {"statusChanged": {"$ref": "#/components/messages/statusChanged"}},
                "bindings": {"amqp": {"is": "routingKey", "exchange": exchange, "bindingVersion": "0.3.0"}},
            }
            operations[f"publish_{channel_id}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{channel_id}"},
                "summary": f"{producer} publishes through its outbox, with publisher confirms",
                "messages": [{"$ref": f"#/channels/{channel_id}/messages/statusChanged"}],
            }
    delayed = ORDER_DELAYED_TYPE.replace(".", "_")
    channels[delayed] = {
        "address": ORDER_DELAYED_TYPE, "title": "Delay notices from the MES SLA watchdog",
        "servers": [{"$ref": "#/servers/rabbitmq"}],
        "messages": {"orderDelayed": {"$ref": "#/components/messages/orderDelayed"}},
        "bindings": {"amqp": {"is": "routingKey", "exchange": exchange, "bindingVersion": "0.3.0"}},
    }
    operations[f"publish_{delayed}"] = {
        "action": "send", "channel": {"$ref": f"#/channels/{delayed}"},
        "messages": [{"$ref": f"#/channels/{delayed}/messages/orderDelayed"}],
    }

    webhook_headers = {
        "type": "object",
        "required": [SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_HEADER, EVENT_HEADER],
        "properties": {
            SIGNATURE_HEADER: {"type": "string", "pattern": "^v1=[0-9a-f]{64}$", "description": SIGNATURE_SCHEME},
            TIMESTAMP_HEADER: {"type": "string", "pattern": "^[0-9]+$",
                               "description": "Unix seconds when this attempt was signed"},
            DELIVERY_HEADER: {"type": "string", "format": "uuid"},
            EVENT_HEADER: {"type": "string", "description": "The bus event's type, e.g. mes.order.price_calculated"},
        },
    }
    messages["webhookStatusChanged"] = {
        "name": "WebhookStatusChanged", "title": "A partner order's status changed",
        "contentType": "application/json", "headers": webhook_headers,
        "payload": {"$ref": REF.format(model="WebhookStatusChanged")},
        "bindings": {"http": {"headers": webhook_headers, "bindingVersion": "0.3.0"}},
    }
    messages["webhookOrderDelayed"] = {
        "name": "WebhookOrderDelayed", "title": "A partner order is late", "contentType": "application/json",
        "headers": webhook_headers, "payload": {"$ref": REF.format(model="WebhookOrderDelayed")},
    }
    channels["partnerWebhook"] = {
        "address": "{webhookUrl}", "title": "The partner's webhook endpoint",
        "description": "POSTed at least once per event of the partner's orders; answer 2xx within 5 s. "
                       "Retries back off over about 2 h (8 attempts), then the delivery is dead and can be "
                       "replayed (POST /api/v1/webhook/deliveries/replay).",
        "servers": [{"$ref": "#/servers/partner"}],
        "parameters": {"webhookUrl": {"description": "The URL registered with PUT /api/v1/webhook"}},
        "messages": {"statusChanged": {"$ref": "#/components/messages/webhookStatusChanged"},
                     "orderDelayed": {"$ref": "#/components/messages/webhookOrderDelayed"}},
    }
    operations["deliverToPartner"] = {
        "action": "send", "channel": {"$ref": "#/channels/partnerWebhook"},
        "summary": "The shop POSTs each event to the partner, signed",
        "security": [{"$ref": "#/components/securitySchemes/webhookSignature"}],
        "bindings": {"http": {"method": "POST", "bindingVersion": "0.3.0"}},
        "messages": [{"$ref": "#/channels/partnerWebhook/messages/statusChanged"},
                     {"$ref": "#/channels/partnerWebhook/messages/orderDelayed"}],
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Alexandrite order events", "version": VERSION,
            "description": "Order events on the platform's bus (topic exchange "
                           f"`{EVENTS_EXCHANGE}`, quorum queues, at-least-once, per-order `seq`) and the signed "
                           "webhooks partners receive for their orders. Version 1 of each event grows only by "
                           "optional fields.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {"host": "rabbitmq:5672", "protocol": "amqp", "protocolVersion": "0.9.1",
                         "description": "The platform's broker (internal: services only)"},
            "partner": {"host": "partner.example", "protocol": "https",
                        "description": "The partner's own server (the registered webhook URL)",
                        "security": [{"$ref": "#/components/securitySchemes/webhookSignature"}]},
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "messages": messages,
            "securitySchemes": {
                "webhookSignature": {"type": "httpApiKey", "name": SIGNATURE_HEADER, "in": "header",
                                     "description": SIGNATURE_SCHEME},
            },
        },
    }

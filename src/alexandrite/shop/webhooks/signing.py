"""Webhook signatures: ``X-Alexandrite-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`` with
``X-Alexandrite-Timestamp`` (Unix seconds); see docs/webhooks.md. ``verify`` is what a partner runs."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SIGNATURE_HEADER = "X-Alexandrite-Signature"
TIMESTAMP_HEADER = "X-Alexandrite-Timestamp"
DELIVERY_HEADER = "X-Alexandrite-Delivery"
EVENT_HEADER = "X-Alexandrite-Event"



def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: int = 300,
           now: float | None = None) -> bool:
    """What a partner runs: a valid signature over a timestamp no older than ``tolerance`` seconds."""
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)

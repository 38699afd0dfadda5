"""Password hashing, signed bearer tokens and API keys (standard library only)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
ROLES = ("customer", "partner", "seller", "operator", "admin", "service")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt_b64), **_SCRYPT)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Principal:
    role: str
    subject: str  # customer id, partner id, staff name, service name
    name: str = ""

    @property
    def actor(self) -> str:
        """How history records this principal; customers by id, never by personal data."""
        if self.role == "customer":
            return f"customer:{self.subject}"
        return f"{self.role}:{self.name or self.subject}"


def issue_token(secret: str, principal: Principal, ttl_seconds: int) -> str:
    payload = {"sub": principal.subject, "role": principal.role, "name": principal.name,
               "exp": int(time.time()) + ttl_seconds}
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    signature = _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


class InvalidToken(Exception):
    pass


def read_token(secret: str, token: str) -> Principal:
    try:
        body, signature = token.split(".")
    except ValueError as error:
        raise InvalidToken("malformed token") from error
    expected = _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature):
        raise InvalidToken("bad signature")
    try:
        payload = json.loads(_unb64(body))
    except ValueError as error:
        raise InvalidToken("malformed token") from error
    if int(payload.get("exp", 0)) < time.time():
        raise InvalidToken("token expired")
    if payload.get("role") not in ROLES:
        raise InvalidToken("unknown role")
    return Principal(role=payload["role"], subject=str(payload["sub"]), name=str(payload.get("name", "")))


def new_api_key() -> str:
    return "alx_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()

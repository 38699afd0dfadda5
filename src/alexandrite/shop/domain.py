"""Shop rules: who may see an order, which alloys exist, what a request fingerprint is."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from alexandrite.kit.security import Principal

OWNER_ROLES = ("customer", "partner")


@dataclass(frozen=True)
class Owner:
    kind: str  # "customer" | "partner"
    id: str
    name: str

    @classmethod
    def of(cls, principal: Principal) -> "Owner":
        if principal.role not in OWNER_ROLES:
            raise PermissionError(principal.role)
        return cls(kind=principal.role, id=principal.subject, name=principal.name or principal.subject)


def request_fingerprint(body: dict[str, Any]) -> str:
    """Stable hash of a request body: a reused Idempotency-Key must come with the same body."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def normalise_email(email: str) -> str:
    return email.strip().lower()



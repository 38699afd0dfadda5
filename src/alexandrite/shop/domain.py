"""Shop rules: who may see an order, which alloys exist, what a request fingerprint is."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
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


_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u2060\ufeff"))


class LookalikeEmail(ValueError):
    """An address whose label mixes scripts (``аdmin`` with a Cyrillic ``а``): refused, never stored."""


def _script(char: str) -> str | None:
    if not char.isalpha():
        return None
    return unicodedata.name(char, "UNKNOWN").split(" ", 1)[0]


def normalise_email(email: str) -> str:
    """One spelling per mailbox: NFKC (fullwidth, NFD), invisible characters dropped, lower case,
    no trailing dot on the domain. A label mixing scripts raises :class:`LookalikeEmail`."""
    text = unicodedata.normalize("NFKC", email).translate(_INVISIBLE).strip().lower()
    local, at, domain = text.rpartition("@")
    if at:
        text = f"{local}@{domain.rstrip('.')}"
    for label in re.split(r"[@.+_-]", text):
        scripts = {script for script in map(_script, label) if script is not None}
        if len(scripts) > 1:
            raise LookalikeEmail(f"the address mixes {' and '.join(sorted(scripts)).lower()} letters")
    return text



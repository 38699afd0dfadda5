"""Password hashing (argon2id; older scrypt hashes still verify), the principal, and API keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES = ("customer", "partner", "seller", "operator", "admin", "service")
STAFF_ROLES = ("seller", "operator", "admin")

# argon2id at the OWASP minimum (19 MiB, 2 passes, 1 lane): ~20 ms here, memory-hard against GPUs.
_ARGON2 = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Hashes written before argon2id: still verified, re-hashed on the next successful sign-in.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def hash_password(password: str) -> str:
    return _ARGON2.hash(password)


def hash_password_scrypt(password: str) -> str:
    """The former format (kept to test that old hashes still verify and are upgraded)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_password(password: str, stored: str) -> bool:
    if stored.startswith("$argon2"):
        try:
            return _ARGON2.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt_b64), **_SCRYPT)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


def needs_rehash(stored: str) -> bool:
    """True for a scrypt hash or an argon2 hash with weaker parameters than today's."""
    if not stored.startswith("$argon2"):
        return True
    try:
        return _ARGON2.check_needs_rehash(stored)
    except InvalidHashError:
        return True


@dataclass(frozen=True)
class Principal:
    role: str
    subject: str  # customer id, partner id, staff name, service name
    name: str = ""
    # The bearer token this principal came with (empty for API keys and the service token).
    token_id: str = field(default="", compare=False)
    expires_at: int = field(default=0, compare=False)

    @property
    def actor(self) -> str:
        """How history records this principal; customers by id, never by personal data."""
        if self.role == "customer":
            return f"customer:{self.subject}"
        return f"{self.role}:{self.name or self.subject}"


def new_api_key() -> str:
    return "alx_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()

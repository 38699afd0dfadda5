"""Revoked tokens, shared by every replica through Redis.

- One token: ``<prefix>:revoked:jti:<jti>`` exists until the token would have expired anyway.
- Every token of one user: ``<prefix>:revoked:before:<hash of subject>`` holds a time (ms); tokens of that
  user issued before it are refused (sign-out everywhere, password change, ``alexandrite token revoke
  --user``). It is kept as long as the longest token can live.

Checking both is one ``MGET`` per authenticated request (or two ``GET``s inside the rate limiter's call
for the same request, :data:`READ_WITH_LIMITS`), with no in-process cache: a revocation holds on every
replica from the next request. If Redis cannot answer, the check lets the token through
(counted in ``alexandrite_revocation_unchecked_total``): tokens are short-lived, and refusing everyone
while Redis fails over would be worse.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from prometheus_client import Counter

UNCHECKED = Counter("alexandrite_revocation_unchecked_total",
                    "Authenticated requests whose token could not be checked against the deny-list", ["service"])
log = logging.getLogger(__name__)


def _jti_key(prefix: str, jti: str) -> str:
    return f"{prefix}:revoked:jti:{jti}"


def _subject_key(prefix: str, role: str, subject: str) -> str:
    digest = hashlib.sha256(f"{role}|{subject}".encode()).hexdigest()[:32]
    return f"{prefix}:revoked:before:{digest}"


async def revoke_token(redis: Any, prefix: str, jti: str, expires_at: float) -> None:
    ttl = max(1, int(expires_at - time.time()) + 10)  # + leeway of the expiry check
    await redis.set(_jti_key(prefix, jti), "1", ex=ttl)


async def revoke_subject(redis: Any, prefix: str, role: str, subject: str, keep_seconds: int) -> None:
    """Every token of ``role``/``subject`` issued until now stops working."""
    await redis.set(_subject_key(prefix, role, subject), str(time.time()), ex=keep_seconds + 10)


# Scope key: the deny-list entries of this request's bearer token, read by the rate limiter in its own Redis
# call just before (kit/throttle.py): (token, [jti entry, subject entry]). Read for this request, so as
# fresh as a read of our own; authentication then makes no second round trip.
READ_WITH_LIMITS = "alexandrite.revocation_read"


def revocation_keys(prefix: str, claims: dict[str, Any]) -> list[str]:
    """The two deny-list keys that decide whether the token of ``claims`` is revoked."""
    return [_jti_key(prefix, str(claims["jti"])), _subject_key(prefix, str(claims["role"]), str(claims["sub"]))]


def revoked_by(claims: dict[str, Any], revoked: Any, before: Any) -> bool:
    """Whether the deny-list entries read at :func:`revocation_keys` refuse the token of ``claims``."""
    if revoked is not None:
        return True
    return before is not None and float(claims["iat"]) <= float(before)


async def is_revoked(redis: Any, prefix: str, claims: dict[str, Any], service: str = "") -> bool:
    try:
        revoked, before = await redis.mget(revocation_keys(prefix, claims))
    except Exception as error:  # noqa: BLE001 - Redis down: see the module's note
        UNCHECKED.labels(service).inc()
        log.warning("revocation check skipped: %r", error)
        return False
    return revoked_by(claims, revoked, before)

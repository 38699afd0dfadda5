"""Signed access tokens: JWT (PyJWT, HS256) with issuer, audience, expiry, token id and key id.

- ``iss`` is ``alexandrite``; ``aud`` names the services the token is good for (a customer's token is
  for the shop only, a staff token for the three services); each service accepts only tokens naming it.
- ``kid`` picks the key from the ring: the current key (``ALEX_SECRET_KEY`` under ``ALEX_SECRET_KEY_ID``)
  signs, previous keys (``ALEX_PREVIOUS_SECRET_KEYS``) still verify until they are dropped, so rotating
  the key signs nobody out.
- ``jti`` names the token for revocation (kit/revocation.py); ``iat`` carries milliseconds so that
  "every token of this user issued before now" is exact.

A token string that verified once is remembered per process (bounded, emptied when full) with its claims,
so the rate limiter and authentication of one request, and a client's next requests, do not parse and
verify it again; expiry is still checked on every use, and revocation is never cached (kit/revocation.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from alexandrite.kit.security import ROLES, Principal

ISSUER = "alexandrite"
ALGORITHM = "HS256"
ALL_SERVICES = ("shop", "crm", "mes")
# Which services a role's token is for, unless the issuer says otherwise.
AUDIENCES = {"customer": ("shop",), "partner": ("shop",), "seller": ALL_SERVICES, "operator": ALL_SERVICES,
             "admin": ALL_SERVICES}
_REQUIRED = ["iss", "aud", "sub", "iat", "exp", "jti"]


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class KeyRing:
    current_id: str
    keys: Mapping[str, str]  # key id -> secret

    @classmethod
    def from_settings(cls, settings: Any) -> "KeyRing":
        auth = settings.auth
        return cls(auth.secret_key_id, {**auth.previous_secret_keys, auth.secret_key_id: auth.secret_key})

    @property
    def signing_key(self) -> str:
        return self.keys[self.current_id]


_RINGS: dict[int, tuple[Any, KeyRing]] = {}
# (id of the ring, token, audience) -> (the ring itself, so a reused id never matches, claims)
_VERIFIED: dict[tuple[int, str, str | None], tuple[KeyRing, dict[str, Any]]] = {}
VERIFIED_MAX = 10_000
LEEWAY_SECONDS = 5


def _ring(source: Any) -> KeyRing:
    if isinstance(source, KeyRing):
        return source
    auth = source.auth
    known = _RINGS.get(id(auth))
    if known is None or known[0] is not auth:
        if len(_RINGS) >= 64:
            _RINGS.clear()
        known = (auth, KeyRing.from_settings(source))
        _RINGS[id(auth)] = known
    return known[1]


def issue_token(source: Any, principal: Principal, ttl_seconds: int | None = None,
                audience: Iterable[str] | None = None) -> str:
    """A signed token for ``principal``; ``source`` is the Settings (or a KeyRing, then ttl is required)."""
    if principal.role not in AUDIENCES:
        raise ValueError(f"no bearer tokens for the role {principal.role!r}")
    ring = _ring(source)
    ttl = ttl_seconds if ttl_seconds is not None else source.auth.token_ttl_seconds
    now = time.time()
    payload = {"iss": ISSUER, "aud": list(audience or AUDIENCES[principal.role]), "sub": principal.subject,
               "role": principal.role, "name": principal.name, "iat": round(now, 3), "exp": int(now) + ttl,
               "jti": uuid.uuid4().hex}
    return jwt.encode(payload, ring.signing_key, algorithm=ALGORITHM, headers={"kid": ring.current_id})


def read_claims(source: Any, token: str, audience: str | None) -> dict[str, Any]:
    """The verified claims; ``audience`` None checks everything but the audience (rate-limit buckets)."""
    ring = _ring(source)
    remembered = (id(ring), token, audience)
    hit = _VERIFIED.get(remembered)
    if hit is not None and hit[0] is ring:
        claims = hit[1]
        if claims["exp"] + LEEWAY_SECONDS <= time.time():
            _VERIFIED.pop(remembered, None)
            raise InvalidToken("token expired")
        return claims
    claims = _verify(ring, token, audience)
    if len(_VERIFIED) >= VERIFIED_MAX:
        _VERIFIED.clear()  # bounded: a flood of distinct valid tokens only empties it
    _VERIFIED[remembered] = (ring, claims)
    return claims


def _verify(ring: KeyRing, token: str, audience: str | None) -> dict[str, Any]:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as error:
        raise InvalidToken("malformed token") from error
    key = ring.keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise InvalidToken("unknown key")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[ALGORITHM], issuer=ISSUER, audience=audience,
            options={"require": _REQUIRED, "verify_aud": audience is not None}, leeway=LEEWAY_SECONDS)
    except jwt.ExpiredSignatureError as error:
        raise InvalidToken("token expired") from error
    except jwt.InvalidAudienceError as error:
        raise InvalidToken("token not for this service") from error
    except jwt.InvalidSignatureError as error:
        raise InvalidToken("bad signature") from error
    except jwt.PyJWTError as error:
        raise InvalidToken("malformed token") from error
    if claims.get("role") not in AUDIENCES:
        raise InvalidToken("unknown role")
    return claims


def principal_of(claims: Mapping[str, Any]) -> Principal:
    return Principal(role=str(claims["role"]), subject=str(claims["sub"]), name=str(claims.get("name", "")),
                     token_id=str(claims["jti"]), expires_at=int(claims["exp"]))


def read_token(source: Any, token: str, audience: str | None = None) -> Principal:
    return principal_of(read_claims(source, token, audience))


assert set(AUDIENCES) <= set(ROLES)

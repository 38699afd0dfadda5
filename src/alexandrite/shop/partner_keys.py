"""Partner API keys: who a key belongs to, remembered in the process for a few seconds.

Every partner request carries ``X-API-Key``; asking the database each time cost three round trips
(BEGIN, SELECT, ROLLBACK) and ~15 % of a create's CPU. A key found valid is now trusted for
``ALEX_PARTNER_KEY_CACHE_SECONDS`` (default 5) in each process, so a key revoked in the database
(``partners.active = false``) stops working within that window (ADR 0100). Unknown keys are not
remembered: a key issued a moment ago works at once, and a wrong key is always asked for (rate limits
bound that). The cache is bounded; a flood of distinct valid keys only empties it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from alexandrite.kit.db import Database
from alexandrite.kit.security import Principal, hash_api_key

LOOKUP = "SELECT id, name, plan FROM partners WHERE key_hash = $1 AND active"


@dataclass(frozen=True)
class PartnerKey:
    principal: Principal
    plan: str


class PartnerKeys:
    def __init__(self, db: Database, ttl_seconds: float = 5.0, max_entries: int = 10_000) -> None:
        self.db = db
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, PartnerKey]] = {}

    async def by_hash(self, key_hash: str) -> PartnerKey | None:
        now = time.monotonic()
        hit = self._cache.get(key_hash)
        if hit is not None and hit[0] > now:
            return hit[1]
        pool = await self.db.raw()
        row = await pool.fetchrow(LOOKUP, key_hash)
        if row is None:
            self._cache.pop(key_hash, None)
            return None
        found = PartnerKey(Principal(role="partner", subject=str(row["id"]), name=row["name"]), row["plan"])
        if self.ttl > 0:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[key_hash] = (now + self.ttl, found)
        return found

    async def principal(self, api_key: str) -> Principal | None:
        found = await self.by_hash(hash_api_key(api_key))
        return found.principal if found is not None else None

    async def plan(self, key_hash: str) -> str | None:
        """The partner's plan (for rate limits), None for an unknown key."""
        found = await self.by_hash(key_hash)
        return found.plan if found is not None else None

    def forget(self, partner_id: uuid.UUID | str | None = None) -> None:
        """Drop remembered keys (of one partner, or all): this process sees a revocation at once."""
        if partner_id is None:
            self._cache.clear()
            return
        subject = str(partner_id)
        for key_hash in [k for k, (_, v) in self._cache.items() if v.principal.subject == subject]:
            del self._cache[key_hash]


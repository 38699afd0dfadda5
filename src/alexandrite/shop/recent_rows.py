"""The order rows this process has just written, as hints for the same client's next step.

A client creates an order, uploads its model, then submits it, usually within seconds and usually through
the same process. Upload and submit each read the order before writing it; the row this process wrote a
moment ago saves that read.

A remembered row is only ever a *hint for a write*: the write that uses it is the conditional statement
every shop change already is (``WHERE id AND seq AND status``), so a row that changed meanwhile (another
process, a consumed event, a cancellation: each moves ``seq``) makes it write nothing, and the decision is
made again on a fresh read, as after any concurrent change. Any other decision (a no-op, a 404, a 409) is
made on a fresh read, never on a hint. A hint is used once (taken), and kept for :data:`TTL_SECONDS` at
most, :data:`CAPACITY` rows at most (the oldest go first).
"""

from __future__ import annotations

import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from alexandrite.kit.db import Database
from alexandrite.shop.domain import Owner
from alexandrite.shop.order_reads import owned

TTL_SECONDS = 30.0
CAPACITY = 4096


class RecentRows:
    """Rows by order id, each with the time it was remembered; oldest first."""

    def __init__(self, *, capacity: int = CAPACITY, ttl_seconds: float = TTL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._rows: OrderedDict[uuid.UUID, tuple[float, dict[str, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def remember(self, row: dict[str, Any]) -> None:
        """Keep ``row`` (a row of ``order_reads.ORDER_SQL``'s shape, as written) for the order's next write."""
        order_id = row["id"]
        self._rows.pop(order_id, None)
        self._rows[order_id] = (self._clock(), row)
        while len(self._rows) > self.capacity:
            self._rows.popitem(last=False)

    def take(self, order_id: uuid.UUID, owner: Owner | None, status: str | None = None) -> dict[str, Any] | None:
        """The row remembered for the order, once, if it is fresh, ``owner`` may see it and (when given) it is
        in ``status``, the one status the caller's write starts from; else None."""
        found = self._rows.pop(order_id, None)
        if found is None:
            return None
        at, row = found
        if self._clock() - at > self.ttl_seconds or not owned(row, owner):
            return None
        return row if status is None or row["status"] == status else None


_BY_DATABASE: weakref.WeakKeyDictionary[Database, RecentRows] = weakref.WeakKeyDictionary()


def recent_rows(db: Database) -> RecentRows:
    """The rows written through ``db`` by this process (one set per database, made on first use)."""
    rows = _BY_DATABASE.get(db)
    if rows is None:
        rows = _BY_DATABASE[db] = RecentRows()
    return rows

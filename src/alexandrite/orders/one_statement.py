"""Pieces of a one-statement order write (a :class:`~alexandrite.kit.db.StatementUnitOfWork`).

A service changes an order in ONE data-modifying statement: a CTE that writes the order row (and
returns its ``id``), then the tail built here: the order's history line and its event's outbox row,
both written only when the row CTE wrote something, and the relay's wake-up, sent at the statement's
commit. The rules are :func:`alexandrite.orders.records.record_transition`'s (seq + 1, a history line
per change): the caller checks the transition table before and the statement re-checks ``seq`` and
``status`` on the row it updates, so a concurrent change makes it write nothing.

The outbox parameters come in the order of :func:`message_args` (message_id, exchange, routing_key,
body, headers), ``OUTBOX_PARAMS`` of them from ``$outbox``.
"""

from __future__ import annotations

from typing import Any

from alexandrite.kit.db import OutgoingMessage
from alexandrite.kit.messaging.tables import OUTBOX_CHANNEL

OUTBOX_PARAMS = 5


def history_and_outbox(row: str, history: str, outbox: int) -> str:
    """``h`` (the history line: ``history`` gives seq, status, previous_status, at, by) and ``x`` (the
    outbox row, returning 1) as CTEs following the CTE ``row``; starts with a comma."""
    message, exchange, routing, body, headers = (f"${outbox + i}" for i in range(OUTBOX_PARAMS))
    return f""", h AS (
    INSERT INTO order_history (order_id, seq, status, previous_status, at, by)
    SELECT id, {history} FROM {row}
), x AS (
    INSERT INTO outbox (message_id, exchange, routing_key, body, headers, order_id)
    SELECT {message}::uuid, {exchange}::text, {routing}::text, {body}::bytea, {headers}::jsonb, id FROM {row}
    RETURNING 1
)"""


def relay_wakeup(outbox: str = "x") -> str:
    """A select-list expression that wakes the outbox relay when the CTE ``outbox`` wrote a row (or more)."""
    return f"(SELECT pg_notify('{OUTBOX_CHANNEL}', '') FROM {outbox} LIMIT 1)"


def message_args(message: OutgoingMessage) -> tuple[Any, ...]:
    """The outbox parameters of :func:`history_and_outbox`, in order."""
    return (message.message_id, message.exchange, message.routing_key, message.body, message.headers)

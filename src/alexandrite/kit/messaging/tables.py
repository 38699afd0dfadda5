"""Outbox and inbox tables, identical in every service database."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB


def define_outbox(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("message_id", Uuid, nullable=False, unique=True),
        Column("exchange", Text, nullable=False),
        Column("routing_key", Text, nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("order_id", Uuid, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text, nullable=True),
    )


def define_inbox(metadata: MetaData) -> Table:
    table = Table(
        "inbox",
        metadata,
        Column("event_id", Uuid, primary_key=True),
        Column("order_id", Uuid, nullable=False),
        Column("seq", Integer, nullable=False),
        Column("type", Text, nullable=False),
        Column("envelope", JSONB, nullable=False),
        Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("applied_at", DateTime(timezone=True), nullable=True),
        Column("outcome", Text, nullable=True),
    )
    Index(
        "ix_inbox_pending",
        table.c.order_id,
        table.c.seq,
        postgresql_where=table.c.applied_at.is_(None),
    )
    return table


# Every statement that writes outbox rows also notifies this channel (delivered at commit, to listeners
# of the same database): the relays wake up on it instead of polling fast (kit.messaging.wakeup).
OUTBOX_CHANNEL = "alexandrite_outbox"

# Lightweight handles for DML from shared code (no metadata of any one service needed).
_shared = MetaData()
OUTBOX = define_outbox(_shared)
INBOX = define_inbox(_shared)

# How many events of an order wait in the inbox, besides one. VOLATILE plpgsql: its query takes a snapshot
# of its own when it runs, so a statement that waited for the order's lock counts what was parked and
# committed meanwhile, which the statement's own snapshot (taken before the wait) does not show.
# Created by each service's migrations.
INBOX_PARKED_FUNCTION = """
CREATE OR REPLACE FUNCTION inbox_parked(p_order uuid, p_except uuid) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RETURN (SELECT count(*) FROM inbox WHERE order_id = p_order AND applied_at IS NULL AND event_id <> p_except);
END $$
"""
DROP_INBOX_PARKED_FUNCTION = "DROP FUNCTION IF EXISTS inbox_parked(uuid, uuid)"

"""CRM database: the seller's projection of every order (built from events), notes, approvals."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from alexandrite.kit.messaging.tables import define_inbox, define_outbox
from alexandrite.orders.records import define_history

metadata = MetaData()

orders = Table(
    "orders",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("status", Text, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("alloy", Text, nullable=True),
    Column("owner_kind", Text, nullable=False),
    Column("owner_id", Text, nullable=False),
    Column("owner_name", Text, nullable=False),
    Column("model", JSONB, nullable=True),
    Column("quote", JSONB, nullable=True),
    Column("total", Numeric(12, 2), nullable=True),
    Column("currency", Text, nullable=True),
    Column("failure", JSONB, nullable=True),
    Column("tracking_number", Text, nullable=True),
    Column("carrier", Text, nullable=True),
    Column("closed_reason", Text, nullable=True),
    Column("cancel_reason", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("status_since", DateTime(timezone=True), nullable=False),
)
# Newest first, all orders / one status (keyset pagination on (created_at, id)).
Index("ix_orders_newest", orders.c.created_at.desc(), orders.c.id.desc())
Index("ix_orders_status_newest", orders.c.status, orders.c.created_at.desc(), orders.c.id.desc())
# Waiting for the seller's approval, longest waiting first (keyset on (status_since, id)).
Index("ix_orders_waiting_approval", orders.c.status_since, orders.c.id,
      postgresql_where=orders.c.status == "PRICE_CALCULATED")
# Search: tracking number (exact), customer (exact, case-insensitive), customer name substring (trigram).
Index("ix_orders_tracking_number", orders.c.tracking_number,
      postgresql_where=orders.c.tracking_number.is_not(None))
Index("ix_orders_owner_name_lower", func.lower(orders.c.owner_name))
Index(
    "ix_orders_owner_name_trgm",
    func.lower(orders.c.owner_name).label("owner_name_lower"),
    postgresql_using="gin",
    postgresql_ops={"owner_name_lower": "gin_trgm_ops"},  # needs the pg_trgm extension
)

notes = Table(
    "notes",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("order_id", Uuid, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("author", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_notes_order_newest", notes.c.order_id, notes.c.at.desc(), notes.c.id.desc())

order_history = define_history(metadata)
outbox = define_outbox(metadata)
inbox = define_inbox(metadata)

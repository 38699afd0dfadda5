"""Shop database: customers, partners, orders as the customer sees them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from alexandrite.kit.messaging.tables import define_inbox, define_outbox
from alexandrite.orders.records import define_delays, define_history

metadata = MetaData()

customers = Table(
    "customers",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("email", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

partners = Table(
    "partners",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("key_prefix", Text, nullable=False),
    Column("plan", Text, nullable=False, server_default="standard"),
    Column("webhook_url", Text, nullable=True),
    Column("webhook_secret", Text, nullable=True),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

orders = Table(
    "orders",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("owner_kind", Text, nullable=False),
    Column("owner_id", Uuid, nullable=False),
    Column("owner_name", Text, nullable=False),
    Column("alloy", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("model", JSONB, nullable=True),
    Column("quote", JSONB, nullable=True),
    Column("failure", JSONB, nullable=True),
    Column("progress", JSONB, nullable=True),
    Column("tracking_number", Text, nullable=True),
    Column("carrier", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("status_since", DateTime(timezone=True), nullable=False),
)
Index("ix_orders_owner_newest", orders.c.owner_kind, orders.c.owner_id, orders.c.created_at.desc(), orders.c.id.desc())
Index(
    "ix_orders_owner_status_newest",
    orders.c.owner_kind,
    orders.c.owner_id,
    orders.c.status,
    orders.c.created_at.desc(),
    orders.c.id.desc(),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("owner_kind", Text, nullable=False),
    Column("owner_id", Uuid, nullable=False),
    Column("key", Text, nullable=False),
    Column("request_hash", Text, nullable=False),
    Column("order_id", Uuid, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("owner_kind", "owner_id", "key"),
)

# Partner webhook deliveries: written in the transaction of the order change, sent by the dispatcher.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("delivery_id", Uuid, nullable=False, unique=True),
    Column("partner_id", Uuid, ForeignKey("partners.id", ondelete="CASCADE"), nullable=False),
    Column("order_id", Uuid, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("state", Text, nullable=False, server_default="pending"),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
)
Index("ix_webhook_deliveries_due", webhook_deliveries.c.next_attempt_at,
      postgresql_where=webhook_deliveries.c.state == "pending")
Index("ix_webhook_deliveries_partner", webhook_deliveries.c.partner_id, webhook_deliveries.c.state,
      webhook_deliveries.c.id.desc())

# Delays production reported (mes.order.delayed): shown on the order, one row per order and stage.
order_delays = define_delays(metadata, "orders")

# Notification outbox: written in the transaction that decides to notify, sent by the notifier.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("order_id", Uuid, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("kind", Text, nullable=False),  # e.g. "delay:PRICE_CALCULATING"
    Column("channel", Text, nullable=False, server_default="email"),
    Column("recipient", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
    UniqueConstraint("order_id", "kind", name="uq_notifications_order_kind"),
)
Index("ix_notifications_pending", notifications.c.next_attempt_at, postgresql_where=text("sent_at IS NULL"))

order_history = define_history(metadata)
outbox = define_outbox(metadata)
inbox = define_inbox(metadata)
